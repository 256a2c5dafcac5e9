"""Test support: running real servers, reading error statuses, running real processes."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Sequence
from pathlib import Path
from typing import Any

import grpc

from servicekit.status import RemoteError, remote_error

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


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


_PORT_LINE = re.compile(rb"serving on port (\d+)")


class ServerProcess:
    """A server started as a real OS process on port 0; the port is read from its log."""

    def __init__(self, args: Sequence[str], env: dict[str, str] | None = None) -> None:
        self.log_path = (
            Path(os.environ.get("TMPDIR", "/tmp")) / f"pb-server-{os.getpid()}-{id(self)}.log"
        )
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [str(a) for a in args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=ROOT,
        )
        self.port = self._wait_for_port(timeout=30)

    def _wait_for_port(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = _PORT_LINE.search(self.log_path.read_bytes())
            if found:
                return int(found.group(1))
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"server did not start:\n{self.log_path.read_text()}")

    def stop(self, timeout: float = 15) -> int:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode
