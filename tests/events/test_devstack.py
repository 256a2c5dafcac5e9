"""`make run` publishes both services' events when POINTSBRIDGE_NATS_URL is set, and says so."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.broker import NatsServer, ce, stream_messages
from tests.system.devstack import DevStack


async def test_make_run_publishes_when_the_nats_url_is_set(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    stack = await asyncio.to_thread(
        DevStack, tmp_path / "var", {"POINTSBRIDGE_NATS_URL": nats_server.url}
    )
    try:
        assert f"Events: published to NATS JetStream at {nats_server.url}" in stack.output
        # The demo data it seeds: the demo account opened and credited, the product created.
        bank = await stream_messages(nats_server.url, "cardpoints", expect=2)
        assert [ce(m)["type"].rsplit(".", 1)[1] for m in bank[:2]] == [
            "AccountOpened",
            "PointsCredited",
        ]
        shop = await stream_messages(nats_server.url, "ecommerce", expect=1)
        assert ce(shop[0])["type"] == "pointsbridge.events.v1.CouponProductChanged"
    finally:
        await asyncio.to_thread(stack.stop)
