"""Units of work on PostgreSQL run on the event loop (asyncpg): what a server relies on.

Each test runs a real PostgreSQL database through `Database` over an `on_loop` engine,
the way the servers open it, and checks what committed with a separate connection.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from servicekit.db import Database, SqlUnitOfWork, create_db_engine, normalize_url
from servicekit.devtools.databases import drop_database
from tests.conftest import create_pg_database

pytestmark = pytest.mark.postgres


@pytest.fixture
def url() -> Iterator[str]:
    created = create_pg_database()
    with psycopg.connect(_plain(created), autocommit=True) as connection:
        connection.execute("CREATE TABLE items (id text PRIMARY KEY, n integer NOT NULL)")
    yield created
    drop_database(created)


def _plain(url: str) -> str:
    return normalize_url(url).replace("postgresql+psycopg://", "postgresql://")


def _stored(url: str) -> list[str]:
    with psycopg.connect(_plain(url)) as connection:
        return [row[0] for row in connection.execute("SELECT id FROM items ORDER BY id")]


def _insert(db: Database, item: str) -> None:
    with SqlUnitOfWork(db.sessions) as uow:
        uow.session.execute(text("INSERT INTO items VALUES (:id, 1)"), {"id": item})
        uow.commit()


async def test_units_run_on_the_loop_thread_and_commit(url: str) -> None:
    db = Database(create_db_engine(url, on_loop=True, pool_size=2))
    assert db.on_loop
    loop_thread = threading.get_ident()
    seen: list[int] = []

    def unit(item: str) -> str:
        seen.append(threading.get_ident())
        _insert(db, item)
        return item

    try:
        done = await asyncio.gather(
            *(db.write(functools.partial(unit, f"item-{i:02d}")) for i in range(20))
        )
    finally:
        await db.aclose()
    assert sorted(done) == [f"item-{i:02d}" for i in range(20)]
    assert set(seen) == {loop_thread}
    assert _stored(url) == sorted(done)


async def test_no_more_units_at_once_than_connections(url: str) -> None:
    db = Database(create_db_engine(url, on_loop=True, pool_size=2))
    inside = 0
    most = 0

    def unit() -> None:
        nonlocal inside, most
        with SqlUnitOfWork(db.read_sessions) as uow:
            uow.session.execute(text("SELECT 1"))  # holds a connection from here on
            inside += 1
            most = max(most, inside)
            try:
                uow.session.execute(text("SELECT pg_sleep(0.02)"))
            finally:
                inside -= 1

    try:
        await asyncio.gather(*(db.run(unit) for _ in range(12)))
    finally:
        await db.aclose()
    assert most == 2


async def test_a_transient_conflict_reruns_the_unit(url: str) -> None:
    db = Database(create_db_engine(url, on_loop=True, pool_size=1))
    attempts: list[str] = []

    def unit() -> None:
        # The first attempt meets a duplicate key, as a concurrent duplicate would.
        item = "taken" if not attempts else "free"
        attempts.append(item)
        _insert(db, item)

    try:
        await db.write(lambda: _insert(db, "taken"))
        await db.write(unit)
    finally:
        await db.aclose()
    assert attempts == ["taken", "free"]
    assert _stored(url) == ["free", "taken"]


async def test_a_failed_statement_reaches_the_caller_and_frees_its_connection(url: str) -> None:
    db = Database(create_db_engine(url, on_loop=True, pool_size=1))

    def broken() -> None:
        with SqlUnitOfWork(db.sessions) as uow:
            uow.session.execute(text("INSERT INTO items VALUES ('x', NULL)"))
            uow.commit()

    try:
        with pytest.raises(DBAPIError, match="not-null"):
            await db.write(broken)
        await db.write(lambda: _insert(db, "after"))
    finally:
        await db.aclose()
    assert _stored(url) == ["after"]


async def test_a_cancelled_caller_leaves_its_unit_to_finish(url: str) -> None:
    """The caller stops waiting; the unit still commits, and the one connection it used
    serves the next units in transactions of their own, each durable once answered."""
    db = Database(create_db_engine(url, on_loop=True, pool_size=1))
    started = asyncio.Event()

    def slow() -> None:
        with SqlUnitOfWork(db.sessions) as uow:
            uow.session.execute(text("INSERT INTO items VALUES ('slow', 1)"))
            started.set()
            uow.session.execute(text("SELECT pg_sleep(0.3)"))
            uow.commit()

    try:
        caller = asyncio.ensure_future(db.write(slow))
        await started.wait()
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        for i in range(3):
            await db.write(functools.partial(_insert, db, f"next-{i}"))
            # Answered, so committed: another connection sees it at once.
            assert f"next-{i}" in _stored(url)
    finally:
        await db.aclose()
    assert _stored(url) == ["next-0", "next-1", "next-2", "slow"]


async def test_closing_waits_for_units_whose_callers_left(url: str) -> None:
    db = Database(create_db_engine(url, on_loop=True, pool_size=1))
    started = asyncio.Event()

    def slow() -> None:
        with SqlUnitOfWork(db.sessions) as uow:
            session: Session = uow.session
            started.set()
            session.execute(text("SELECT pg_sleep(0.1)"))
            session.execute(text("INSERT INTO items VALUES ('left', 1)"))
            uow.commit()

    caller = asyncio.ensure_future(db.write(slow))
    await started.wait()
    caller.cancel()
    await db.aclose()
    assert _stored(url) == ["left"]
