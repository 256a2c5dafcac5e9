"""The bare work of RedeemPoints, with no project code: the 2-hop chain the design could reach.

    python -m bench.lean_chain --address 127.0.0.1:0 --next HOST:PORT --database FILE
    python -m bench.lean_chain --address 127.0.0.1:0 --next HOST:PORT --postgres URL

A grpc.aio server (asyncio's default loop, as the services) answering
RedemptionService.RedeemPoints with the durable work of a redemption and nothing else,
calling the bare-work DeductPoints of bench/lean.py at `--next`:

  (a) the idempotency lookup (the redemption's request id) and, for a new one, the
      PENDING redemption inserted with its card account read from the card link in the
      same statement; commit;
  (b) one DeductPoints call to `--next` (one grpc.aio channel, with a deadline);
  (c) the redemption marked COMPLETED and its coupons inserted in one multi-row
      INSERT; commit; the answer carries the redemption and its coupon codes.

A refused deduction marks the redemption FAILED; an unknown outcome leaves it PENDING,
and the same request id resumes it. SQLite (--database) uses bench/lean.py's writer
thread with group commit (WAL, synchronous=FULL), PostgreSQL (--postgres) an asyncpg
pool. Only grpc, the generated messages, the standard library, asyncpg and the
machinery of bench/lean.py. It seeds its own card links (cust-0000001 ... to
card-0000001 ...) and takes the load generator's four products (bench-coupon-0 ... 3)
from a constant table; it ignores the caller's token.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import secrets
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import grpc

from bench.lean import Refused, Writer, add_store_arguments, open_pool, serve_until_stopped
from pointsbridge.cardpoints.v1 import cardpoints_pb2 as cp
from pointsbridge.cardpoints.v1 import cardpoints_pb2_grpc as cp_grpc
from pointsbridge.ecommerce.v1 import ecommerce_pb2 as ec
from pointsbridge.ecommerce.v1 import ecommerce_pb2_grpc as ec_grpc

# product id: (points per coupon, face value in minor units, currency), as bench/seed.py
PRODUCTS = {f"bench-coupon-{i}": (100, 1000, "CNY") for i in range(4)}
MAX_QUANTITY = 20
VALIDITY = timedelta(days=365)
MERCHANT = "bench-lean"
DEADLINE = 5.0

SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS card_links (customer_id TEXT PRIMARY KEY,
    card_account_id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS redemptions (seq INTEGER PRIMARY KEY,
    redemption_id TEXT NOT NULL UNIQUE, request_id TEXT NOT NULL UNIQUE,
    customer_id TEXT NOT NULL, product_id TEXT NOT NULL, quantity INTEGER NOT NULL,
    points INTEGER NOT NULL, points_per_coupon INTEGER NOT NULL,
    card_account_id TEXT NOT NULL, state TEXT NOT NULL, failure_reason TEXT NOT NULL,
    deduction_id TEXT NOT NULL, create_time TEXT NOT NULL, update_time TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS coupons (seq INTEGER PRIMARY KEY, code TEXT NOT NULL UNIQUE,
    customer_id TEXT NOT NULL, product_id TEXT NOT NULL,
    redemption_id TEXT NOT NULL REFERENCES redemptions (redemption_id),
    face_value_minor INTEGER NOT NULL, currency TEXT NOT NULL, state TEXT NOT NULL,
    issue_time TEXT NOT NULL, expire_time TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS coupons_redemption ON coupons (redemption_id);
"""
PG_SCHEMA = """
CREATE TABLE IF NOT EXISTS card_links (customer_id TEXT PRIMARY KEY,
    card_account_id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS redemptions (seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    redemption_id TEXT NOT NULL UNIQUE, request_id TEXT NOT NULL UNIQUE,
    customer_id TEXT NOT NULL, product_id TEXT NOT NULL, quantity INTEGER NOT NULL,
    points BIGINT NOT NULL, points_per_coupon BIGINT NOT NULL,
    card_account_id TEXT NOT NULL, state TEXT NOT NULL, failure_reason TEXT NOT NULL,
    deduction_id TEXT NOT NULL, create_time TIMESTAMPTZ NOT NULL,
    update_time TIMESTAMPTZ NOT NULL);
CREATE TABLE IF NOT EXISTS coupons (seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code TEXT NOT NULL UNIQUE, customer_id TEXT NOT NULL, product_id TEXT NOT NULL,
    redemption_id TEXT NOT NULL REFERENCES redemptions (redemption_id),
    face_value_minor BIGINT NOT NULL, currency TEXT NOT NULL, state TEXT NOT NULL,
    issue_time TIMESTAMPTZ NOT NULL, expire_time TIMESTAMPTZ NOT NULL);
CREATE INDEX IF NOT EXISTS coupons_redemption ON coupons (redemption_id);
"""
PG_SEED = (
    "INSERT INTO card_links SELECT 'cust-' || lpad(i::text, 7, '0'),"
    " 'card-' || lpad(i::text, 7, '0') FROM generate_series(1, $1::int) AS i"
    " ON CONFLICT DO NOTHING"
)
COLUMNS = (
    "redemption_id, request_id, customer_id, product_id, quantity, points,"
    " points_per_coupon, card_account_id, state"
)
STATES = {
    "PENDING": ec.REDEMPTION_STATE_PENDING,
    "COMPLETED": ec.REDEMPTION_STATE_COMPLETED,
    "FAILED": ec.REDEMPTION_STATE_FAILED,
}


