"""The relay, through real servers, real databases and a private JetStream: its rows.

Two relays on one database publish each row once; sent rows are pruned.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from sqlalchemy import select

from cardpoints.adapters.orm import OUTBOX
from cardpoints.adapters.repository import CardpointsUnitOfWork
from cardpoints.domain.model import CreditPoints, OpenAccount
from cardpoints.entrypoints.server import MIGRATIONS, VERSION_TABLE
from cardpoints.service_layer import services
from servicekit.clock import utc_now
from servicekit.db import Database, create_db_engine, upgrade_schema
from servicekit.devtools.databases import drop_database
from servicekit.outbox import LEASES_TABLE
from servicekit.relay import (
    PUBLISHED,
    Relay,
    RelaySettings,
)
from tests.auth import Callers
from tests.broker import NatsServer, stream_messages
from tests.conftest import create_pg_database
from tests.events.relay import (
    Bank,
    check_consumer_view,
    decode,
    eventually,
    outbox_ids,
    start_bank,
    unsent,
)


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
