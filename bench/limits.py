"""The machine's floors, measured in the same run: what one call cannot cost less than.

Each figure is the cost of one ingredient of a call, alone and in one process:
an fsync, a durable SQLite commit, a deduction-shaped transaction (bench/drivers.py),
an ES256 token verification, a SQLAlchemy Core statement against the same statement
on the raw sqlite3 cursor, a hop to the worker thread pool, and the card-points
deduction use case (one durable unit of work) beside the same SQL written by hand.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import text

from bench import drivers
from bench.stack import DEFAULT_PG_URL
from servicekit.auth import TokenIssuer, TokenVerifier, generate_signing_key
from servicekit.db import Database, create_db_engine, upgrade_schema


def _per_call(fn: Callable[[], object], seconds: float, warmup: int = 20) -> dict[str, float]:
    """Mean wall and CPU microseconds of one call of `fn`, over about `seconds`."""
    for _ in range(warmup):
        fn()
    calls = 0
    wall0, cpu0 = time.perf_counter(), time.process_time()
    while (wall := time.perf_counter() - wall0) < seconds:
        fn()
        calls += 1
    cpu = time.process_time() - cpu0
    return {"wall_us": round(wall / calls * 1e6, 1), "cpu_us": round(cpu / calls * 1e6, 1)}


def fsync_cost(folder: Path, seconds: float) -> dict[str, float]:
    path = folder / "fsync-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        block = b"x" * 4096

        def write_and_sync() -> None:
            os.write(fd, block)
            os.fsync(fd)

        return _per_call(write_and_sync, seconds)
    finally:
        os.close(fd)
        path.unlink()


def sqlite_commit_cost(folder: Path, seconds: float) -> dict[str, dict[str, float]]:
    """A one-row write transaction on the raw sqlite3 driver, WAL, per synchronous mode."""

    def commit_one_row(conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t (v) VALUES (?)", ("x" * 100,))
        conn.execute("COMMIT")

    out = {}
    for mode in ("FULL", "NORMAL"):
        conn = sqlite3.connect(folder / f"commit-{mode}.db", isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={mode}")
            conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
            out[mode] = _per_call(functools.partial(commit_one_row, conn), seconds)
        finally:
            conn.close()
    return out


def jwt_cost(seconds: float) -> dict[str, dict[str, float]]:
    private, public = generate_signing_key()
    token = TokenIssuer(private).issue("customer-1", ["customer"], 3600)
    verifier = TokenVerifier(public)
    uncached = TokenVerifier(public, cache_size=0)
    return {
        "es256_verify": _per_call(lambda: uncached.verify(token), seconds),
        "cached_verify": _per_call(lambda: verifier.verify(token), seconds),
    }


def statement_cost(folder: Path, seconds: float) -> dict[str, dict[str, float]]:
    """One indexed SELECT by primary key: SQLAlchemy Core (prebuilt), the same statement
    as servicekit.compiled runs it, and raw sqlite3."""
    from cardpoints.adapters.repository import _GET_RECORD
    from cardpoints.entrypoints.server import MIGRATIONS, VERSION_TABLE

    engine = create_db_engine(f"sqlite:///{folder / 'statements.db'}", durable=True)
    try:
        upgrade_schema(engine, MIGRATIONS, VERSION_TABLE)
        params = {"operation": "deduct", "request_id": "absent"}
        with engine.connect() as conn:
            statement = _GET_RECORD.statement
            core = _per_call(lambda: conn.execute(statement, params).first(), seconds)
            compiled = _per_call(lambda: _GET_RECORD.first(conn, params), seconds)
            sql = "SELECT * FROM idempotency_records WHERE operation = ? AND request_id = ?"
            raw_conn = conn.connection.driver_connection
            assert raw_conn is not None
            raw = _per_call(lambda: raw_conn.execute(sql, ("deduct", "absent")).fetchone(), seconds)
            conn.execute(text("SELECT 1"))
        return {"sqlalchemy_core": core, "compiled": compiled, "raw_sqlite3": raw}
    finally:
        engine.dispose()


def handoff_cost(folder: Path, seconds: float) -> dict[str, float]:
    """One `await Database.run(...)` of a function that does nothing."""
    engine = create_db_engine(f"sqlite:///{folder / 'handoff.db'}", durable=False, pool_size=1)
    database = Database(engine, workers=8)

    async def measure() -> dict[str, float]:
        for _ in range(50):
            await database.run(lambda: None)
        calls = 0
        wall0, cpu0 = time.perf_counter(), time.process_time()
        while (wall := time.perf_counter() - wall0) < seconds:
            await database.run(lambda: None)
            calls += 1
        cpu = time.process_time() - cpu0
        return {"wall_us": round(wall / calls * 1e6, 1), "cpu_us": round(cpu / calls * 1e6, 1)}

    try:
        return asyncio.run(measure())
    finally:
        database.close()


def deduction_cost(folder: Path, seconds: float) -> dict[str, dict[str, float]]:
    """The card-points deduction use case, one durable unit of work, sequentially; and the
    same five statements and commit on the raw sqlite3 cursor."""
    from cardpoints.adapters.repository import CardpointsUnitOfWork
    from cardpoints.domain import model
    from cardpoints.entrypoints.server import MIGRATIONS, VERSION_TABLE
    from cardpoints.service_layer import services
    from servicekit.clock import utc_now

    engine = create_db_engine(f"sqlite:///{folder / 'deductions.db'}", durable=True)
    database = Database(engine, workers=1)
    try:
        upgrade_schema(engine, MIGRATIONS, VERSION_TABLE)
        services.open_account(
            CardpointsUnitOfWork(database.sessions), model.OpenAccount("a-1", "A"), utc_now
        )
        services.credit_points(
            CardpointsUnitOfWork(database.sessions),
            model.CreditPoints("c-1", "a-1", 10**15, ""),
            utc_now,
        )
        numbers = iter(range(10**9))

        def use_case() -> None:
            n = next(numbers)
            services.deduct_points(
                CardpointsUnitOfWork(database.sessions),
                model.DeductPoints(f"u-{n}", "a-1", 100, 1, 100, "m"),
                utc_now,
            )

        raw_conn = engine.raw_connection()
        stamp = "2026-01-01 00:00:00.000000"

        def by_hand() -> None:
            n = next(numbers)
            cur = raw_conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            cur.execute(
                "SELECT * FROM idempotency_records WHERE operation = ? AND request_id = ?",
                ("deduct", f"h-{n}"),
            ).fetchall()
            cur.execute(
                "UPDATE accounts SET balance = balance - 100, update_time = ? WHERE"
                " account_id = ? AND state = 'ACTIVE' AND balance >= 100 RETURNING balance",
                (stamp, "a-1"),
            ).fetchall()
            cur.execute(
                "INSERT INTO deductions (deduction_id, request_id, account_id, points,"
                " balance_after, reversed_points, coupon_quantity, points_per_coupon,"
                " merchant_id, create_time, update_time) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (f"dh-{n}", f"h-{n}", "a-1", 100, 1, 0, 1, 100, "m", stamp, stamp),
            )
            cur.execute(
                "INSERT INTO ledger_entries (entry_id, account_id, type, amount, balance_after,"
                " request_id, reference_id, reason, create_time) VALUES (?,?,?,?,?,?,?,?,?)",
                (f"eh-{n}", "a-1", "DEDUCTION", -100, 1, f"h-{n}", f"dh-{n}", "", stamp),
            )
            cur.execute(
                "INSERT INTO idempotency_records VALUES (?,?,?,?,?,?,?,?)",
                ("deduct", f"h-{n}", "f", f"dh-{n}", None, "", "{}", stamp),
            )
            cur.execute("COMMIT")

        try:
            return {
                "use_case": _per_call(use_case, seconds),
                "same_sql_raw_sqlite3": _per_call(by_hand, seconds),
            }
        finally:
            raw_conn.close()
    finally:
        database.close()


def measure(seconds: float = 1.0, pg_url: str = DEFAULT_PG_URL) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="pointsbridge-limits-") as tmp:
        folder = Path(tmp)
        result: dict[str, Any] = {
            "fsync_4k": fsync_cost(folder, seconds),
            "sqlite_one_row_commit": sqlite_commit_cost(folder, seconds),
            "jwt": jwt_cost(seconds),
            "statement": statement_cost(folder, seconds),
            "thread_handoff": handoff_cost(folder, seconds),
            "deduction": deduction_cost(folder, seconds),
        }
        sqlite_url = f"sqlite:///{folder / 'drivers.db'}"
        result["drivers_tx_per_s"] = {
            "sqlite_sync": round(drivers.measure_sync(sqlite_url, seconds))
        }
    try:
        result["drivers_tx_per_s"]["postgres_sync"] = round(drivers.measure_sync(pg_url, seconds))
    except Exception as error:  # PostgreSQL is optional for this figure
        result["drivers_tx_per_s"]["postgres_error"] = str(error)[:200]
    return result


if __name__ == "__main__":
    import json

    print(json.dumps(measure(), indent=1))
