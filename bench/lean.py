"""The bare work of DeductPoints, with no project code: what the design could reach.

    python -m bench.lean --address 127.0.0.1:0 --database FILE --accounts N
    python -m bench.lean --address 127.0.0.1:0 --postgres URL --accounts N [--shape steps]

A grpc.aio server (asyncio's default loop, as the services) answering
CardPointsService.DeductPoints with the durable work of a deduction and nothing
else: an idempotency lookup, a guarded decrement, a deduction row, a ledger entry
and an idempotency record, then COMMIT. No auth, log line, metric or request id: if
this server does not reach a target, no arrangement of the project's duties around
the same work will.

SQLite (--database): WAL with synchronous=FULL. One writer thread runs, in one
transaction, whatever queued while the previous transaction committed, a savepoint
per call; each caller is answered only once that COMMIT returned.
PostgreSQL (--postgres): asyncpg on the event loop, a pool of --pool connections (8, as
the services' default --workers; 16 and 32 did no better on this machine), in one of two
shapes (--shape): `steps`, one transaction per call and one statement per step (BEGIN,
five statements, COMMIT); or `single`, one round trip per call: one data-modifying
statement, its own implicit transaction, durable at its COMMIT on return.

Only grpc, the generated messages, the standard library and asyncpg. It creates its
tables and seeds its own accounts at start (card-0000001 ... with 1,000,000 points
each) and prints "serving on port N" once it listens. bench/lean_chain.py builds the
bare redemption chain on the same machinery.
"""

from __future__ import annotations

import argparse
import asyncio
import queue
import secrets
import signal
import sqlite3
import sys
import threading
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import asyncpg  # type: ignore[import-untyped]
import grpc

from pointsbridge.cardpoints.v1 import cardpoints_pb2 as cp
from pointsbridge.cardpoints.v1 import cardpoints_pb2_grpc as cp_grpc

T = TypeVar("T")

SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (account_id TEXT PRIMARY KEY, state TEXT NOT NULL,
    balance INTEGER NOT NULL CHECK (balance >= 0), update_time TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS deductions (seq INTEGER PRIMARY KEY, deduction_id TEXT UNIQUE,
    request_id TEXT UNIQUE, account_id TEXT REFERENCES accounts, points INTEGER,
    balance_after INTEGER, coupon_quantity INTEGER, points_per_coupon INTEGER,
    merchant_id TEXT, create_time TEXT);
CREATE TABLE IF NOT EXISTS ledger (seq INTEGER PRIMARY KEY, entry_id TEXT UNIQUE,
    account_id TEXT REFERENCES accounts, amount INTEGER, balance_after INTEGER,
    request_id TEXT, reference_id TEXT, create_time TEXT);
CREATE TABLE IF NOT EXISTS idempotency (operation TEXT, request_id TEXT, resource_id TEXT,
    create_time TEXT, PRIMARY KEY (operation, request_id));
"""
PG_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (account_id TEXT PRIMARY KEY, state TEXT NOT NULL,
    balance BIGINT NOT NULL CHECK (balance >= 0), update_time TIMESTAMPTZ NOT NULL);
CREATE TABLE IF NOT EXISTS deductions (seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    deduction_id TEXT UNIQUE, request_id TEXT UNIQUE, account_id TEXT REFERENCES accounts,
    points BIGINT, balance_after BIGINT, coupon_quantity INTEGER, points_per_coupon BIGINT,
    merchant_id TEXT, create_time TIMESTAMPTZ);
CREATE TABLE IF NOT EXISTS ledger (seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    entry_id TEXT UNIQUE, account_id TEXT REFERENCES accounts, amount BIGINT,
    balance_after BIGINT, request_id TEXT, reference_id TEXT, create_time TIMESTAMPTZ);
CREATE TABLE IF NOT EXISTS idempotency (operation TEXT, request_id TEXT, resource_id TEXT,
    create_time TIMESTAMPTZ, PRIMARY KEY (operation, request_id));
"""
PG_SEED = (
    "INSERT INTO accounts SELECT 'card-' || lpad(i::text, 7, '0'), 'ACTIVE', 1000000, now()"
    " FROM generate_series(1, $1::int) AS i ON CONFLICT DO NOTHING"
)
BATCH = 64
POOL = 8  # connections, as the services' default --workers


class Refused(Exception):
    """A definite refusal: the unit's statements are rolled back, the caller told why."""


# ---------------------------------------------------------------- the work of a deduction


def deduct(db: sqlite3.Connection, now: str, request: Any) -> str:
    """The statements of one deduction on SQLite; its deduction id."""
    found = db.execute(
        "SELECT resource_id FROM idempotency WHERE operation = 'deduct' AND request_id = ?",
        (request.request_id,),
    ).fetchone()
    if found is not None:
        return str(found[0])
    row = db.execute(
        "UPDATE accounts SET balance = balance - ?, update_time = ? WHERE account_id = ?"
        " AND state = 'ACTIVE' AND balance >= ? RETURNING balance",
        (request.points, now, request.account_id, request.points),
    ).fetchone()
    if row is None:
        raise Refused("insufficient points")
    deduction_id = "ded_" + secrets.token_hex(8)
    db.execute(
        "INSERT INTO deductions (deduction_id, request_id, account_id, points, balance_after,"
        " coupon_quantity, points_per_coupon, merchant_id, create_time)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            deduction_id,
            request.request_id,
            request.account_id,
            request.points,
            row[0],
            request.coupon_quantity,
            request.points_per_coupon,
            request.merchant_id,
            now,
        ),
    )
    db.execute(
        "INSERT INTO ledger (entry_id, account_id, amount, balance_after, request_id,"
        " reference_id, create_time) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            "ent_" + secrets.token_hex(8),
            request.account_id,
            -request.points,
            row[0],
            request.request_id,
            deduction_id,
            now,
        ),
    )
    db.execute(
        "INSERT INTO idempotency VALUES ('deduct', ?, ?, ?)",
        (request.request_id, deduction_id, now),
    )
    return deduction_id


