"""Alembic environment for the card-points schema: runs on the connection it is handed."""

from __future__ import annotations

from alembic import context

from cardpoints.adapters.orm import Base

config = context.config
connection = config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    version_table=config.attributes["version_table"],
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
