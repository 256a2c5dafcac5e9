"""`pointsbridge events setup` and `events tail`, run as the installed command, on a real broker."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Callable

import nats
import pytest

from pointsbridge_cli.commands.events import _filter_for
from tests.auth import Callers
from tests.broker import NatsServer, stream_messages
from tests.cli.conftest import CLI
from tests.events.relay import Bank, start_bank


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLI), *args], capture_output=True, text=True, timeout=timeout, check=False
    )


async def consumer_filtering(url: str, subject: str, within: float = 60.0) -> None:
    """Waits (bounded) until the cardpoints stream has a consumer filtered on `subject`."""
    nc = await nats.connect(url, connect_timeout=2, max_reconnect_attempts=3)
    try:
        js = nc.jetstream()
        for _ in range(int(within / 0.1)):
            consumers = await js.consumers_info("POINTSBRIDGE_CARDPOINTS")
            if any(c.config.filter_subject == subject for c in consumers):
                return
            await asyncio.sleep(0.1)
        raise TimeoutError(f"no consumer of {subject} started")
    finally:
        await nc.close()


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        (
            "pointsbridge.>",
            {"cardpoints": "pointsbridge.cardpoints.>", "ecommerce": "pointsbridge.ecommerce.>"},
        ),
        ("pointsbridge.cardpoints.account.>", {"cardpoints": "pointsbridge.cardpoints.account.>"}),
        (
            "pointsbridge.*.redemption.completed",
            {
                "cardpoints": "pointsbridge.*.redemption.completed",
                "ecommerce": "pointsbridge.*.redemption.completed",
            },
        ),
        ("orders.>", {}),
        ("pointsbridge", {}),
    ],
)
def test_the_tail_filter_is_fitted_to_each_stream(subject: str, expected: dict[str, str]) -> None:
    streams = {"cardpoints": "pointsbridge.cardpoints.>", "ecommerce": "pointsbridge.ecommerce.>"}
    chosen = {name: _filter_for(subject, s) for name, s in streams.items()}
    assert {k: v for k, v in chosen.items() if v is not None} == expected


async def test_setup_creates_both_streams_and_tail_prints_the_events_decoded(
    make_db_url: Callable[[str], str], nats_server: NatsServer, auth: Callers
) -> None:
    setup = await asyncio.to_thread(
        run_cli, "events", "setup", "--nats-url", nats_server.url, "--json"
    )
    assert setup.returncode == 0, setup.stderr
    assert json.loads(setup.stdout) == {
        "streams": [
            {
                "stream": "POINTSBRIDGE_CARDPOINTS",
                "subjects": "pointsbridge.cardpoints.>",
                "outcome": "created",
            },
            {
                "stream": "POINTSBRIDGE_ECOMMERCE",
                "subjects": "pointsbridge.ecommerce.>",
                "outcome": "created",
            },
        ]
    }
    again = await asyncio.to_thread(run_cli, "events", "setup", "--nats-url", nats_server.url)
    assert again.returncode == 0, again.stderr
    assert "POINTSBRIDGE_CARDPOINTS (pointsbridge.cardpoints.>): ok" in again.stdout

    app = await start_bank(auth, make_db_url("cardpoints"), nats_server.url)
    bank = Bank(app, auth)
    try:
        await bank.open("t-1", 700)
        await bank.deduct("tail-1", "t-1", 200)
        await stream_messages(nats_server.url, "cardpoints", expect=3)
        tail = await asyncio.to_thread(
            run_cli,
            "events",
            "tail",
            "--nats-url",
            nats_server.url,
            "--from-start",
            "--json",
            "--count",
            "3",
            "--seconds",
            "30",
        )
        assert tail.returncode == 0, tail.stderr
        events = [json.loads(line) for line in tail.stdout.splitlines()]
        assert [(e["type"], e["subject"], e["sequence"]) for e in events] == [
            ("pointsbridge.events.v1.AccountOpened", "t-1", 1),
            ("pointsbridge.events.v1.PointsCredited", "t-1", 2),
            ("pointsbridge.events.v1.PointsDeducted", "t-1", 3),
        ]
        deducted = events[2]
        assert deducted["nats_subject"] == "pointsbridge.cardpoints.account.points_deducted"
        assert deducted["data"]["points"] == "200"
        assert deducted["data"]["balance_after"] == "500"
        assert deducted["data"]["sequence"] == "3"

        # New events only, as people read them, filtered by subject.
        follow = asyncio.create_task(
            asyncio.to_thread(
                run_cli,
                "events",
                "tail",
                "--nats-url",
                nats_server.url,
                "--subject",
                "pointsbridge.cardpoints.account.points_deducted",
                "--count",
                "1",
                "--seconds",
                "30",
            )
        )
        # The event must come after the consumer exists, however slowly the command starts.
        await consumer_filtering(nats_server.url, "pointsbridge.cardpoints.account.points_deducted")
        await bank.deduct("tail-2", "t-1", 100)
        shown = await follow
        assert shown.returncode == 0, shown.stderr
        [line] = shown.stdout.splitlines()
        assert " PointsDeducted t-1#4 " in line
        assert '"points":"100"' in line
    finally:
        await bank.close()
        await app.stop(1)


def test_an_unreachable_broker_is_exit_7_with_one_sentence(tmp_path: object) -> None:
    from tests.broker import free_port

    result = run_cli(
        "events", "tail", "--nats-url", f"nats://127.0.0.1:{free_port()}", "--seconds", "1"
    )
    assert result.returncode == 7
    assert "cannot reach NATS at nats://127.0.0.1:" in result.stderr
    assert "Traceback" not in result.stderr
