"""Adapters room: runs the e-commerce migrations on the connection servicekit hands in."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

config = context.config

if context.is_offline_mode():
    raise RuntimeError("the e-commerce migrations run online only, through upgrade_schema()")

connection = config.attributes["connection"]
assert isinstance(connection, Connection)
context.configure(
    connection=connection,
    version_table=str(config.attributes["version_table"]),
    # Constraint changes on SQLite need table rebuilds; batch mode does them.
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
