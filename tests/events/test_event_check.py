"""The harness's I8 checker: clean on a real run's streams, and it catches what it must."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import nats
from sqlalchemy import insert

from cardpoints.adapters.orm import OUTBOX
from chaos.event_check import check_events
from ecommerce.entrypoints.server import Settings as EcommerceSettings
from ecommerce.entrypoints.server import migrate as migrate_ecommerce
from pointsbridge.events.v1 import cardpoints_events_pb2 as ev
from servicekit.db import create_db_engine
from tests.auth import Callers
from tests.broker import NatsServer, stream_messages
from tests.events.relay import Bank, start_bank


async def test_the_event_checker_passes_a_clean_run_and_catches_strays_and_losses(
    make_db_url: Callable[[str], str], nats_server: NatsServer, auth: Callers
) -> None:
    cardpoints_url, ecommerce_url = make_db_url("cardpoints"), make_db_url("ecommerce")
    migrate_ecommerce(EcommerceSettings(database_url=ecommerce_url))
    app = await start_bank(auth, cardpoints_url, nats_server.url)
    bank = Bank(app, auth)
    try:
        await bank.open("k-1", 100)
        await bank.deduct("k-d1", "k-1", 40)
        await stream_messages(nats_server.url, "cardpoints", expect=3)
    finally:
        await bank.close()
        await app.stop(1)
    violations, total = await check_events(cardpoints_url, ecommerce_url, nats_server.url)
    assert (violations, total) == ([], 3)

    # A stray: an event in the stream with no committed change behind it.
    nc = await nats.connect(nats_server.url)
    stray = str(uuid.uuid4())
    await nc.jetstream().publish(
        "pointsbridge.cardpoints.account.points_deducted",
        ev.PointsDeducted(
            account_id="k-1", sequence=4, deduction_id="ded_forged"
        ).SerializeToString(),
        headers={
            "Nats-Msg-Id": stray,
            "ce-id": stray,
            "ce-type": "pointsbridge.events.v1.PointsDeducted",
            "ce-subject": "k-1",
            "ce-sequence": "4",
        },
    )
    await nc.close()
    # A loss: a committed event marked sent that the stream never got.
    engine = create_db_engine(cardpoints_url)
    with engine.begin() as conn:
        conn.execute(
            insert(OUTBOX.events).values(
                event_id=str(uuid.uuid4()),
                type="pointsbridge.events.v1.PointsCredited",
                subject="pointsbridge.cardpoints.account.points_credited",
                aggregate_id="k-2",
                sequence=1,
                time_us=1,
                create_us=1,
                data=b"",
                sent_us=2,
            )
        )
    engine.dispose()
    violations, _ = await check_events(cardpoints_url, ecommerce_url, nats_server.url, within=1)
    messages = [v.message for v in violations]
    assert any(f"event {stray} in no outbox" in m for m in messages), messages
    assert any("never published" in m for m in messages), messages
    assert any("deduction ded_forged: 0 committed, 1 in the stream" in m for m in messages)
    assert any("account k-1 sequences [1, 2, 3, 4]" in m for m in messages), messages
    assert all(v.invariant == "I8" for v in violations)


async def test_the_stream_reader_reads_past_a_thousand_unacknowledged_messages(
    nats_server: NatsServer,
) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        await js.add_stream(name="POINTSBRIDGE_CARDPOINTS", subjects=["pointsbridge.cardpoints.>"])
        for n in range(1500):
            await js.publish("pointsbridge.cardpoints.account.points_credited", str(n).encode())
    finally:
        await nc.close()
    messages = await stream_messages(nats_server.url, "cardpoints", expect=1500)
    assert [int(m.data) for m in messages] == list(range(1500))