@dataclass
class Stored:
    """A redemption as its row holds it, with its coupon codes once COMPLETED."""

    redemption_id: str
    request_id: str
    customer_id: str
    product_id: str
    quantity: int
    points: int
    points_per_coupon: int
    card_account_id: str
    state: str
    deduction_id: str = ""
    codes: list[str] = field(default_factory=list)

    @classmethod
    def pending(
        cls, request: Any, redemption_id: str, points: int, ppc: int, card_account_id: str
    ) -> Stored:
        """The new PENDING redemption of `request`, as (a) inserted it."""
        return cls(
            redemption_id,
            request.request_id,
            request.customer_id,
            request.product_id,
            request.quantity,
            points,
            ppc,
            card_account_id,
            "PENDING",
        )


def coupon_code() -> str:
    """80 bits from `secrets`, in four groups of four base32 characters."""
    text = base64.b32encode(secrets.token_bytes(10)).decode()
    return "-".join(text[i : i + 4] for i in range(0, 16, 4))


# ---------------------------------------------------------------- SQLite: units of the writer


def codes_sqlite(db: sqlite3.Connection, redemption_id: str) -> list[str]:
    """A redemption's coupon codes, in the order they were issued."""
    rows = db.execute(
        "SELECT code FROM coupons WHERE redemption_id = ? ORDER BY seq", (redemption_id,)
    )
    return [code for (code,) in rows]


def begin_sqlite(db: sqlite3.Connection, now: str, request: Any, ppc: int) -> Stored:
    """(a) The stored redemption of this request id, or a new PENDING one."""
    row = db.execute(
        f"SELECT {COLUMNS}, deduction_id FROM redemptions WHERE request_id = ?",
        (request.request_id,),
    ).fetchone()
    if row is not None:
        stored = Stored(*row)
        if stored.state == "COMPLETED":
            stored.codes = codes_sqlite(db, stored.redemption_id)
        return stored
    redemption_id = "rd_" + secrets.token_hex(8)
    points = request.quantity * ppc
    found = db.execute(
        "INSERT INTO redemptions (redemption_id, request_id, customer_id, product_id, quantity,"
        " points, points_per_coupon, card_account_id, state, failure_reason, deduction_id,"
        " create_time, update_time) SELECT ?, ?, ?, ?, ?, ?, ?, card_account_id, 'PENDING',"
        " '', '', ?, ? FROM card_links WHERE customer_id = ? RETURNING card_account_id",
        (
            redemption_id,
            request.request_id,
            request.customer_id,
            request.product_id,
            request.quantity,
            points,
            ppc,
            now,
            now,
            request.customer_id,
        ),
    ).fetchone()
    if found is None:
        raise Refused("no card linked")
    return Stored.pending(request, redemption_id, points, ppc, found[0])


def fail_sqlite(db: sqlite3.Connection, now: str, redemption_id: str) -> None:
    db.execute(
        "UPDATE redemptions SET state = 'FAILED', failure_reason = 'INSUFFICIENT_POINTS',"
        " update_time = ? WHERE redemption_id = ? AND state = 'PENDING'",
        (now, redemption_id),
    )


