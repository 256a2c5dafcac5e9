"""The migrations: they build the schema the models describe, rerun safely, guard the ledger."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.exc import DBAPIError

from cardpoints.adapters.orm import AccountRow, Base, LedgerEntryRow
from cardpoints.entrypoints.server import MIGRATIONS, VERSION_TABLE
from servicekit.db import create_db_engine, upgrade_schema
from servicekit.devtools.databases import head_revision


def test_migrations_match_the_models_and_rerun_cleanly(make_db_url: Callable[[str], str]) -> None:
    engine = create_db_engine(make_db_url("schema"))
    try:
        upgrade_schema(engine, MIGRATIONS, VERSION_TABLE)
        upgrade_schema(engine, MIGRATIONS, VERSION_TABLE)  # a second start changes nothing
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
            assert context.get_current_revision() == head_revision(MIGRATIONS)
            differences = compare_metadata(context, Base.metadata)
        assert differences == []
    finally:
        engine.dispose()


def test_the_database_refuses_to_edit_the_ledger(make_db_url: Callable[[str], str]) -> None:
    engine = create_db_engine(make_db_url("ledger"))
    now = datetime.now(UTC)
    try:
        upgrade_schema(engine, MIGRATIONS, VERSION_TABLE)
        with engine.begin() as conn:
            conn.execute(
                insert(AccountRow).values(
                    account_id="a",
                    holder_name="A",
                    state="ACTIVE",
                    balance=5,
                    create_time=now,
                    update_time=now,
                )
            )
            conn.execute(
                insert(LedgerEntryRow).values(
                    entry_id="e1",
                    account_id="a",
                    type="CREDIT",
                    amount=5,
                    balance_after=5,
                    request_id="r",
                    reference_id="",
                    reason="",
                    create_time=now,
                )
            )
        for statement in (
            update(LedgerEntryRow).values(amount=500),
            delete(LedgerEntryRow),
        ):
            with pytest.raises(DBAPIError, match="immutable"), engine.begin() as conn:
                conn.execute(statement)
        with pytest.raises(DBAPIError), engine.begin() as conn:
            conn.execute(update(AccountRow).values(balance=-1))  # nor can a balance go negative
        with engine.connect() as conn:
            assert conn.execute(select(LedgerEntryRow.amount)).scalar_one() == 5
            assert conn.execute(text("SELECT balance FROM accounts")).scalar_one() == 5
    finally:
        engine.dispose()
