"""The bare work of DeductPoints on SQLite, with no project code: what the design could reach.

    python -m bench.lean --address 127.0.0.1:0 --database FILE --accounts N

A grpc.aio server (asyncio's default loop, as the services) answering
CardPointsService.DeductPoints with the durable work of a deduction and nothing
else: an idempotency lookup, a guarded decrement, a deduction row, a ledger entry
and an idempotency record, in SQLite WAL with synchronous=FULL. One writer thread
runs, in one transaction, whatever queued while the previous transaction committed,
a savepoint per call; each caller is answered only once that COMMIT returned. No
auth, log line, metric or request id: if this server does not reach a target, no
arrangement of the project's duties around the same work will.

Only grpc, the generated messages and the standard library. It seeds its own
database at start (accounts card-0000001 ... with 1,000,000 points each) and
prints "serving on port N" once it listens.
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
from datetime import UTC, datetime
from typing import Any

import grpc

from pointsbridge.cardpoints.v1 import cardpoints_pb2 as cp
from pointsbridge.cardpoints.v1 import cardpoints_pb2_grpc as cp_grpc

SCHEMA = """
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
BATCH = 64


class Refused(Exception):
    pass


def deduct(db: sqlite3.Connection, request: Any, now: str) -> str:
    """The statements of one deduction; its deduction id."""
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
        raise Refused(request.account_id)
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


class Writer:
    """One thread, one connection: a transaction per batch, a savepoint per call."""

    def __init__(self, path: str, loop: asyncio.AbstractEventLoop) -> None:
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._queue: queue.SimpleQueue[tuple[Any, asyncio.Future[Any]] | None] = queue.SimpleQueue()
        self._loop = loop
        self._thread = threading.Thread(target=self._run, name="writer", daemon=True)

    def seed(self, accounts: int) -> None:
        self._db.executescript(SCHEMA)
        self._db.execute("BEGIN")
        self._db.executemany(
            "INSERT OR IGNORE INTO accounts VALUES (?, 'ACTIVE', 1000000, '')",
            ((f"card-{i:07d}",) for i in range(1, accounts + 1)),
        )
        self._db.execute("COMMIT")
        self._thread.start()

    def submit(self, request: Any) -> asyncio.Future[Any]:
        future = self._loop.create_future()
        self._queue.put((request, future))
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
                for request, _ in batch:
                    db.execute("SAVEPOINT unit")
                    try:
                        outcomes.append((True, deduct(db, request, now)))
                    except Refused as refusal:
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


class LeanCardPoints(cp_grpc.CardPointsServiceServicer):
    def __init__(self, writer: Writer) -> None:
        self._writer = writer

    async def DeductPoints(self, request: Any, context: Any) -> cp.DeductPointsResponse:
        try:
            deduction_id = await self._writer.submit(request)
        except Refused:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "insufficient points")
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
    writer = Writer(args.database, asyncio.get_running_loop())
    writer.seed(args.accounts)
    server = grpc.aio.server()
    servicer = LeanCardPoints(writer)  # type: ignore[abstract]  # the rest: UNIMPLEMENTED
    cp_grpc.add_CardPointsServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port(args.address)
    await server.start()
    print(f"lean deduct serving on port {port}", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(1.0)
    writer.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", default="127.0.0.1:0")
    parser.add_argument("--database", required=True, help="SQLite file (created)")
    parser.add_argument("--accounts", type=int, default=10_000)
    args = parser.parse_args(argv)
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
