"""What the relay tests share: a cardpoints server with a relay, and readers of its outbox.

What a consumer sees is read with a plain nats-py consumer (tests/broker.py), never
with the project's own code.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from grpc_health.v1 import health_pb2, health_pb2_grpc
from nats.aio.msg import Msg
from sqlalchemy import select

from cardpoints.adapters.orm import OUTBOX
from cardpoints.adapters.repository import CardpointsUnitOfWork
from cardpoints.entrypoints.server import App as CardpointsApp
from cardpoints.entrypoints.server import Settings as CardpointsSettings
from cardpoints.entrypoints.server import start as start_cardpoints
from pointsbridge.cardpoints.v1 import cardpoints_pb2 as cpb
from pointsbridge.cardpoints.v1 import cardpoints_pb2_grpc as cpb_grpc
from servicekit import event_types
from servicekit.db import Database, create_db_engine
from servicekit.relay import (
    HEALTH_SERVICE,
)
from tests.auth import Callers
from tests.broker import ce

TIMEOUT = 10


def decode(message: Msg) -> Any:
    return event_types.decode(ce(message)["type"], message.data)


async def start_bank(
    auth: Callers, database_url: str, nats_url: str = "", **settings: Any
) -> CardpointsApp:
    return await start_cardpoints(
        CardpointsSettings(
            **auth.server_security,
            address="127.0.0.1:0",
            database_url=database_url,
            workers=4,
            nats_url=nats_url,
            **settings,
        )
    )


def uow(db: Database) -> CardpointsUnitOfWork:
    return CardpointsUnitOfWork(db.sessions)


class Bank:
    def __init__(self, app: CardpointsApp, auth: Callers) -> None:
        self.channel = auth.channel(f"127.0.0.1:{app.port}")
        self.points = cpb_grpc.CardPointsServiceStub(self.channel)
        self.admin = cpb_grpc.CardPointsAdminServiceStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)

    async def open(self, account_id: str, points: int) -> None:
        await self.admin.OpenAccount(
            cpb.OpenAccountRequest(account_id=account_id, holder_name="Li Lei"), timeout=TIMEOUT
        )
        await self.admin.CreditPoints(
            cpb.CreditPointsRequest(
                request_id=f"seed-{account_id}", account_id=account_id, points=points
            ),
            timeout=TIMEOUT,
        )

    async def deduct(self, request_id: str, account_id: str, points: int) -> None:
        await self.points.DeductPoints(
            cpb.DeductPointsRequest(
                request_id=request_id,
                account_id=account_id,
                points=points,
                coupon_quantity=1,
                points_per_coupon=points,
                merchant_id="shop-1",
            ),
            timeout=TIMEOUT,
        )

    async def relay_status(self) -> int:
        response = await self.health.Check(
            health_pb2.HealthCheckRequest(service=HEALTH_SERVICE), timeout=TIMEOUT
        )
        return int(response.status)

    async def close(self) -> None:
        await self.channel.close()


async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within {timeout}s: {what}")


def unsent(database_url: str, table: Any = OUTBOX.events) -> int:
    engine = create_db_engine(database_url)
    try:
        with engine.connect() as conn:
            return len(list(conn.execute(select(table.c.id).where(table.c.sent_us.is_(None)))))
    finally:
        engine.dispose()


def outbox_ids(database_url: str, table: Any = OUTBOX.events) -> list[str]:
    engine = create_db_engine(database_url)
    try:
        with engine.connect() as conn:
            return [r.event_id for r in conn.execute(select(table.c.event_id).order_by(table.c.id))]
    finally:
        engine.dispose()


def check_consumer_view(messages: list[Msg], expected_ids: list[str]) -> dict[str, list[int]]:
    """Each event once by id, CloudEvents attributes consistent, per-aggregate gap-free order."""
    ids = [ce(m)["id"] for m in messages]
    assert sorted(ids) == sorted(expected_ids)
    assert len(set(ids)) == len(ids)
    sequences: dict[str, list[int]] = {}
    for message in messages:
        attributes = ce(message)
        assert message.headers is not None
        assert message.headers["Nats-Msg-Id"] == attributes["id"]
        assert message.headers["content-type"] == "application/protobuf"
        assert attributes["specversion"] == "1.0"
        assert attributes["time"].endswith("Z")
        event = decode(message)
        assert event.sequence == int(attributes["sequence"])
        key = f"{message.subject.split('.')[2]}/{attributes['subject']}"
        sequences.setdefault(key, []).append(event.sequence)
    for key, numbers in sequences.items():
        assert numbers == list(range(1, len(numbers) + 1)), f"{key}: {numbers}"
    return sequences
