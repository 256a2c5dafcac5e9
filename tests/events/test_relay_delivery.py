"""The relay, through real servers, real databases and a private JetStream: delivery."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial

from grpc_health.v1 import health_pb2
from sqlalchemy import false, update

from cardpoints.adapters.orm import OUTBOX
from cardpoints.domain.model import CreditPoints, OpenAccount
from cardpoints.entrypoints.server import MIGRATIONS, VERSION_TABLE
from cardpoints.service_layer import services
from pointsbridge.events.v1 import cardpoints_events_pb2
from servicekit.clock import utc_now
from servicekit.db import Database, create_db_engine, upgrade_schema
from servicekit.relay import (
    BACKLOG,
    FAILED,
    OLDEST_AGE,
    PUBLISHED,
    Relay,
    RelaySettings,
)
from tests.auth import Callers
from tests.broker import NatsServer, ce, stream_messages
from tests.events.relay import (
    Bank,
    check_consumer_view,
    decode,
    eventually,
    outbox_ids,
    start_bank,
    unsent,
    uow,
)


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