STEPS, SINGLE = "steps", "single"
SHAPES = (STEPS, SINGLE)

# The whole deduction as one statement. Every part sees the same snapshot: the decrement
# runs only when no record of the request id was found, and the three inserts take their
# one row from the decrement's RETURNING, so a refused guard inserts nothing. It answers
# in one row: the found record's deduction id (a replay), or the new balance (taken), or
# neither (refused).
DEDUCT_SINGLE = """
WITH found AS (
    SELECT resource_id FROM idempotency WHERE operation = 'deduct' AND request_id = $1::text
), taken AS (
    UPDATE accounts SET balance = balance - $3::bigint, update_time = $4::timestamptz
    WHERE account_id = $2::text AND state = 'ACTIVE' AND balance >= $3::bigint
        AND NOT EXISTS (SELECT 1 FROM found)
    RETURNING balance
), deduction AS (
    INSERT INTO deductions (deduction_id, request_id, account_id, points, balance_after,
        coupon_quantity, points_per_coupon, merchant_id, create_time)
    SELECT $5::text, $1, $2, $3, balance, $6::int, $7::bigint, $8::text, $4 FROM taken
), entry AS (
    INSERT INTO ledger (entry_id, account_id, amount, balance_after, request_id,
        reference_id, create_time)
    SELECT $9::text, $2, -$3, balance, $1, $5, $4 FROM taken
), record AS (
    INSERT INTO idempotency SELECT 'deduct', $1, $5, $4 FROM taken
)
SELECT (SELECT resource_id FROM found) AS replayed, (SELECT balance FROM taken) AS balance
"""


async def deduct_pg(pool: Any, request: Any, shape: str = SINGLE) -> str:
    """The same deduction on PostgreSQL, in `shape`; its deduction id."""
    once = _deduct_single if shape == SINGLE else _deduct_steps
    for attempt in (1, 2):
        try:
            return await once(pool, request)
        except asyncpg.UniqueViolationError:  # the same request id, committed meanwhile
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


async def after_refusal(conn: Any, request: Any) -> str:
    """The guarded decrement took nothing: the rare path, one read-only statement on a
    fresh snapshot. A concurrent call with the same request id that committed while this
    one waited for the account's row is a replay (its id); otherwise it says why."""
    row = await conn.fetchrow(
        "SELECT i.resource_id, a.state FROM (SELECT 1) AS one"
        " LEFT JOIN idempotency AS i ON i.operation = 'deduct' AND i.request_id = $1"
        " LEFT JOIN accounts AS a ON a.account_id = $2",
        request.request_id,
        request.account_id,
    )
    if row["resource_id"] is not None:
        return str(row["resource_id"])
    if row["state"] is None:
        raise Refused("no such account")
    if row["state"] != "ACTIVE":
        raise Refused(f"account {row['state'].lower()}")
    raise Refused("insufficient points")


