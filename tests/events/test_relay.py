"""The relay, through real servers, real databases and a private nats-server with JetStream.

What a consumer sees is read with a plain nats-py consumer (tests/broker.py), never
with the project's own code.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from nats.aio.msg import Msg
from sqlalchemy import false, select, update

from cardpoints.adapters.orm import OUTBOX
from cardpoints.adapters.repository import CardpointsUnitOfWork
from cardpoints.domain.model import CreditPoints, OpenAccount
from cardpoints.entrypoints.server import MIGRATIONS, VERSION_TABLE
from cardpoints.entrypoints.server import App as CardpointsApp
from cardpoints.entrypoints.server import Settings as CardpointsSettings
from cardpoints.entrypoints.server import start as start_cardpoints
from cardpoints.service_layer import services
from ecommerce.adapters.orm import OUTBOX as ECOMMERCE_OUTBOX
from ecommerce.entrypoints.server import Settings as EcommerceSettings
from ecommerce.entrypoints.server import start as start_ecommerce
from pointsbridge.cardpoints.v1 import cardpoints_pb2 as cpb
from pointsbridge.cardpoints.v1 import cardpoints_pb2_grpc as cpb_grpc
from pointsbridge.ecommerce.v1 import ecommerce_pb2 as epb
from pointsbridge.ecommerce.v1 import ecommerce_pb2_grpc as epb_grpc
from pointsbridge.events.v1 import cardpoints_events_pb2
from servicekit import event_types
from servicekit.clock import utc_now
from servicekit.db import Database, create_db_engine, upgrade_schema
from servicekit.devtools.databases import drop_database
from servicekit.outbox import LEASES_TABLE
from servicekit.relay import (
    BACKLOG,
    FAILED,
    HEALTH_SERVICE,
    OLDEST_AGE,
    PUBLISHED,
    Relay,
    RelaySettings,
)
from tests.auth import Callers
from tests.broker import NatsServer, ce, stream_messages
from tests.conftest import create_pg_database

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


async def test_turning_the_relay_on_later_publishes_the_backlog_in_order(
    make_db_url: Callable[[str], str], nats_server: NatsServer, auth: Callers
) -> None:
    url = make_db_url("cardpoints")
    app = await start_bank(auth, url)  # no NATS URL: recorded, not published
    bank = Bank(app, auth)
    try:
        for account in ("a-1", "a-2", "a-3"):
            await bank.open(account, 1000)
        for n in range(6):
            await bank.deduct(f"d-{n}", f"a-{n % 3 + 1}", 10)
    finally:
        await bank.close()
        await app.stop(1)
    assert unsent(url) == 12

    app = await start_bank(auth, url, nats_server.url)
    bank = Bank(app, auth)
    try:
        messages = await stream_messages(nats_server.url, "cardpoints", expect=12)
        sequences = check_consumer_view(messages, outbox_ids(url))
        assert sequences == {f"account/a-{n}": [1, 2, 3, 4] for n in (1, 2, 3)}
        first = decode(messages[0])
        assert isinstance(first, cardpoints_events_pb2.AccountOpened)
        assert messages[0].subject == "pointsbridge.cardpoints.account.account_opened"
        assert ce(messages[0])["source"] == "/pointsbridge/cardpoints"

        async def drained() -> bool:
            return unsent(url) == 0

        await eventually(drained, "the outbox marked sent")
        assert await bank.relay_status() == health_pb2.HealthCheckResponse.SERVING
    finally:
        await bank.close()
        await app.stop(1)


async def test_a_repeat_after_a_crash_between_ack_and_mark_sent_is_dropped_by_the_broker(
    make_db_url: Callable[[str], str], nats_server: NatsServer
) -> None:
    url = make_db_url("cardpoints")
    engine = create_db_engine(url)
    upgrade_schema(engine, MIGRATIONS, VERSION_TABLE)
    db = Database(engine, workers=2)
    try:
        for account in ("c-1", "c-2"):
            opened = OpenAccount(account, "Ada")
            credit = CreditPoints(f"credit-{account}", account, 5, "welcome")
            await db.write(partial(services.open_account, uow(db), opened, utc_now))
            await db.write(partial(services.credit_points, uow(db), credit, utc_now))
        settings = RelaySettings(nats_url=nats_server.url)
        crashing = Relay("cardpoints", db, OUTBOX, settings)
        # The stream acknowledges, then the relay "dies" before its rows are marked sent.
        crashing._mark_sent = update(OUTBOX.events).where(false()).values(sent_us=None)
        stop = asyncio.Event()
        task = asyncio.create_task(crashing.run(stop))
        messages = await stream_messages(nats_server.url, "cardpoints", expect=4)
        stop.set()
        await task
        assert unsent(url) == 4
        # Its lease lapses as a dead relay's would (a clean stop hands it back anyway).
        with engine.begin() as conn:
            conn.execute(OUTBOX.leases.update().values(lease_until_us=0))

        repeats_before = PUBLISHED.labels("cardpoints", "true")._value.get()
        survivor = Relay("cardpoints", db, OUTBOX, settings)
        stop = asyncio.Event()
        task = asyncio.create_task(survivor.run(stop))

        async def drained() -> bool:
            return bool(await asyncio.to_thread(unsent, url) == 0)

        await eventually(drained, "the survivor marked the rows sent")
        stop.set()
        await task
        assert PUBLISHED.labels("cardpoints", "true")._value.get() - repeats_before >= 4
        messages = await stream_messages(nats_server.url, "cardpoints", expect=4)
        check_consumer_view(messages, outbox_ids(url))
        assert len(messages) == 4
    finally:
        db.close()


async def test_the_broker_down_fails_no_rpc_and_the_backlog_drains_after_it_returns(
    make_db_url: Callable[[str], str], nats_server: NatsServer, auth: Callers
) -> None:
    url = make_db_url("cardpoints")
    app = await start_bank(auth, url, nats_server.url, events_stuck_after=1.0)
    bank = Bank(app, auth)
    try:
        await bank.open("b-1", 1000)
        await stream_messages(nats_server.url, "cardpoints", expect=2)
        nats_server.stop()
        for n in range(5):  # every call succeeds while the broker is gone
            await bank.deduct(f"down-{n}", "b-1", 10)
        await bank.open("b-2", 50)

        async def stuck() -> bool:
            return bool(await bank.relay_status() == health_pb2.HealthCheckResponse.NOT_SERVING)

        failures = FAILED.labels("cardpoints")._value.get()
        await eventually(stuck, "health reports the stuck relay", timeout=20)
        assert unsent(url) == 7
        assert BACKLOG.labels("cardpoints")._value.get() == 7
        assert OLDEST_AGE.labels("cardpoints")._value.get() > 1.0
        assert FAILED.labels("cardpoints")._value.get() > failures
        nats_server.start()
        messages = await stream_messages(nats_server.url, "cardpoints", expect=9, within=40)
        sequences = check_consumer_view(messages, outbox_ids(url))
        assert sequences == {"account/b-1": [1, 2, 3, 4, 5, 6, 7], "account/b-2": [1, 2]}

        async def serving() -> bool:
            return bool(await bank.relay_status() == health_pb2.HealthCheckResponse.SERVING)

        await eventually(serving, "health reports the relay serving again", timeout=20)
        assert BACKLOG.labels("cardpoints")._value.get() == 0
        assert OLDEST_AGE.labels("cardpoints")._value.get() == 0
    finally:
        await bank.close()
        await app.stop(1)


@pytest.mark.postgres
async def test_two_relays_on_one_postgres_database_publish_each_row_once_in_order(
    nats_server: NatsServer,
    auth: Callers,
) -> None:
    url = create_pg_database()
    apps = [
        await start_bank(auth, url, nats_server.url),
        await start_bank(auth, url, nats_server.url),
    ]
    banks = [Bank(app, auth) for app in apps]
    first_copies = PUBLISHED.labels("cardpoints", "false")._value.get()
    repeats = PUBLISHED.labels("cardpoints", "true")._value.get()
    try:
        accounts = [f"p-{n}" for n in range(4)]
        for account in accounts:
            await banks[0].open(account, 10_000)
        await asyncio.gather(
            *(
                banks[n % 2].deduct(f"pg-{n}", accounts[n % 4], 1)
                for n in range(40)  # both servers, both relays, the same accounts
            )
        )
        messages = await stream_messages(nats_server.url, "cardpoints", expect=48)
        sequences = check_consumer_view(messages, outbox_ids(url))
        assert all(len(numbers) == 12 for numbers in sequences.values())

        async def drained() -> bool:
            return bool(await asyncio.to_thread(unsent, url) == 0)

        await eventually(drained, "every row marked sent")
        assert PUBLISHED.labels("cardpoints", "false")._value.get() - first_copies == 48
        assert PUBLISHED.labels("cardpoints", "true")._value.get() - repeats == 0

        # The lease holder stops; the other relay takes over and keeps the order.
        engine = create_db_engine(url)
        with engine.connect() as conn:
            holder = conn.execute(
                select(OUTBOX.leases.c.holder).select_from(OUTBOX.leases)
            ).scalar_one()
        engine.dispose()
        [index] = [
            n for n, app in enumerate(apps) if app.relay and app.relay.relay.holder == holder
        ]
        await banks[index].close()
        await apps[index].stop(1)
        other = 1 - index
        for n in range(8):
            await banks[other].deduct(f"after-{n}", accounts[n % 4], 1)
        messages = await stream_messages(nats_server.url, "cardpoints", expect=56)
        sequences = check_consumer_view(messages, outbox_ids(url))
        assert all(len(numbers) == 14 for numbers in sequences.values())
    finally:
        for app, bank in zip(apps, banks, strict=True):
            if app.relay is not None and not app.relay.task.done():
                await bank.close()
                await app.stop(1)
        drop_database(url)


async def test_sent_rows_are_pruned_after_the_retention(
    make_db_url: Callable[[str], str], nats_server: NatsServer
) -> None:
    url = make_db_url("cardpoints")
    engine = create_db_engine(url)
    upgrade_schema(engine, MIGRATIONS, VERSION_TABLE)
    db = Database(engine, workers=2)
    try:
        opened = OpenAccount("r-1", "Ada")
        await db.write(
            lambda: services.open_account(CardpointsUnitOfWork(db.sessions), opened, utc_now)
        )
        settings = RelaySettings(nats_url=nats_server.url, retention=0.5, prune_every=0.2)
        relay = Relay("cardpoints", db, OUTBOX, settings)
        stop = asyncio.Event()
        task = asyncio.create_task(relay.run(stop))
        await stream_messages(nats_server.url, "cardpoints", expect=1)

        async def pruned() -> bool:
            return not await asyncio.to_thread(outbox_ids, url)

        await eventually(pruned, "the sent row pruned")
        stop.set()
        await task
        # Pruning never takes unsent rows, nor the sequence counters.
        credit = CreditPoints("credit-r", "r-1", 5, "welcome")
        await db.write(
            lambda: services.credit_points(CardpointsUnitOfWork(db.sessions), credit, utc_now)
        )
        with engine.begin() as conn:
            conn.execute(OUTBOX.leases.update().values(lease_until_us=0))
        assert unsent(url) == 1
        messages = await stream_messages(nats_server.url, "cardpoints", expect=1)
        assert [decode(m).sequence for m in messages] == [1]
        relay = Relay("cardpoints", db, OUTBOX, settings)
        stop = asyncio.Event()
        task = asyncio.create_task(relay.run(stop))
        messages = await stream_messages(nats_server.url, "cardpoints", expect=2)
        stop.set()
        await task
        assert [decode(m).sequence for m in messages] == [1, 2]
    finally:
        db.close()
    assert LEASES_TABLE


@pytest.fixture
async def shop(
    make_db_url: Callable[[str], str], nats_server: NatsServer, auth: Callers
) -> AsyncIterator[tuple[Any, Any, str]]:
    cardpoints = await start_bank(auth, make_db_url("cardpoints"), nats_server.url)
    ecommerce_url = make_db_url("ecommerce")
    ecommerce = await start_ecommerce(
        EcommerceSettings(
            **auth.ecommerce_security,
            address="127.0.0.1:0",
            database_url=ecommerce_url,
            cardpoints_address=f"127.0.0.1:{cardpoints.port}",
            workers=4,
            nats_url=nats_server.url,
        )
    )
    bank = Bank(cardpoints, auth)
    channel = auth.channel(f"127.0.0.1:{ecommerce.port}")
    try:
        yield bank, channel, ecommerce_url
    finally:
        await channel.close()
        await bank.close()
        await ecommerce.stop(1)
        await cardpoints.stop(1)


async def test_ecommerce_events_name_coupons_by_hash_and_never_the_card_account(
    shop: tuple[Any, Any, str], nats_server: NatsServer
) -> None:
    bank, channel, ecommerce_url = shop
    redemption = epb_grpc.RedemptionServiceStub(channel)
    admin = epb_grpc.EcommerceAdminServiceStub(channel)
    card = "6222020200112233"
    await bank.open(card, 10_000)
    await admin.CreateCouponProduct(
        epb.CreateCouponProductRequest(
            product_id="coupon-10",
            display_name="10 CNY off",
            face_value_minor=1000,
            currency="CNY",
            points_per_coupon=1000,
            validity_days=30,
            max_quantity_per_redemption=5,
        ),
        timeout=TIMEOUT,
    )
    await admin.SetExchangeRatio(
        epb.SetExchangeRatioRequest(product_id="coupon-10", points_per_coupon=500),
        timeout=TIMEOUT,
    )
    await admin.LinkCardAccount(
        epb.LinkCardAccountRequest(customer_id="alice", card_account_id=card), timeout=TIMEOUT
    )
    redeemed = (
        await redemption.RedeemPoints(
            epb.RedeemPointsRequest(
                request_id="r-1", customer_id="alice", product_id="coupon-10", quantity=4
            ),
            timeout=TIMEOUT,
        )
    ).redemption
    codes = [c.code for c in redeemed.coupons]
    await redemption.UseCoupon(
        epb.UseCouponRequest(customer_id="alice", code=codes[0], order_id="order-1"),
        timeout=TIMEOUT,
    )
    await redemption.RefundCoupons(
        epb.RefundCouponsRequest(
            request_id="f-1",
            customer_id="alice",
            redemption_id=redeemed.redemption_id,
            codes=codes[1:3],
        ),
        timeout=TIMEOUT,
    )
    # A refund the bank refuses (the account is closed) is started, then cancelled.
    await bank.admin.SetAccountState(
        cpb.SetAccountStateRequest(account_id=card, state=cpb.ACCOUNT_STATE_CLOSED),
        timeout=TIMEOUT,
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await redemption.RefundCoupons(
            epb.RefundCouponsRequest(
                request_id="f-2",
                customer_id="alice",
                redemption_id=redeemed.redemption_id,
                codes=codes[3:],
            ),
            timeout=TIMEOUT,
        )
    assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    messages = await stream_messages(nats_server.url, "ecommerce", expect=8)
    sequences = check_consumer_view(messages, outbox_ids(ecommerce_url, ECOMMERCE_OUTBOX.events))
    assert sequences == {
        "product/coupon-10": [1, 2],
        f"redemption/{redeemed.redemption_id}": [1, 2, 3, 4, 5, 6],
    }
    assert [m.subject for m in messages] == [
        "pointsbridge.ecommerce.product.changed",
        "pointsbridge.ecommerce.product.exchange_ratio_changed",
        "pointsbridge.ecommerce.redemption.completed",
        "pointsbridge.ecommerce.redemption.coupon_used",
        "pointsbridge.ecommerce.redemption.refund_started",
        "pointsbridge.ecommerce.redemption.coupons_refunded",
        "pointsbridge.ecommerce.redemption.refund_started",
        "pointsbridge.ecommerce.redemption.refund_cancelled",
    ]
    completed = decode(messages[2])
    assert (completed.points, completed.quantity, completed.face_value_total_minor) == (
        2000,
        4,
        4000,
    )
    import hashlib

    assert list(completed.coupon_sha256) == [
        hashlib.sha256(code.encode()).hexdigest() for code in codes
    ]
    refunded = decode(messages[5])
    assert (refunded.points, len(refunded.coupon_sha256)) == (1000, 2)
    cancelled = decode(messages[7])
    assert (cancelled.reason, list(cancelled.coupon_sha256)) == (
        "ACCOUNT_CLOSED",
        [hashlib.sha256(codes[3].encode()).hexdigest()],
    )
    for message in messages:
        text = message.data + repr(message.headers).encode() + message.subject.encode()
        for secret in [card, *codes, *(c.replace("-", "") for c in codes)]:
            assert secret.encode() not in text
