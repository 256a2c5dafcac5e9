"""Group commit: concurrent write units of work sharing one SQLite transaction.

These run the real use cases on a real database through `Database.write`, the
path every write RPC takes, and check that sharing a COMMIT changes nothing a
caller can see: each unit's outcome, its isolation from a failing neighbour,
its events, and the ledger's invariants.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import StatementError

from cardpoints.adapters.orm import AccountRow
from cardpoints.adapters.repository import CardpointsUnitOfWork
from cardpoints.domain.errors import InsufficientPoints
from cardpoints.domain.events import PointsDeducted
from cardpoints.domain.model import CreditPoints, Deduction, DeductPoints, OpenAccount
from cardpoints.entrypoints.server import MIGRATIONS, VERSION_TABLE
from cardpoints.service_layer import services
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


def count_commits(db: Database) -> list[int]:
    commits = [0]

    @event.listens_for(db.engine, "commit")
    def _count(_conn: Any) -> None:
        commits[0] += 1

    return commits


def uow(db: Database) -> CardpointsUnitOfWork:
    return CardpointsUnitOfWork(db.sessions)


async def funded(db: Database, account_id: str, points: int) -> None:
    await db.write(lambda: services.open_account(uow(db), OpenAccount(account_id, "Ada"), utc_now))
    cmd = CreditPoints(f"fund-{account_id}", account_id, points, "test")
    await db.write(lambda: services.credit_points(uow(db), cmd, utc_now))


def deduct(db: Database, request_id: str, account_id: str, points: int) -> Callable[[], Deduction]:
    cmd = DeductPoints(request_id, account_id, points, 1, points, "shop")
    return lambda: services.deduct_points(uow(db), cmd, utc_now)


def balance_and_ledger(db: Database, account_id: str) -> tuple[int, int, int]:
    with db.engine.connect() as conn:
        balance = conn.execute(
            text("SELECT balance FROM accounts WHERE account_id = :a"), {"a": account_id}
        ).scalar_one()
        ledger, entries = conn.execute(
            text(
                "SELECT COALESCE(SUM(amount), 0), COUNT(*) FROM ledger_entries"
                " WHERE account_id = :a"
            ),
            {"a": account_id},
        ).one()
    return int(balance), int(ledger), int(entries)


async def test_concurrent_deductions_share_commits_and_never_overdraw(database: Database) -> None:
    await funded(database, "acct-1", 250)
    commits = count_commits(database)
    calls = [deduct(database, f"req-{i}", "acct-1", 10) for i in range(40)]

    outcomes = await asyncio.gather(*(database.write(c) for c in calls), return_exceptions=True)

    done = [o for o in outcomes if isinstance(o, Deduction)]
    refused = [o for o in outcomes if isinstance(o, InsufficientPoints)]
    assert (len(done), len(refused)) == (25, 15)
    assert sorted(d.balance_after for d in done) == list(range(0, 250, 10))
    assert balance_and_ledger(database, "acct-1") == (0, 0, 26)
    if database.group_commit > 1:
        assert commits[0] < 5, "40 concurrent deductions should share a few commits"
    else:
        assert commits[0] == 40  # PostgreSQL: one transaction each
    # Each refusal was recorded with its batch, and replays as a refusal even once the
    # points are there; a new request then succeeds.
    refused_id = f"req-{outcomes.index(refused[0])}"
    cmd = CreditPoints("top-up", "acct-1", 100, "test")
    await database.write(lambda: services.credit_points(uow(database), cmd, utc_now))
    with pytest.raises(DomainError) as replayed:
        await database.write(deduct(database, refused_id, "acct-1", 10))
    assert replayed.value.reason == refused[0].reason
    fresh = await database.write(deduct(database, "req-new", "acct-1", 10))
    assert fresh.balance_after == 90


async def test_a_failing_unit_is_rolled_back_alone(database: Database) -> None:
    await funded(database, "acct-2", 100)
    commits = count_commits(database)

    def deduct_then_fail() -> None:
        with uow(database) as work:
            work.accounts.debit_if_covered("acct-2", 60, utc_now())
            raise RuntimeError("the use case broke after writing")

    results = await asyncio.gather(
        database.write(deduct(database, "a", "acct-2", 10)),
        database.write(deduct_then_fail),
        database.write(deduct(database, "b", "acct-2", 20)),
        return_exceptions=True,
    )

    assert isinstance(results[0], Deduction) and results[0].balance_after == 90
    assert isinstance(results[1], RuntimeError)
    assert isinstance(results[2], Deduction) and results[2].balance_after == 70
    assert balance_and_ledger(database, "acct-2") == (70, 70, 3)
    # On SQLite the three shared one transaction: the failure was undone by its savepoint.
    assert commits[0] == (1 if database.group_commit > 1 else 2)


async def test_a_database_error_costs_only_its_own_unit(database: Database) -> None:
    await funded(database, "acct-3", 100)
    commits = count_commits(database)
    units: list[CardpointsUnitOfWork] = []

    def counted(request_id: str, points: int) -> Callable[[], Deduction]:
        cmd = DeductPoints(request_id, "acct-3", points, 1, points, "shop")

        def run() -> Deduction:
            work = uow(database)
            units.append(work)
            return services.deduct_points(work, cmd, utc_now)

        return run

    def broken_statement() -> None:
        with uow(database) as work:
            work.session.execute(text("SELECT * FROM no_such_table"))

    results = await asyncio.gather(
        database.write(counted("c", 10)),
        database.write(broken_statement),
        database.write(counted("d", 10)),
        return_exceptions=True,
    )

    assert isinstance(results[0], Deduction) and isinstance(results[2], Deduction)
    assert "no_such_table" in str(results[1])
    assert balance_and_ledger(database, "acct-3") == (80, 80, 3)
    assert commits[0] == 2  # on SQLite, after the shared transaction was rolled back
    # Rerun one at a time after the shared transaction was rolled back, each unit
    # still reports its event once.
    deducted = [e for u in units for e in u.committed_events if isinstance(e, PointsDeducted)]
    assert len(deducted) == 2


async def test_a_failed_flush_costs_only_its_own_unit(database: Database) -> None:
    await funded(database, "acct-6", 100)

    def unflushable() -> None:
        with uow(database) as work:
            # Not a datetime: the flush fails in SQLAlchemy, before the database sees it,
            # and leaves the session needing a full rollback.
            when: Any = "not a time"
            work.session.add(
                AccountRow(
                    account_id="acct-x",
                    holder_name="X",
                    state="ACTIVE",
                    balance=0,
                    create_time=when,
                    update_time=when,
                )
            )
            work.commit()

    results = await asyncio.gather(
        database.write(deduct(database, "e", "acct-6", 10)),
        database.write(unflushable),
        database.write(deduct(database, "f", "acct-6", 10)),
        return_exceptions=True,
    )

    assert isinstance(results[0], Deduction) and isinstance(results[2], Deduction)
    assert isinstance(results[1], StatementError)
    assert balance_and_ledger(database, "acct-6") == (80, 80, 3)
    with database.engine.connect() as conn:
        stray = conn.execute(text("SELECT COUNT(*) FROM accounts WHERE account_id = 'acct-x'"))
        assert stray.scalar_one() == 0


async def test_a_repeated_request_in_one_batch_deducts_once(database: Database) -> None:
    await funded(database, "acct-4", 100)

    first, second = await asyncio.gather(
        database.write(deduct(database, "same", "acct-4", 30)),
        database.write(deduct(database, "same", "acct-4", 30)),
    )

    assert first.deduction_id == second.deduction_id
    assert balance_and_ledger(database, "acct-4") == (70, 70, 2)


async def test_group_commit_of_one_commits_each_alone(make_db_url: Callable[[str], str]) -> None:
    engine = create_db_engine(make_db_url("alone"))
    upgrade_schema(engine, MIGRATIONS, VERSION_TABLE)
    db = Database(engine, workers=4, group_commit=1)
    try:
        await funded(db, "acct-5", 100)
        commits = count_commits(db)
        await asyncio.gather(*(db.write(deduct(db, f"r{i}", "acct-5", 1)) for i in range(10)))
        assert commits[0] == 10
        assert balance_and_ledger(db, "acct-5") == (90, 90, 11)
    finally:
        db.close()