def complete_sqlite(
    db: sqlite3.Connection, now: str, stored: Stored, deduction_id: str, codes: list[str]
) -> list[str]:
    """(c) COMPLETED and its coupons; the codes (a concurrent resume's, if it won)."""
    updated = db.execute(
        "UPDATE redemptions SET state = 'COMPLETED', deduction_id = ?, update_time = ?"
        " WHERE redemption_id = ? AND state = 'PENDING'",
        (deduction_id, now, stored.redemption_id),
    ).rowcount
    if not updated:
        return codes_sqlite(db, stored.redemption_id)
    _, face, currency = PRODUCTS[stored.product_id]
    expire = (datetime.fromisoformat(now) + VALIDITY).isoformat()
    db.execute(
        "INSERT INTO coupons (code, customer_id, product_id, redemption_id, face_value_minor,"
        " currency, state, issue_time, expire_time) VALUES "
        + ", ".join(["(?, ?, ?, ?, ?, ?, 'ISSUED', ?, ?)"] * len(codes)),
        [
            value
            for code in codes
            for value in (
                code,
                stored.customer_id,
                stored.product_id,
                stored.redemption_id,
                face,
                currency,
                now,
                expire,
            )
        ],
    )
    return codes


class SqliteRedemptions:
    def __init__(self, writer: Writer) -> None:
        self._writer = writer

    def begin(self, request: Any, ppc: int) -> Awaitable[Stored]:
        return self._writer.submit(lambda db, now: begin_sqlite(db, now, request, ppc))

    def fail(self, redemption_id: str) -> Awaitable[None]:
        return self._writer.submit(lambda db, now: fail_sqlite(db, now, redemption_id))

    def complete(self, stored: Stored, deduction_id: str, codes: list[str]) -> Awaitable[list[str]]:
        return self._writer.submit(
            lambda db, now: complete_sqlite(db, now, stored, deduction_id, codes)
        )


# ---------------------------------------------------------------- PostgreSQL: asyncpg


class PgRedemptions:
    def __init__(self, pool: Any) -> None:
        self._pool = pool

    async def begin(self, request: Any, ppc: int) -> Stored:
        """(a) The stored redemption of this request id, or a new PENDING one."""
        for attempt in (1, 2):
            try:
                return await self._begin(request, ppc)
            except asyncpg.UniqueViolationError:  # the same request id, committed meanwhile
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def _begin(self, request: Any, ppc: int) -> Stored:
        now = datetime.now(UTC)
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"SELECT {COLUMNS}, deduction_id FROM redemptions WHERE request_id = $1",
                request.request_id,
            )
            if row is not None:
                stored = Stored(*row)
                if stored.state == "COMPLETED":
                    stored.codes = await self._codes(conn, stored.redemption_id)
                return stored
            redemption_id = "rd_" + secrets.token_hex(8)
            points = request.quantity * ppc
            card = await conn.fetchval(
                "INSERT INTO redemptions (redemption_id, request_id, customer_id, product_id,"
                " quantity, points, points_per_coupon, card_account_id, state, failure_reason,"
                " deduction_id, create_time, update_time) SELECT $1, $2, $3, $4, $5, $6, $7,"
                " card_account_id, 'PENDING', '', '', $8, $8 FROM card_links"
                " WHERE customer_id = $3 RETURNING card_account_id",
                redemption_id,
                request.request_id,
                request.customer_id,
                request.product_id,
                request.quantity,
                points,
                ppc,
                now,
            )
            if card is None:
                raise Refused("no card linked")
        return Stored.pending(request, redemption_id, points, ppc, card)

    @staticmethod
    async def _codes(conn: Any, redemption_id: str) -> list[str]:
        rows = await conn.fetch(
            "SELECT code FROM coupons WHERE redemption_id = $1 ORDER BY seq", redemption_id
        )
        return [row[0] for row in rows]

    async def fail(self, redemption_id: str) -> None:
        async with self._pool.acquire() as conn:
            await conn.execute(
                "UPDATE redemptions SET state = 'FAILED', failure_reason = 'INSUFFICIENT_POINTS',"
                " update_time = $1 WHERE redemption_id = $2 AND state = 'PENDING'",
                datetime.now(UTC),
                redemption_id,
            )

    async def complete(self, stored: Stored, deduction_id: str, codes: list[str]) -> list[str]:
        """(c) COMPLETED and its coupons; the codes (a concurrent resume's, if it won)."""
        now = datetime.now(UTC)
        _, face, currency = PRODUCTS[stored.product_id]
        async with self._pool.acquire() as conn, conn.transaction():
            updated = await conn.fetchval(
                "UPDATE redemptions SET state = 'COMPLETED', deduction_id = $1, update_time = $2"
                " WHERE redemption_id = $3 AND state = 'PENDING' RETURNING seq",
                deduction_id,
                now,
                stored.redemption_id,
            )
            if updated is None:
                return await self._codes(conn, stored.redemption_id)
            await conn.execute(
                "INSERT INTO coupons (code, customer_id, product_id, redemption_id,"
                " face_value_minor, currency, state, issue_time, expire_time)"
                " SELECT code, $2, $3, $4, $5, $6, 'ISSUED', $7, $8"
                " FROM unnest($1::text[]) AS code",
                codes,
                stored.customer_id,
                stored.product_id,
                stored.redemption_id,
                face,
                currency,
                now,
                now + VALIDITY,
            )
        return codes


