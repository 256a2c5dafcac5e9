"""The hand-written migrations build exactly the schema the SQLAlchemy models describe."""

from __future__ import annotations

from collections.abc import Callable

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from ecommerce.adapters.orm import Base
from ecommerce.entrypoints.server import MIGRATIONS, VERSION_TABLE
from servicekit.db import create_db_engine, upgrade_schema
from servicekit.devtools.databases import head_revision


def test_migrations_match_the_models_and_rerun_as_a_no_op(
    make_db_url: Callable[[str], str],
) -> None:
    engine = create_db_engine(make_db_url("ecommerce"))
    try:
        upgrade_schema(engine, MIGRATIONS, VERSION_TABLE)
        upgrade_schema(engine, MIGRATIONS, VERSION_TABLE)
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection,
                opts={"version_table": VERSION_TABLE, "compare_type": True},
            )
            assert context.get_current_revision() == head_revision(MIGRATIONS)
            assert compare_metadata(context, Base.metadata) == []
        names = set(inspect(engine).get_table_names())
        assert names == {*Base.metadata.tables, VERSION_TABLE}
    finally:
        engine.dispose()