async def _deduct_single(pool: Any, request: Any) -> str:
    """One statement, sent outside any explicit transaction: one round trip."""
    deduction_id = "ded_" + secrets.token_hex(8)
    async with pool.acquire() as conn:
        replayed, balance = await conn.fetchrow(
            DEDUCT_SINGLE,
            request.request_id,
            request.account_id,
            request.points,
            datetime.now(UTC),
            deduction_id,
            request.coupon_quantity,
            request.points_per_coupon,
            request.merchant_id,
            "ent_" + secrets.token_hex(8),
        )
        if replayed is not None:
            return str(replayed)
        if balance is None:
            return await after_refusal(conn, request)
        return deduction_id


async def _deduct_steps(pool: Any, request: Any) -> str:
    """One transaction, one statement per step: about seven round trips."""
    now = datetime.now(UTC)
    async with pool.acquire() as conn, conn.transaction():
        found = await conn.fetchval(
            "SELECT resource_id FROM idempotency WHERE operation = 'deduct' AND request_id = $1",
            request.request_id,
        )
        if found is not None:
            return str(found)
        balance = await conn.fetchval(
            "UPDATE accounts SET balance = balance - $1, update_time = $2 WHERE account_id = $3"
            " AND state = 'ACTIVE' AND balance >= $1 RETURNING balance",
            request.points,
            now,
            request.account_id,
        )
        if balance is None:
            return await after_refusal(conn, request)
        deduction_id = "ded_" + secrets.token_hex(8)
        await conn.execute(
            "INSERT INTO deductions (deduction_id, request_id, account_id, points, balance_after,"
            " coupon_quantity, points_per_coupon, merchant_id, create_time)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            deduction_id,
            request.request_id,
            request.account_id,
            request.points,
            balance,
            request.coupon_quantity,
            request.points_per_coupon,
            request.merchant_id,
            now,
        )
        await conn.execute(
            "INSERT INTO ledger (entry_id, account_id, amount, balance_after, request_id,"
            " reference_id, create_time) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            "ent_" + secrets.token_hex(8),
            request.account_id,
            -request.points,
            balance,
            request.request_id,
            deduction_id,
            now,
        )
        await conn.execute(
            "INSERT INTO idempotency VALUES ('deduct', $1, $2, $3)",
            request.request_id,
            deduction_id,
            now,
        )
        return deduction_id


# ---------------------------------------------------------------- the machinery


class Writer:
    """One thread, one SQLite connection: a transaction per batch, a savepoint per unit.

    A unit is a function of (connection, now) run inside its savepoint; an exception
    from it rolls back that unit alone and is what its caller gets."""

    def __init__(self, path: str, loop: asyncio.AbstractEventLoop) -> None:
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._queue: queue.SimpleQueue[tuple[Any, asyncio.Future[Any]] | None] = queue.SimpleQueue()
        self._loop = loop
        self._thread = threading.Thread(target=self._run, name="writer", daemon=True)

    def setup(self, schema: str, seed: str, rows: Any) -> None:
        """Create the tables, seed them in one transaction (executemany), start the thread."""
        self._db.executescript(schema)
        self._db.execute("BEGIN")
        self._db.executemany(seed, rows)
        self._db.execute("COMMIT")
        self._thread.start()

    def submit(self, unit: Callable[[sqlite3.Connection, str], T]) -> asyncio.Future[T]:
        future: asyncio.Future[T] = self._loop.create_future()
        self._queue.put((unit, future))
        return future

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(10)

    def _run(self) -> None:
        db = self._db
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)
                    break
                batch.append(item)
            now = datetime.now(UTC).isoformat()
            outcomes: list[tuple[bool, Any]] = []
            try:
                db.execute("BEGIN IMMEDIATE")
                for unit, _ in batch:
                    db.execute("SAVEPOINT unit")
                    try:
                        outcomes.append((True, unit(db, now)))
                    except Exception as refusal:
                        db.execute("ROLLBACK TO unit")
                        outcomes.append((False, refusal))
                    db.execute("RELEASE unit")
                db.execute("COMMIT")  # durable here: synchronous=FULL
            except sqlite3.Error as error:  # nothing of the batch committed
                if db.in_transaction:
                    db.execute("ROLLBACK")
                outcomes = [(False, error)] * len(batch)
            self._loop.call_soon_threadsafe(_deliver, batch, outcomes)


