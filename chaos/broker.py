"""A private NATS server with JetStream (a free port, a store of its own), and a plain reader.

The tests and the fault harness both use it. The reader is a bare nats-py pull
consumer: it sees the streams as any integrator would, without the project's code.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import nats
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig

BINARY = shutil.which("nats-server") or "/usr/sbin/nats-server"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class NatsServer:
    """`nats-server -js` on 127.0.0.1; stop and start it again on the same port and store."""

    def __init__(self, root: Path) -> None:
        if not Path(BINARY).exists():
            raise RuntimeError(f"no nats-server binary ({BINARY}); install the nats-server package")
        self.root = root
        self.store = root / "jetstream"
        self.port = free_port()
        self.log_path = root / "nats-server.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> None:
        assert self.process is None, "already running"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [BINARY, "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(self.store)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nats-server exited: {self.log_path.read_text()[-2000:]}")
            if b"Server is ready" in self.log_path.read_bytes():
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nats-server did not get ready in {timeout}s")

    def kill(self) -> None:
        """SIGKILL: the broker dies without a goodbye, as in a crash."""
        process, self.process = self.process, None
        if process is not None:
            process.kill()
            process.wait(10)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


async def stream_messages(
    url: str, service: str, *, expect: int, within: float = 30.0
) -> list[Msg]:
    """Every message of a service's stream, read by a plain nats-py consumer, once `expect` are in.

    Waits (bounded) until the stream holds at least `expect` messages, then reads them all,
    so a test sees what any consumer would: the stream's content, in order.
    """
    stream, subjects = f"POINTSBRIDGE_{service.upper()}", f"pointsbridge.{service}.>"
    nc = await nats.connect(url, connect_timeout=2, max_reconnect_attempts=3)
    try:
        js = nc.jetstream()
        deadline = time.monotonic() + within
        count = 0
        while time.monotonic() < deadline:
            try:
                count = (await js.stream_info(stream)).state.messages
            except nats.js.errors.NotFoundError:
                count = 0
            if count >= expect:
                break
            await asyncio.sleep(0.1)
        if count < expect:
            raise TimeoutError(f"stream {stream} holds {count} messages, expected {expect}")
        await asyncio.sleep(0.3)  # anything published just after is read too
        try:
            count = (await js.stream_info(stream)).state.messages
        except nats.js.errors.NotFoundError:
            return []  # nothing was ever published (and nothing was expected)
        # No acks: a reader that acknowledged nothing would stall at the consumer's
        # max_ack_pending (1000 by default) otherwise.
        sub = await js.pull_subscribe(
            subjects, stream=stream, config=ConsumerConfig(ack_policy=AckPolicy.NONE)
        )
        messages: list[Msg] = []
        while len(messages) < count:
            batch = await sub.fetch(min(256, count - len(messages)), timeout=5)
            messages.extend(batch)
        await sub.unsubscribe()
        return messages
    finally:
        await nc.close()


def ce(message: Msg) -> dict[str, Any]:
    """The CloudEvents attributes of a message, without their ce- prefix."""
    return {k[3:]: v for k, v in (message.headers or {}).items() if k.startswith("ce-")}