# ---------------------------------------------------------------- the server


class LeanRedemption(ec_grpc.RedemptionServiceServicer):
    def __init__(self, store: SqliteRedemptions | PgRedemptions, channel: grpc.aio.Channel) -> None:
        self._store = store
        self._deduct: Callable[..., Awaitable[Any]] = cp_grpc.CardPointsServiceStub(
            channel
        ).DeductPoints

    async def RedeemPoints(
        self, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> ec.RedeemPointsResponse:
        product = PRODUCTS.get(request.product_id)
        if product is None or not 1 <= request.quantity <= MAX_QUANTITY:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "unknown product or quantity")
        ppc = product[0]
        if request.HasField("expected_points") and request.expected_points != (
            request.quantity * ppc
        ):
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "rate changed")
        try:
            stored = await self._store.begin(request, ppc)
        except Refused:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "no card linked")
        if stored.state == "PENDING":
            try:
                answer = await self._deduct(
                    cp.DeductPointsRequest(
                        request_id="redemption:" + stored.redemption_id,
                        account_id=stored.card_account_id,
                        points=stored.points,
                        coupon_quantity=stored.quantity,
                        points_per_coupon=stored.points_per_coupon,
                        merchant_id=MERCHANT,
                    ),
                    timeout=DEADLINE,
                )
            except grpc.aio.AioRpcError as error:
                if error.code() == grpc.StatusCode.FAILED_PRECONDITION:
                    await self._store.fail(stored.redemption_id)
                    await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "insufficient points")
                await context.abort(grpc.StatusCode.UNAVAILABLE, "outcome unknown, retry")
            stored.deduction_id = answer.deduction.deduction_id
            codes = [coupon_code() for _ in range(stored.quantity)]
            stored.codes = await self._store.complete(stored, stored.deduction_id, codes)
            stored.state = "COMPLETED"
        elif stored.state == "FAILED":
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "insufficient points")
        return reply(stored)


def reply(stored: Stored) -> ec.RedeemPointsResponse:
    _, face, currency = PRODUCTS[stored.product_id]
    return ec.RedeemPointsResponse(
        redemption=ec.Redemption(
            redemption_id=stored.redemption_id,
            request_id=stored.request_id,
            customer_id=stored.customer_id,
            product_id=stored.product_id,
            quantity=stored.quantity,
            points=stored.points,
            ratio_version=1,
            state=STATES[stored.state],
            deduction_id=stored.deduction_id,
            points_per_coupon=stored.points_per_coupon,
            card_account_id=stored.card_account_id,
            coupons=[
                ec.Coupon(
                    code=code,
                    product_id=stored.product_id,
                    redemption_id=stored.redemption_id,
                    face_value_minor=face,
                    currency=currency,
                    state=ec.COUPON_STATE_ISSUED,
                    customer_id=stored.customer_id,
                )
                for code in stored.codes
            ],
        )
    )


async def serve(args: argparse.Namespace) -> None:
    writer: Writer | None = None
    pool: Any = None
    store: SqliteRedemptions | PgRedemptions
    if args.postgres:
        pool = await open_pool(args.postgres, args.pool, PG_SCHEMA, PG_SEED, args.accounts)
        store = PgRedemptions(pool)
    else:
        writer = Writer(args.database, asyncio.get_running_loop())
        writer.setup(
            SQLITE_SCHEMA,
            "INSERT OR IGNORE INTO card_links VALUES (?, ?)",
            ((f"cust-{i:07d}", f"card-{i:07d}") for i in range(1, args.accounts + 1)),
        )
        store = SqliteRedemptions(writer)
    channel = grpc.aio.insecure_channel(args.next)
    server = grpc.aio.server()
    servicer = LeanRedemption(store, channel)  # type: ignore[abstract]  # the rest: UNIMPLEMENTED
    ec_grpc.add_RedemptionServiceServicer_to_server(servicer, server)
    await serve_until_stopped(server, args.address, "lean redeem")
    await channel.close()
    if writer is not None:
        writer.stop()
    if pool is not None:
        await pool.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", default="127.0.0.1:0")
    parser.add_argument("--next", required=True, help="host:port of the bare-work DeductPoints")
    add_store_arguments(parser)
    args = parser.parse_args(argv)
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
