"""`pointsbridge events`: the JetStream streams that carry both services' events, and a tail."""

from __future__ import annotations

import asyncio
import contextlib
import json as jsonlib
import sys
from typing import Annotated, Any

import nats.errors
import nats.js.errors
import typer
from google.protobuf import json_format
from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy

from pointsbridge_cli.failures import ExitCode
from pointsbridge_cli.params import json_option
from pointsbridge_cli.session import Session
from servicekit import event_types
from servicekit.streams import STREAMS, StreamMismatch, connect, ensure_stream, safe_url

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"

app = typer.Typer(
    help="Events both services publish to NATS JetStream: set up the streams, follow them.",
    no_args_is_help=True,
)

NatsUrlOption = Annotated[
    str,
    typer.Option(
        "--nats-url",
        envvar="POINTSBRIDGE_NATS_URL",
        help="NATS server with JetStream, e.g. --nats-url nats://broker-host:4222.",
    ),
]


def _die(message: str, code: ExitCode) -> None:
    print(f"pointsbridge: {message}", file=sys.stderr)
    raise typer.Exit(int(code))


async def _connected(url: str) -> Any:
    try:
        return await connect(url, wait=5.0, max_reconnect_attempts=3)
    except (ConnectionError, OSError, nats.errors.Error) as error:
        _die(f"cannot reach NATS at {safe_url(url)}: {error}", ExitCode.UNREACHABLE)


@app.command("setup")
def setup(
    ctx: typer.Context,
    nats_url: NatsUrlOption = DEFAULT_NATS_URL,
    json: Annotated[
        bool, json_option(".streams[].outcome", "each stream and what was done to it as JSON")
    ] = False,
) -> None:
    """Create both event streams, or check them (file storage, subjects, duplicate window).

    The servers do the same for their own stream when their relay starts; this lets an
    operator prepare the broker (or check it) before any server runs.

    Example:

    ```
    pointsbridge events setup --nats-url nats://127.0.0.1:4222
    ```
    """
    session = Session.of(ctx, json)

    async def run() -> list[dict[str, str]]:
        nc = await _connected(nats_url)
        try:
            js = nc.jetstream(timeout=5)
            outcomes = []
            for service, spec in STREAMS.items():
                try:
                    outcome = await ensure_stream(js, service)
                except StreamMismatch as mismatch:
                    _die(str(mismatch), ExitCode.OTHER_ERROR)
                outcomes.append(
                    {"stream": spec.name, "subjects": spec.subjects, "outcome": outcome}
                )
            return outcomes
        finally:
            await nc.close()

    outcomes = asyncio.run(run())
    if session.json:
        print(jsonlib.dumps({"streams": outcomes}, indent=2))
    else:
        for item in outcomes:
            print(f"{item['stream']} ({item['subjects']}): {item['outcome']}")


def _within(inner: list[str], outer: list[str]) -> bool:
    """Whether every subject `inner` matches is one `outer` matches too."""
    for index, part in enumerate(outer):
        if part == ">":
            return len(inner) > index and ">" not in inner[:index]
        if index >= len(inner) or inner[index] == ">":
            return False
        if part != "*" and inner[index] != part:
            return False
    return len(inner) == len(outer)


def _collide(a: list[str], b: list[str]) -> bool:
    for x, y in zip(a, b, strict=False):
        if ">" in (x, y):
            return True
        if x != y and "*" not in (x, y):
            return False
    return len(a) == len(b)


def _filter_for(subject: str, stream_subjects: str) -> str | None:
    """The consumer filter for `subject` on a stream of `stream_subjects`; None if disjoint."""
    wanted, offered = subject.split("."), stream_subjects.split(".")
    if _within(offered, wanted):
        return stream_subjects  # the whole stream
    if _within(wanted, offered) or _collide(wanted, offered):
        return subject
    return None


