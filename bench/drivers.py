"""Transactions per second of SQLAlchemy's sync and async drivers, on SQLite and PostgreSQL.

Each transaction is the shape of a deduction: a guarded UPDATE ... RETURNING,
an INSERT, a COMMIT. It decides how units of work run (docs/ARCHITECTURE.md).

    .venv/bin/python -m bench.drivers [--seconds 3] [--pg-url postgresql://...]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table, insert, update
from sqlalchemy.ext.asyncio import create_async_engine

from servicekit.db import create_db_engine

metadata = MetaData()
accounts = Table(
    "bench_accounts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("balance", BigInteger, nullable=False),
)
entries = Table(
    "bench_entries",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("note", String(32), nullable=False),
)

DEBIT = (
    update(accounts)
    .where(accounts.c.id == 1, accounts.c.balance >= 1)
    .values(balance=accounts.c.balance - 1)
    .returning(accounts.c.balance)
)


def _timed(seconds: float, one: Callable[[], None]) -> float:
    done = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        one()
        done += 1
    return done / elapsed


def measure_sync(url: str, seconds: float) -> float:
    engine = create_db_engine(url, durable=True, pool_size=1)
    metadata.drop_all(engine)
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(insert(accounts).values(id=1, balance=10**12))

    def one() -> None:
        with engine.begin() as conn:
            conn.execute(DEBIT).one()
            conn.execute(insert(entries).values(note="deduction"))

    rate = _timed(seconds, one)
    metadata.drop_all(engine)
    engine.dispose()
    return rate


async def measure_async(url: str, seconds: float) -> float:
    engine = create_async_engine(url, pool_size=1)
    if url.startswith("sqlite"):
        from sqlalchemy import event

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_connection: object, _record: object) -> None:
            cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.close()

    async with engine.begin() as conn:
        await conn.run_sync(metadata.drop_all)
        await conn.run_sync(metadata.create_all)
        await conn.execute(insert(accounts).values(id=1, balance=10**12))
    done = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        async with engine.begin() as conn:
            (await conn.execute(DEBIT)).one()
            await conn.execute(insert(entries).values(note="deduction"))
        done += 1
    async with engine.begin() as conn:
        await conn.run_sync(metadata.drop_all)
    await engine.dispose()
    return done / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    parser.add_argument(
        "--pg-url",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="PostgreSQL database to measure on (tables bench_* are created and dropped)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sqlite_file = Path(tmp) / "bench.db"
        rows = [
            ("SQLite, sync sqlite3", measure_sync(f"sqlite:///{sqlite_file}", args.seconds)),
            (
                "SQLite, async aiosqlite",
                asyncio.run(measure_async(f"sqlite+aiosqlite:///{sqlite_file}", args.seconds)),
            ),
        ]
    pg = args.pg_url.split("://", 1)[1]
    rows += [
        ("PostgreSQL, sync psycopg 3", measure_sync(f"postgresql://{pg}", args.seconds)),
        (
            "PostgreSQL, async asyncpg",
            asyncio.run(measure_async(f"postgresql+asyncpg://{pg}", args.seconds)),
        ),
    ]
    print("| driver | transactions/s (1 connection, sequential) |")
    print("|---|---:|")
    for name, rate in rows:
        print(f"| {name} | {rate:,.0f} |")


if __name__ == "__main__":
    main()
