"""An asyncio TCP proxy on 127.0.0.1 that injects network faults between two services.

It sits, for example, between ecommerce and cardpoints (`--cardpoints-address` points
at the proxy) and forwards bytes both ways. Its `mode` can be changed at any time and
applies to every connection, open or new:

- `FORWARD`: pass everything through.
- `CUT`: lose responses. Requests still reach the upstream and are executed there; the
  moment the upstream starts answering one, the proxy drops that answer and cuts the
  connection (both sides are reset). The caller never learns the outcome.
- `STALL`: hold everything the upstream sends (requests still go through); the held
  bytes flow on when the mode goes back to FORWARD. With a caller deadline shorter than
  the stall, the request is executed and the caller times out.
- `REFUSE`: new connections are accepted and reset at once, as if nothing listened
  (the listening socket is kept so that the port stays ours). Open ones keep working.

What "the upstream starts answering" means: the proxy does not decode HTTP/2 (no HPACK,
no gRPC framing), but it does read the 9-byte HTTP/2 frame headers of what the upstream
sends. The byte-level rule "cut at the first upstream bytes after a client request" is
not good enough for gRPC: a server acknowledges PINGs, SETTINGS and flow-control
windows as soon as a request arrives, before its handler has run, so that rule would
often cut *before* the request was executed. Nor is the first HEADERS frame: a server
may send its response headers (ours carry the request id) as soon as the call starts.
The trailers are different: a HEADERS frame (type 0x1) with END_STREAM (flag 0x1) on a
non-zero stream is sent only when the handler has finished, so cutting there means
"the request was executed and its response is lost". Frames before it in the same read
are forwarded (a response message without its trailers is no answer to a gRPC client);
everything from it on is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

LOCALHOST = "127.0.0.1"
_FRAME_HEADER = 9
_HEADERS = 0x1
_END_STREAM = 0x1
_READ = 64 * 1024


class Mode(enum.StrEnum):
    FORWARD = "forward"
    CUT = "cut"
    STALL = "stall"
    REFUSE = "refuse"


@dataclass
class ProxyStats:
    connections: int = 0
    refused: int = 0
    cut: int = 0
    bytes_up: int = 0
    bytes_down: int = 0


class FrameScanner:
    """Finds where HTTP/2 frames start in the upstream's byte stream, across reads."""

    def __init__(self) -> None:
        self._header = bytearray()
        self._skip = 0  # payload bytes of the current frame still to come

    def first_response_start(self, chunk: bytes) -> int | None:
        """Offset in `chunk` of the first trailers (HEADERS with END_STREAM) on a stream."""
        at = 0
        found: int | None = None
        while at < len(chunk):
            if self._skip:
                step = min(self._skip, len(chunk) - at)
                self._skip -= step
                at += step
                continue
            start = at - len(self._header)
            need = _FRAME_HEADER - len(self._header)
            self._header += chunk[at : at + need]
            at += min(need, len(chunk) - at)
            if len(self._header) < _FRAME_HEADER:
                break
            length = int.from_bytes(self._header[0:3], "big")
            frame_type = self._header[3]
            flags = self._header[4]
            stream_id = int.from_bytes(self._header[5:9], "big") & 0x7FFFFFFF
            self._header.clear()
            self._skip = length
            ends_stream = frame_type == _HEADERS and flags & _END_STREAM
            if found is None and ends_stream and stream_id != 0:
                found = max(start, 0)
        return found


@dataclass
class FaultProxy:
    """Listens on 127.0.0.1 (port 0 by default) and forwards to `upstream_port` on 127.0.0.1."""

    upstream_port: int
    listen_port: int = 0
    mode: Mode = Mode.FORWARD
    stats: ProxyStats = field(default_factory=ProxyStats)
    _server: asyncio.Server | None = None
    _flowing: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._flowing.set()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the proxy is not started")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def address(self) -> str:
        return f"{LOCALHOST}:{self.port}"

    async def start(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._accept, LOCALHOST, self.listen_port)
        return self

    def set_mode(self, mode: Mode) -> None:
        self.mode = mode
        if mode is Mode.STALL:
            self._flowing.clear()
        else:
            self._flowing.set()

    async def close(self) -> None:
        """Stop listening and reset every open connection."""
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            _reset(writer)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    async def __aenter__(self) -> FaultProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode is Mode.REFUSE:
            self.stats.refused += 1
            _reset(writer)
            return
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(LOCALHOST, self.upstream_port), 5
            )
        except (OSError, TimeoutError):
            _reset(writer)  # upstream down: the caller sees a refused connection too
            return
        self.stats.connections += 1
        self._writers.update((writer, up_writer))
        both = (writer, up_writer)
        tasks = (
            asyncio.create_task(self._pump_up(reader, up_writer, both)),
            asyncio.create_task(self._pump_down(up_reader, writer, both)),
        )
        self._tasks.update(tasks)
        try:
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            self._tasks.difference_update(tasks)
            self._writers.difference_update(both)
            for w in both:
                _reset(w)

    async def _pump_up(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        both: tuple[asyncio.StreamWriter, ...],
    ) -> None:
        """Client to upstream: requests always go through (that is the point)."""
        try:
            while chunk := await source.read(_READ):
                self.stats.bytes_up += len(chunk)
                sink.write(chunk)
                await sink.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            for w in both:
                _reset(w)

    async def _pump_down(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        both: tuple[asyncio.StreamWriter, ...],
    ) -> None:
        """Upstream to client: where responses are held (STALL) or lost (CUT)."""
        scanner = FrameScanner()
        try:
            while chunk := await source.read(_READ):
                response_at = scanner.first_response_start(chunk)
                await self._flowing.wait()
                if self.mode is Mode.CUT and response_at is not None:
                    if response_at:
                        sink.write(chunk[:response_at])
                        await sink.drain()
                    self.stats.cut += 1
                    log.info("cut a connection as its response started")
                    return
                self.stats.bytes_down += len(chunk)
                sink.write(chunk)
                await sink.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            for w in both:
                _reset(w)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close at once, with RST rather than FIN where the transport allows it."""
    transport = writer.transport
    if transport.is_closing():
        return
    with contextlib.suppress(Exception):
        transport.abort()
