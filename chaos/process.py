"""The two services as real OS processes that can be SIGKILLed and restarted on the same port."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
LOCALHOST = "127.0.0.1"

_PORT_LINE = re.compile(rb"serving on port (\d+)")
# Runs first in each server process, then execs the server: with PR_SET_PDEATHSIG the
# kernel SIGKILLs the server if the harness dies, so no server can outlive a run. (A
# preexec_fn would do the same, but forks a process whose gRPC threads are running.)
_GUARD = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "    sys.exit(1)  # the harness is already gone\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)


def _guarded(argv: Sequence[str]) -> list[str]:
    if not sys.platform.startswith("linux"):
        return list(argv)
    return [sys.executable, "-c", _GUARD, str(os.getpid()), *argv]


def cardpoints_command(database_url: str, *extra: str) -> Callable[[str], list[str]]:
    """argv of a card-points server for a listen address."""

    def argv(address: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "cardpoints.entrypoints.server",
            "--address",
            address,
            "--database-url",
            database_url,
            "--log-format",
            "json",
            *extra,
        ]

    return argv


def ecommerce_command(
    database_url: str, cardpoints_address: str, *extra: str
) -> Callable[[str], list[str]]:
    """argv of an e-commerce server for a listen address."""

    def argv(address: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "ecommerce.entrypoints.server",
            "--address",
            address,
            "--database-url",
            database_url,
            "--cardpoints-address",
            cardpoints_address,
            "--log-format",
            "json",
            *extra,
        ]

    return argv


class ServiceProcess:
    """One service, started on 127.0.0.1:0 the first time and on that same port after a kill.

    Each incarnation logs to its own file, `<name>.<n>.log` in `log_dir`; the port is
    read from the log line "serving on port N".
    """

    def __init__(
        self,
        name: str,
        argv: Callable[[str], Sequence[str]],
        log_dir: Path,
        *,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self._argv = argv
        self._log_dir = log_dir
        # Hermetic: the caller's POINTSBRIDGE_* settings must not steer the servers.
        base = {k: v for k, v in os.environ.items() if not k.startswith("POINTSBRIDGE_")}
        self._env = {**base, **(env or {})}
        self.port = 0
        self.incarnations = 0
        self.kills = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None

    @property
    def address(self) -> str:
        if not self.port:
            raise RuntimeError(f"{self.name} has not started yet")
        return f"{LOCALHOST}:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def spawn(self) -> None:
        """Start an incarnation (on the previous port, if there was one); do not wait."""
        if self.running:
            raise RuntimeError(f"{self.name} is already running")
        self.incarnations += 1
        self.log_path = self._log_dir / f"{self.name}.{self.incarnations}.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                _guarded(self._argv(f"{LOCALHOST}:{self.port}")),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self._env,
                cwd=ROOT,
            )

    async def wait_serving(self, within: float = 30.0) -> None:
        """Wait (up to `within` seconds) for the port line in the log, then for SERVING."""
        assert self.process is not None and self.log_path is not None
        deadline = time.monotonic() + within
        while True:
            found = _PORT_LINE.search(self.log_path.read_bytes())
            if found:
                port = int(found.group(1))
                if self.port and port != self.port:
                    raise RuntimeError(f"{self.name} came back on port {port}, not {self.port}")
                self.port = port
                break
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not start:\n{self.tail()}")
            await asyncio.sleep(0.05)
        await wait_healthy(self.address, deadline - time.monotonic())

    async def start(self, within: float = 30.0) -> None:
        self.spawn()
        await self.wait_serving(within)

    def kill(self) -> None:
        """SIGKILL: no drain, no cleanup, exactly like a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
            self.kills += 1

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM (drain), then SIGKILL if it does not exit in time; safe to call twice."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode

    def tail(self, lines: int = 40) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


async def wait_healthy(address: str, within: float) -> None:
    """Poll grpc.health.v1 Check("") until SERVING, for up to `within` seconds."""
    deadline = time.monotonic() + max(within, 0.5)
    last = "no answer"
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            try:
                answer = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
                if answer.status == health_pb2.HealthCheckResponse.SERVING:
                    return
                last = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
            except grpc.aio.AioRpcError as error:
                last = error.code().name
            await asyncio.sleep(0.05)
    raise RuntimeError(f"{address} is not SERVING after {within:.0f} s (last: {last})")