def _readable(message: Msg) -> dict[str, Any]:
    headers = message.headers or {}
    attributes = {k[3:]: v for k, v in headers.items() if k.startswith("ce-")}
    event: dict[str, Any] = {
        "id": attributes.get("id", ""),
        "type": attributes.get("type", ""),
        "source": attributes.get("source", ""),
        "subject": attributes.get("subject", ""),
        "sequence": int(attributes.get("sequence", "0") or 0),
        "time": attributes.get("time", ""),
        "nats_subject": message.subject,
        "stream_sequence": message.metadata.sequence.stream,
    }
    try:
        data = event_types.decode(event["type"], message.data)
        event["data"] = json_format.MessageToDict(data, preserving_proto_field_name=True)
    except (KeyError, ValueError) as error:
        event["data"] = None
        event["undecodable"] = f"{type(error).__name__}: {error}"
    return event


def _line(event: dict[str, Any]) -> str:
    data = jsonlib.dumps(event["data"], separators=(",", ":"))
    short = event["type"].rsplit(".", 1)[-1]
    return f"{event['time']} {short} {event['subject']}#{event['sequence']} {data}"


@app.command("tail")
def tail(
    ctx: typer.Context,
    subject: Annotated[
        str,
        typer.Option(
            "--subject",
            help="NATS subject filter, wildcards allowed, "
            "e.g. --subject 'pointsbridge.cardpoints.account.>'.",
        ),
    ] = "pointsbridge.>",
    from_start: Annotated[
        bool,
        typer.Option(
            "--from-start",
            help="Replay every stored event first instead of only new ones, e.g. --from-start.",
        ),
    ] = False,
    count: Annotated[
        int,
        typer.Option(
            "--count",
            min=0,
            help="Stop after this many events (0: run until Ctrl-C), e.g. --count 10.",
        ),
    ] = 0,
    seconds: Annotated[
        float,
        typer.Option(
            "--seconds",
            min=0,
            help="Stop after this many seconds (0: run until Ctrl-C), e.g. --seconds 30.",
        ),
    ] = 0,
    nats_url: NatsUrlOption = DEFAULT_NATS_URL,
    json: Annotated[
        bool,
        json_option(
            ".data", "one JSON object per event, its CloudEvents attributes and decoded data"
        ),
    ] = False,
) -> None:
    """Print events as they arrive, decoded from protobuf to readable JSON.

    Each line shows the CloudEvents time, type, subject (the aggregate's id) and its
    per-aggregate sequence, then the event's fields; --json prints one JSON object per
    line with every attribute. The consumers are ephemeral and ordered: nothing is
    left on the broker when the command ends.

    Example:

    ```
    pointsbridge events tail --subject 'pointsbridge.ecommerce.>' --from-start --json
    ```
    """
    session = Session.of(ctx, json)
    filters = {
        spec.name: chosen
        for spec in STREAMS.values()
        if (chosen := _filter_for(subject, spec.subjects)) is not None
    }
    if not filters:
        raise typer.BadParameter(
            f"{subject!r} matches no event stream; e.g. --subject 'pointsbridge.>'"
        )
    policy = DeliverPolicy.ALL if from_start else DeliverPolicy.NEW

    async def run() -> None:
        nc = await _connected(nats_url)
        received: asyncio.Queue[Msg] = asyncio.Queue()
        try:
            js = nc.jetstream(timeout=5)

            async def arrived(message: Msg) -> None:
                await received.put(message)

            for stream, chosen in filters.items():
                try:
                    await js.subscribe(
                        chosen,
                        stream=stream,
                        cb=arrived,
                        ordered_consumer=True,
                        deliver_policy=policy,
                    )
                except nats.js.errors.NotFoundError:
                    _die(
                        f"stream {stream} does not exist yet; run `pointsbridge events setup`",
                        ExitCode.NOT_FOUND,
                    )
            printed = 0
            loop = asyncio.get_running_loop()
            deadline = loop.time() + seconds if seconds else None
            while not count or printed < count:
                wait = None if deadline is None else deadline - loop.time()
                if wait is not None and wait <= 0:
                    break
                try:
                    message = await asyncio.wait_for(received.get(), wait)
                except TimeoutError:
                    break
                event = _readable(message)
                print(jsonlib.dumps(event) if session.json else _line(event), flush=True)
                printed += 1
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(nc.close(), 2)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())
