"""Test support: running real servers, reading error statuses, running real processes."""

from __future__ import annotations

import itertools
import os
import socket
import tempfile
from collections.abc import Awaitable, Sequence
from pathlib import Path
from typing import Any

import grpc

from servicekit.devtools.launch import BIN, ROOT, ServiceProcess
from servicekit.status import RemoteError, remote_error

__all__ = ["BIN", "ROOT", "error_info_count", "expect_error", "free_port", "start_server"]


def free_port() -> int:
    """A port nothing listens on: bound to learn a free number, then released."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def expect_error(call: Awaitable[Any]) -> RemoteError:
    """Await a call that must fail and return what its status said."""
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return remote_error(error)
    raise AssertionError("the call succeeded")


def error_info_count(error: grpc.aio.AioRpcError) -> int:
    from google.rpc import error_details_pb2, status_pb2

    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            return sum(d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR) for d in status.details)
    return 0


_servers = itertools.count(1)


def start_server(args: Sequence[str], env: dict[str, str] | None = None) -> ServiceProcess:
    """A server started as a real OS process on port 0; the port is read from its log."""
    name = f"pb-server-{os.getpid()}-{next(_servers)}"
    return ServiceProcess(name, args, Path(tempfile.gettempdir()), env=env).start(timeout=30)
