"""Entrypoints room: bootstrap and the `storefront-server` command (uvicorn)."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import uvicorn

from servicekit.config import ConfigError
from servicekit.observability import configure_logging
from servicekit.server import wait_for_stop_signal
from storefront.adapters.redemption_client import RedemptionClient
from storefront.entrypoints.app import create_app
from storefront.entrypoints.settings import Settings, parse_settings

log = logging.getLogger("storefront")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(settings: Settings) -> socket.socket:
    """The listening socket for --address, refusing plain HTTP beyond loopback unless asked."""
    host, _, port = settings.address.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"  # noqa: S104  # checked just below
    if bool(settings.tls_cert) != bool(settings.tls_key):
        raise ConfigError("--tls-cert and --tls-key go together")
    if not settings.tls_cert and not _is_loopback(host) and not settings.insecure_plaintext:
        raise ConfigError(
            f"refusing plain HTTP on {host}: serve HTTPS with --tls-cert and --tls-key, "
            "or pass --insecure-plaintext true behind a TLS-terminating proxy"
        )
    try:
        number = int(port)
    except ValueError:
        raise ConfigError(f"--address needs host:port, got {settings.address!r}") from None
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, number))
    except OSError as error:
        sock.close()
        raise ConfigError(f"cannot listen on {settings.address}: {error.strerror}") from None
    sock.listen(128)
    sock.setblocking(False)
    return sock


def _config(settings: Settings, client: RedemptionClient | None) -> uvicorn.Config:
    return uvicorn.Config(
        create_app(settings, client=client),
        log_config=None,
        access_log=False,  # the app writes its own JSON access log, with the request id
        server_header=False,
        lifespan="on",
        timeout_graceful_shutdown=int(max(settings.grace, 1)),
        ssl_certfile=settings.tls_cert or None,
        ssl_keyfile=settings.tls_key or None,
    )


class _Embedded(uvicorn.Server):
    """A server that leaves signals to its caller (serve() below, tests)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class RunningStorefront:
    server: uvicorn.Server
    task: asyncio.Task[None]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        self.server.should_exit = True
        await self.task


async def start(settings: Settings, *, client: RedemptionClient | None = None) -> RunningStorefront:
    """Serve the storefront in this event loop; returns once it accepts connections."""
    sock = bind(settings)
    port = int(sock.getsockname()[1])
    server = _Embedded(_config(settings, client))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    for _ in range(500):
        if server.started or task.done():
            break
        await asyncio.sleep(0.01)
    if not server.started:
        server.should_exit = True
        await task
        raise RuntimeError("the storefront did not start")
    return RunningStorefront(server, task, port)


async def serve(settings: Settings) -> None:
    if not settings.ecommerce_ca:
        log.warning("INSECURE: calling ecommerce over plaintext with customers' bearer tokens")
    if settings.dev_sign_in:
        log.warning("DEVELOPMENT: /dev/sign-in signs in from a link (--dev-sign-in)")
    running = await start(settings)
    log.info(
        "storefront serving on port %d, ecommerce at %s", running.port, settings.ecommerce_address
    )
    stopped = asyncio.ensure_future(wait_for_stop_signal())
    try:
        await asyncio.wait([stopped, running.task], return_when=asyncio.FIRST_COMPLETED)
        log.info("draining for up to %.1f s", settings.grace)
    finally:
        stopped.cancel()
        await running.stop()


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse_settings(argv)
    configure_logging("storefront", settings.log_level, settings.log_format)
    try:
        asyncio.run(serve(settings))
    except ConfigError as error:
        log.error("%s", error)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
