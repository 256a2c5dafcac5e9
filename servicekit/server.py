"""gRPC server bootstrap: health, reflection, message limits and a graceful drain."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import grpc
from google.rpc import error_details_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from servicekit.auth import Authenticator
from servicekit.config import ConfigError
from servicekit.observability import DutiesHandler, with_duties
from servicekit.ports import check_port_free

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 4 * 1024 * 1024

SERVER_OPTIONS: Sequence[tuple[str, Any]] = (
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.so_reuseport", 0),
)
# For the processes of one server (--processes N): they share its port.
REUSE_PORT = ("grpc.so_reuseport", 1)

# Loaded so that reflection can resolve the error detail types for grpcurl.
ERROR_DETAIL_TYPES = (error_details_pb2.ErrorInfo, error_details_pb2.BadRequest)


@dataclass(frozen=True)
class Registration:
    """One service: its full name and the function that adds its servicer."""

    name: str
    add: Callable[[grpc.aio.Server], None]


class _Registrar:
    """Stands in for the server while the servicers register: each method handler they
    add is wrapped in its duties (`with_duties`) there and then, once, not per call."""

    def __init__(self, server: grpc.aio.Server, auth: Authenticator | None) -> None:
        self._server = server
        self._auth = auth

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self._server.add_generic_rpc_handlers(tuple(DutiesHandler(h, self._auth) for h in handlers))

    def add_registered_method_handlers(
        self, service: str, handlers: dict[str, grpc.RpcMethodHandler[Any, Any]]
    ) -> None:
        self._server.add_registered_method_handlers(
            service,
            {
                name: with_duties(f"/{service}/{name}", handler, self._auth)
                for name, handler in handlers.items()
            },
        )

    def __getattr__(self, name: str) -> Any:
        return getattr(self._server, name)


@dataclass
class RunningServer:
    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    services: tuple[str, ...]

    async def drain(self, grace: float) -> None:
        """Report NOT_SERVING, let in-flight calls finish for up to `grace` seconds, stop."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)


async def start_server(
    address: str,
    registrations: Sequence[Registration],
    *,
    credentials: grpc.ServerCredentials | None = None,
    auth: Authenticator | None = None,
    reuse_port: bool = False,
) -> RunningServer:
    """Start serving on `address` ("host:0" picks a free port) and return the bound port.

    Every unary RPC gets its duties (servicekit.observability.with_duties), and with
    `auth` its caller admitted, by one wrapper per method built here, not per call.
    `reuse_port`: share the port with the other processes of the same server
    (SO_REUSEPORT); whoever starts them checks first that nobody else holds it."""
    options = SERVER_OPTIONS
    if reuse_port:
        options = (*(o for o in SERVER_OPTIONS if o[0] != "grpc.so_reuseport"), REUSE_PORT)
    server = grpc.aio.server(options=options)
    registrar = cast(grpc.aio.Server, _Registrar(server, auth))
    for registration in registrations:
        registration.add(registrar)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, registrar)
    names = tuple(r.name for r in registrations)
    reflection.enable_server_reflection(
        (
            *names,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    if not reuse_port:
        check_port_free(address)
    try:
        if credentials is None:
            port = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, credentials)
    except RuntimeError:
        port = 0
    if port == 0:
        raise ConfigError(f"cannot listen on {address}")
    await server.start()
    serving = health_pb2.HealthCheckResponse.SERVING
    await health_servicer.set("", serving)
    for name in names:
        await health_servicer.set(name, serving)
    return RunningServer(server, port, health_servicer, names)


async def wait_for_stop_signal() -> None:
    """Return on the first SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
