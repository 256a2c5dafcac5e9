"""JetStream as both services use it: their streams, connecting, and CloudEvents headers."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import Header, StorageType, StreamConfig

log = logging.getLogger("pointsbridge.events")

# Seconds the stream remembers message ids to drop repeats. It must outlast the
# longest a live relay takes to repeat a publish: a lease plus a round.
DUPLICATE_WINDOW = 300.0
SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/protobuf"


class StreamMismatch(RuntimeError):
    """The stream exists with settings the relay cannot publish into safely."""


# What a broker that is down, slow or refusing raises (the rest is the database's).
BROKER_ERRORS = (nats.errors.Error, ConnectionError, OSError, TimeoutError, StreamMismatch)


@dataclass(frozen=True)
class StreamSpec:
    name: str
    subjects: str


STREAMS = {
    "cardpoints": StreamSpec("POINTSBRIDGE_CARDPOINTS", "pointsbridge.cardpoints.>"),
    "ecommerce": StreamSpec("POINTSBRIDGE_ECOMMERCE", "pointsbridge.ecommerce.>"),
}


async def ensure_stream(js: JetStreamContext, service: str) -> str:
    """Create the service's stream, or check it; "created", "updated" or "ok"."""
    spec = STREAMS[service]
    try:
        info = await js.stream_info(spec.name)
    except nats.js.errors.NotFoundError:
        await js.add_stream(
            StreamConfig(
                name=spec.name,
                subjects=[spec.subjects],
                storage=StorageType.FILE,
                duplicate_window=DUPLICATE_WINDOW,
                description=f"PointsBridge {service} events (CloudEvents, protobuf data)",
            )
        )
        return "created"
    config = info.config
    if spec.subjects not in (config.subjects or []):
        raise StreamMismatch(
            f"stream {spec.name} exists without subject {spec.subjects!r} ({config.subjects})"
        )
    storage = getattr(config.storage, "value", config.storage)
    if storage != StorageType.FILE.value:
        raise StreamMismatch(f"stream {spec.name} exists with {storage} storage, not file")
    if (config.duplicate_window or 0) < DUPLICATE_WINDOW:
        config.duplicate_window = DUPLICATE_WINDOW
        await js.update_stream(config)
        return "updated"
    return "ok"


def safe_url(url: str) -> str:
    """`url` without the user and password it may carry, for logs and messages."""
    parts = urlsplit(url if "://" in url else f"nats://{url}")
    return f"{parts.scheme}://{parts.hostname}:{parts.port or 4222}"


async def connect(url: str, *, wait: float = 5.0, **options: Any) -> NatsClient:
    """A NATS connection that keeps reconnecting once made; making it takes at most `wait` s."""

    async def quiet(error: Exception) -> None:
        log.debug("nats: %s", error)

    try:
        settings: dict[str, Any] = {
            "connect_timeout": 2,
            "reconnect_time_wait": 0.5,
            "max_reconnect_attempts": -1,
            "error_cb": quiet,
            **options,
        }
        return await asyncio.wait_for(nats.connect(url, **settings), wait)
    except TimeoutError:
        raise ConnectionError(f"no NATS server answered at {safe_url(url)}") from None


def headers(row: Any, source: str, stream: str | None = None) -> dict[str, str]:
    """The CloudEvents binary-mode attributes of one outbox row, and its dedup id.

    With `stream`, also the name of the only stream that may store it.
    """
    moment = datetime.fromtimestamp(row.time_us / 1_000_000, UTC)
    expected = {} if stream is None else {Header.EXPECTED_STREAM.value: stream}
    return {
        **expected,
        "Nats-Msg-Id": row.event_id,
        "ce-specversion": SPEC_VERSION,
        "ce-id": row.event_id,
        "ce-source": source,
        "ce-type": row.type,
        "ce-subject": row.aggregate_id,
        "ce-time": moment.isoformat(timespec="microseconds").replace("+00:00", "Z"),
        "ce-sequence": str(row.sequence),
        "content-type": CONTENT_TYPE,
    }


class Acks:
    """JetStream publishing on one connection without awaiting each acknowledgement in turn.

    Every message carries a reply subject under one inbox of the connection, subscribed
    once; the stream's acknowledgement, or its refusal, arrives there and settles that
    message's future. A message is stored once the future holds its acknowledgement:
    whether it was a repeat the stream's duplicate window dropped (True) or not (False).
    What has no answer by the time its sender gives up is `abandon`ed: a late answer
    then settles nothing, and the message counts as not acknowledged.
    """

    def __init__(self, nc: NatsClient) -> None:
        self._nc = nc
        self._prefix = ""
        self._sent = 0
        self._waiting: dict[str, asyncio.Future[bool]] = {}

    async def start(self) -> None:
        prefix = f"{self._nc.new_inbox()}."
        await self._nc.subscribe(f"{prefix}*", cb=self._settle)
        self._prefix = prefix

    async def send(
        self, subject: str, payload: bytes, headers: dict[str, str]
    ) -> asyncio.Future[bool]:
        """Publish one message; the future of its acknowledgement."""
        assert self._prefix, "start() first"
        self._sent += 1
        token = format(self._sent, "x")
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting[token] = future
        try:
            await self._nc.publish(subject, payload, reply=self._prefix + token, headers=headers)
        except BaseException:
            del self._waiting[token]
            raise
        return future

    def abandon(self) -> None:
        """Stop waiting for every answer still outstanding."""
        for future in self._waiting.values():
            future.cancel()
        self._waiting.clear()

    @property
    def outstanding(self) -> int:
        return len(self._waiting)

    async def _settle(self, msg: Msg) -> None:
        future = self._waiting.pop(msg.subject[len(self._prefix) :], None)
        if future is None or future.done():
            return
        try:
            future.set_result(parse_ack(msg))
        except Exception as error:  # the stream's refusal, or an answer that is none
            future.set_exception(error)


def parse_ack(msg: Msg) -> bool:
    """Whether the stream's answer `msg` dropped the message as a repeat; raises a refusal."""
    if msg.headers and msg.headers.get(Header.STATUS.value) == "503":
        raise nats.js.errors.NoStreamResponseError
    try:
        answer = json.loads(msg.data)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise nats.errors.Error(f"unreadable acknowledgement {msg.data[:80]!r}")
    if "error" in answer:
        nats.js.errors.APIError.from_error(answer["error"])  # raises the error's own class
    if "seq" not in answer:
        raise nats.errors.Error(f"acknowledgement without a sequence: {answer}")
    return bool(answer.get("duplicate"))