def _deliver(batch: list[tuple[Any, asyncio.Future[Any]]], outcomes: list[Any]) -> None:
    for (_, future), (ok, value) in zip(batch, outcomes, strict=True):
        if future.done():
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


def asyncpg_dsn(url: str) -> str:
    """postgresql+driver://... (as the bench and tests spell it) in the form asyncpg takes."""
    scheme, rest = url.split("://", 1)
    return "postgresql://" + rest if scheme.startswith("postgresql") else url


async def open_pool(url: str, size: int, schema: str, seed: str, *args: Any) -> Any:
    """An asyncpg pool of `size` connections on `url`, its tables created and seeded."""
    pool = await asyncpg.create_pool(asyncpg_dsn(url), min_size=size, max_size=size)
    async with pool.acquire() as conn:
        await conn.execute(schema)
        await conn.execute(seed, *args)
    return pool


async def serve_until_stopped(server: grpc.aio.Server, address: str, what: str) -> None:
    """Listen on `address`, say so, serve until SIGTERM or SIGINT, then stop."""
    port = server.add_insecure_port(address)
    await server.start()
    print(f"{what} serving on port {port}", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(1.0)


def add_store_arguments(parser: argparse.ArgumentParser) -> None:
    store = parser.add_mutually_exclusive_group(required=True)
    store.add_argument("--database", help="SQLite file (created)")
    store.add_argument("--postgres", help="PostgreSQL database URL (tables created in it)")
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--pool", type=int, default=POOL, help="PostgreSQL connections")


# ---------------------------------------------------------------- the server


class LeanCardPoints(cp_grpc.CardPointsServiceServicer):
    def __init__(self, work: Callable[[Any], Awaitable[str]]) -> None:
        self._work = work

    async def DeductPoints(self, request: Any, context: Any) -> cp.DeductPointsResponse:
        try:
            deduction_id = await self._work(request)
        except Refused as refusal:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(refusal))
        return cp.DeductPointsResponse(
            deduction=cp.Deduction(
                deduction_id=deduction_id,
                request_id=request.request_id,
                account_id=request.account_id,
                points=request.points,
                state=cp.DEDUCTION_STATE_COMPLETED,
                coupon_quantity=request.coupon_quantity,
                points_per_coupon=request.points_per_coupon,
                merchant_id=request.merchant_id,
            )
        )


async def serve(args: argparse.Namespace) -> None:
    writer: Writer | None = None
    pool: Any = None
    work: Callable[[Any], Awaitable[str]]
    if args.postgres:
        pool = await open_pool(args.postgres, args.pool, PG_SCHEMA, PG_SEED, args.accounts)

        def work(request: Any) -> Awaitable[str]:
            return deduct_pg(pool, request, args.shape)

    else:
        sqlite_writer = writer = Writer(args.database, asyncio.get_running_loop())
        sqlite_writer.setup(
            SQLITE_SCHEMA,
            "INSERT OR IGNORE INTO accounts VALUES (?, 'ACTIVE', 1000000, '')",
            ((f"card-{i:07d}",) for i in range(1, args.accounts + 1)),
        )

        def work(request: Any) -> Awaitable[str]:
            return sqlite_writer.submit(lambda db, now: deduct(db, now, request))

    server = grpc.aio.server()
    servicer = LeanCardPoints(work)  # type: ignore[abstract]  # the rest: UNIMPLEMENTED
    cp_grpc.add_CardPointsServiceServicer_to_server(servicer, server)
    await serve_until_stopped(server, args.address, "lean deduct")
    if writer is not None:
        writer.stop()
    if pool is not None:
        await pool.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", default="127.0.0.1:0")
    add_store_arguments(parser)
    parser.add_argument(
        "--shape",
        choices=SHAPES,
        default=SINGLE,
        help="PostgreSQL: one statement per call (single, the default: the faster) or one"
        " statement per step in a transaction (steps)",
    )
    args = parser.parse_args(argv)
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
