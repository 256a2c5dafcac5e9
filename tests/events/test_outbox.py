"""The transactional outbox on SQLite and PostgreSQL: one row per committed change, none else.

These run the real use cases on real databases; the test_relay_* modules take the rows to a
real broker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select

from cardpoints.adapters.orm import OUTBOX, AccountRow
from cardpoints.adapters.repository import CardpointsUnitOfWork
from cardpoints.domain.errors import AccountNotFound
from cardpoints.domain.events import AccountOpened
from cardpoints.domain.model import (
    Account,
    AccountState,
    CreditPoints,
    DeductPoints,
    OpenAccount,
    ReverseDeduction,
    SetAccountState,
)
from cardpoints.entrypoints.server import MIGRATIONS, VERSION_TABLE
from cardpoints.service_layer import services
from pointsbridge.events.v1 import cardpoints_events_pb2 as ev
from servicekit.clock import utc_now
from servicekit.db import Database, create_db_engine, upgrade_schema
from servicekit.errors import DomainError


@pytest.fixture
def database(make_db_url: Callable[[str], str]) -> Iterator[Database]:
    engine = create_db_engine(make_db_url("cardpoints"))
    upgrade_schema(engine, MIGRATIONS, VERSION_TABLE)
    db = Database(engine, workers=4)
    yield db
    db.close()


def uow(db: Database) -> CardpointsUnitOfWork:
    return CardpointsUnitOfWork(db.sessions)


def outbox_rows(db: Database) -> list[Any]:
    events = OUTBOX.events
    with db.engine.connect() as conn:
        return list(conn.execute(select(events).order_by(events.c.id)))


def last_sequences(db: Database) -> dict[str, int]:
    table = OUTBOX.sequences
    with db.engine.connect() as conn:
        return {
            row.aggregate_id: row.last_sequence
            for row in conn.execute(select(table.c.aggregate_id, table.c.last_sequence))
        }


async def test_every_committed_change_writes_exactly_one_event_in_sequence(
    database: Database,
) -> None:
    db = database
    await db.write(lambda: services.open_account(uow(db), OpenAccount("acc-1", "Ada"), utc_now))
    credit = CreditPoints("credit-1", "acc-1", 500, "welcome")
    await db.write(lambda: services.credit_points(uow(db), credit, utc_now))
    deduct = DeductPoints("deduct-1", "acc-1", 200, 2, 100, "shop")
    deduction = await db.write(lambda: services.deduct_points(uow(db), deduct, utc_now))
    reverse = ReverseDeduction("reverse-1", "deduct-1", 100, "refund")
    await db.write(lambda: services.reverse_deduction(uow(db), reverse, utc_now))
    freeze = SetAccountState("acc-1", AccountState.FROZEN, "lost card")
    await db.write(lambda: services.set_account_state(uow(db), freeze, utc_now))
    # Replays and refusals change nothing, so they publish nothing.
    await db.write(lambda: services.open_account(uow(db), OpenAccount("acc-1", "Ada"), utc_now))
    await db.write(lambda: services.credit_points(uow(db), credit, utc_now))
    await db.write(lambda: services.deduct_points(uow(db), deduct, utc_now))
    refused = DeductPoints("deduct-2", "acc-1", 1, 1, 1, "shop")
    with pytest.raises(DomainError):
        await db.write(lambda: services.deduct_points(uow(db), refused, utc_now))
    await db.write(lambda: services.set_account_state(uow(db), freeze, utc_now))

    rows = outbox_rows(db)
    assert [r.type for r in rows] == [
        "pointsbridge.events.v1.AccountOpened",
        "pointsbridge.events.v1.PointsCredited",
        "pointsbridge.events.v1.PointsDeducted",
        "pointsbridge.events.v1.DeductionReversed",
        "pointsbridge.events.v1.AccountStateChanged",
    ]
    assert [r.subject for r in rows] == [
        "pointsbridge.cardpoints.account.account_opened",
        "pointsbridge.cardpoints.account.points_credited",
        "pointsbridge.cardpoints.account.points_deducted",
        "pointsbridge.cardpoints.account.deduction_reversed",
        "pointsbridge.cardpoints.account.account_state_changed",
    ]
    assert [r.sequence for r in rows] == [1, 2, 3, 4, 5]
    assert {r.aggregate_id for r in rows} == {"acc-1"}
    assert len({r.event_id for r in rows}) == 5
    assert all(r.sent_us is None for r in rows)
    assert last_sequences(db) == {"acc-1": 5}
    deducted = ev.PointsDeducted.FromString(rows[2].data)
    assert (deducted.account_id, deducted.sequence, deducted.points) == ("acc-1", 3, 200)
    assert (deducted.deduction_id, deducted.balance_after) == (deduction.deduction_id, 300)
    changed = ev.AccountStateChanged.FromString(rows[4].data)
    assert (changed.previous_state, changed.state, changed.reason) == (1, 2, "lost card")


async def test_a_rolled_back_change_writes_no_event(database: Database) -> None:
    db = database

    def open_then_fail() -> None:
        with uow(db) as unit:
            now = utc_now()
            account = Account("acc-2", "Bo", AccountState.ACTIVE, 0, now, now)
            unit.accounts.add(account)
            unit.events.append(AccountOpened(account))
            raise AccountNotFound("acc-2")  # any failure before commit

    with pytest.raises(AccountNotFound):
        await db.write(open_then_fail)
    assert outbox_rows(db) == []
    assert last_sequences(db) == {}
    with db.engine.connect() as conn:
        assert list(conn.execute(select(AccountRow))) == []

    # A failure after the outbox rows were written, at COMMIT, takes them along.
    def fail_at_commit() -> None:
        with uow(db) as unit:
            now = utc_now()
            account = Account("acc-3", "Cy", AccountState.ACTIVE, 0, now, now)
            unit.accounts.add(account)
            unit.accounts.add(account)  # the flush at commit violates the primary key
            unit.events.append(AccountOpened(account))
            unit.commit()

    with pytest.raises(Exception, match=r"(?i)unique|duplicate|identity"):
        await db.write(fail_at_commit)
    assert outbox_rows(db) == []
    assert last_sequences(db) == {}


async def test_group_commit_keeps_the_events_of_a_failing_unit_out(tmp_path: Path) -> None:
    """SQLite only: PostgreSQL commits each unit alone (Database.group_commit is 1 there)."""
    engine = create_db_engine(f"sqlite:///{tmp_path / 'group.db'}")
    upgrade_schema(engine, MIGRATIONS, VERSION_TABLE)
    db = Database(engine, workers=2, group_commit=64)
    try:
        for account in ("g-1", "g-2"):
            opened = OpenAccount(account, "Di")
            await db.write(partial(services.open_account, uow(db), opened, utc_now))
        credits = [
            CreditPoints(f"c-{i}", "g-1" if i != 3 else "missing", 10, "batch") for i in range(8)
        ]
        credits.append(CreditPoints("c-g2", "g-2", 10, "batch"))
        commits = [0]

        @event.listens_for(engine, "commit")
        def _count(_conn: Any) -> None:
            commits[0] += 1

        def written_then_failed() -> None:
            # Its outbox row is written inside its savepoint, then the unit fails.
            with uow(db) as unit:
                now = utc_now()
                account = Account("g-3", "Ed", AccountState.ACTIVE, 0, now, now)
                unit.accounts.add(account)
                unit.events.append(AccountOpened(account))
                assert unit.outbox is not None
                assert unit.outbox.write(unit.session.connection(), unit.events) == 1
                raise AccountNotFound("g-3")

        writes: list[Awaitable[object]] = [
            db.write(partial(services.credit_points, uow(db), cmd, utc_now)) for cmd in credits
        ]
        writes.insert(4, db.write(written_then_failed))
        outcomes = await asyncio.gather(*writes, return_exceptions=True)
        assert commits[0] < len(writes), "the units did not share a transaction"
        failed = [o for o in outcomes if isinstance(o, BaseException)]
        assert len(failed) == 2 and all(isinstance(f, AccountNotFound) for f in failed)
        rows = outbox_rows(db)
        credited = [r for r in rows if r.type.endswith("PointsCredited")]
        assert len(credited) == 8
        by_account: dict[str, list[int]] = {}
        for row in rows:
            by_account.setdefault(row.aggregate_id, []).append(row.sequence)
        assert by_account == {"g-1": list(range(1, 9)), "g-2": [1, 2]}
        assert last_sequences(db) == {"g-1": 8, "g-2": 2}
    finally:
        db.close()


def test_a_failing_outbox_statement_raises_as_sqlalchemy_does() -> None:
    # The database runner reruns a unit only on SQLAlchemy's DBAPIError (a lock timeout, a
    # deadlock on the sequence counter): the outbox's statements must not leak the driver's.
    from datetime import UTC, datetime

    from sqlalchemy import MetaData, create_engine
    from sqlalchemy.exc import OperationalError

    from servicekit.outbox import OutboxWriter, Outgoing, define_tables

    tables = define_tables(MetaData())
    message = ev.PointsDeducted()
    outgoing = Outgoing("account", "acct-1", "points_deducted", message, datetime.now(UTC))
    writer = OutboxWriter(tables, "cardpoints", lambda event: outgoing)
    engine = create_engine("sqlite://")
    with engine.connect() as conn:
        tables.events.create(conn)  # no sequence counters: the upsert fails
        with pytest.raises(OperationalError, match="event_sequences"):
            writer.write(conn, [object()])
    engine.dispose()
