"""Start a service as an OS process, wait until it serves, read its address, stop or kill it.

Every server prints "serving on port N" once it listens (and "metrics on port N" when
it exports metrics); that line is how a caller learns the port it picked.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from servicekit import lifeline

ROOT = Path(__file__).resolve().parent.parent.parent
BIN = Path(sys.executable).parent
LOCALHOST = "127.0.0.1"

_PORT_LINE = re.compile(rb"serving on port (\d+)")
_METRICS_LINE = re.compile(rb"metrics on port (\d+)")

Argv = Sequence[str] | Callable[[str], Sequence[str]]


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def server_command(service: str, database_url: str, *extra: str) -> Callable[[str], list[str]]:
    """argv of a `service` server (cardpoints or ecommerce) for a listen address."""

    def argv(address: str) -> list[str]:
        return python_module(
            f"{service}.entrypoints.server",
            "--address",
            address,
            "--database-url",
            database_url,
            "--log-format",
            "json",
            *extra,
        )

    return argv


def cardpoints_command(database_url: str, *extra: str) -> Callable[[str], list[str]]:
    return server_command("cardpoints", database_url, *extra)


def ecommerce_command(
    database_url: str, cardpoints_address: str, *extra: str
) -> Callable[[str], list[str]]:
    return server_command(
        "ecommerce", database_url, "--cardpoints-address", cardpoints_address, *extra
    )


class ServiceProcess:
    """One service process, started on 127.0.0.1:0 the first time and on that same port
    after a kill.

    With `log_dir`, each incarnation logs to its own file, `<name>.<n>.log`; without, its
    output is relayed line by line to our stderr. `lifeline` is the signal the kernel
    sends the process if ours dies first (servicekit.lifeline), or None for no tie:
    spawn from the main thread, since the tie follows the thread that started the child.
    `hermetic` drops the caller's POINTSBRIDGE_* settings from the environment.
    """

    def __init__(
        self,
        name: str,
        argv: Argv,
        log_dir: Path | None = None,
        *,
        env: Mapping[str, str] | None = None,
        hermetic: bool = False,
        lifeline: signal.Signals | None = lifeline.DEATH_SIGNAL,
        own_session: bool = False,
        cwd: Path | None = ROOT,
    ) -> None:
        self.name = name
        self._argv = argv
        self._log_dir = log_dir
        base = {
            k: v for k, v in os.environ.items() if not (hermetic and k.startswith("POINTSBRIDGE_"))
        }
        self._env = {**base, **(env or {})}
        self._lifeline = lifeline
        self._own_session = own_session
        self._cwd = cwd
        self.port = 0
        self.metrics_port: int | None = None
        self.incarnations = 0
        self.kills = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._log_path: Path | None = None
        self._relayed = b""
        self._relay_done = threading.Event()

    @property
    def address(self) -> str:
        if not self.port:
            raise RuntimeError(f"{self.name} has not started yet")
        return f"{LOCALHOST}:{self.port}"

    @property
    def process(self) -> subprocess.Popen[bytes]:
        """The current incarnation."""
        if self._process is None:
            raise RuntimeError(f"{self.name} has not been started")
        return self._process

    @property
    def log_path(self) -> Path:
        """The current incarnation's log file (when not relayed)."""
        if self._log_path is None:
            raise RuntimeError(f"{self.name} has no log file")
        return self._log_path

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _command(self) -> list[str]:
        argv = self._argv(f"{LOCALHOST}:{self.port}") if callable(self._argv) else self._argv
        command = [str(a) for a in argv]
        if self._lifeline is None:
            return command
        return lifeline.command(os.getpid(), command, self._lifeline)

    def spawn(self) -> ServiceProcess:
        """Start an incarnation (on the previous port, if there was one); do not wait."""
        if self.running:
            raise RuntimeError(f"{self.name} is already running")
        self.incarnations += 1
        if self._log_dir is None:
            self._relayed = b""
            self._relay_done.clear()
            self._process = self._popen(subprocess.PIPE)
            threading.Thread(target=self._relay, args=(self.process.stdout,), daemon=True).start()
            return self
        self._log_path = self._log_dir / f"{self.name}.{self.incarnations}.log"
        with self._log_path.open("wb") as log:  # the child keeps its own copy of the file
            self._process = self._popen(log)
        return self

    def _popen(self, stdout: int | IO[bytes]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            self._command(),
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=subprocess.STDOUT,
            env=self._env,
            cwd=self._cwd,
            start_new_session=self._own_session,
        )

    def _relay(self, stream: IO[bytes] | None) -> None:
        assert stream is not None
        for line in stream:
            sys.stderr.write(line.decode(errors="replace"))
            sys.stderr.flush()
            if len(self._relayed) < 1 << 16:  # the start-up lines are all we look for
                self._relayed += line
        self._relay_done.set()

    def _output(self) -> bytes:
        if self._log_dir is None:
            return self._relayed
        return self.log_path.read_bytes()

    def _found_port(self) -> bool:
        """Read the port line, if it is there yet; raise if the process has ended without."""
        output = self._output()
        if self.metrics_port is None and (metrics := _METRICS_LINE.search(output)):
            self.metrics_port = int(metrics.group(1))
        if found := _PORT_LINE.search(output):
            port = int(found.group(1))
            if self.port and port != self.port:
                raise RuntimeError(f"{self.name} came back on port {port}, not {self.port}")
            self.port = port
            return True
        if self.process.poll() is not None:
            relayed = self._log_dir is None and self._relay_done.wait(5)
            if relayed and _PORT_LINE.search(self._relayed):
                return self._found_port()
            raise RuntimeError(
                f"{self.name} did not start (exit code {self.process.returncode}):\n{self.tail()}"
            )
        return False

    def wait_port(self, timeout: float = 60) -> int:
        """Block until the port line (up to `timeout` seconds); the port."""
        deadline = time.monotonic() + timeout
        while not self._found_port():
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name} did not start:\n{self.tail()}")
            time.sleep(0.05)
        return self.port

    def start(self, timeout: float = 60) -> ServiceProcess:
        """Spawn, then wait for the port line."""
        self.spawn().wait_port(timeout)
        return self

    async def wait_serving(self, within: float = 30.0) -> None:
        """Wait (up to `within` seconds) for the port line, then for health SERVING."""
        deadline = time.monotonic() + within
        while not self._found_port():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not start:\n{self.tail()}")
            await asyncio.sleep(0.05)
        await wait_healthy(self.address, deadline - time.monotonic())

    async def serve(self, within: float = 30.0) -> None:
        """Spawn, then wait until it serves."""
        self.spawn()
        await self.wait_serving(within)

    def kill(self) -> None:
        """SIGKILL: no drain, no cleanup, exactly like a crash."""
        if self.running:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
            self.kills += 1

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM (drain), then SIGKILL if it does not exit in time; safe to call twice."""
        if self._process is None:
            return None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode

    def log(self) -> str:
        """Everything the current incarnation has written so far."""
        return self._output().decode(errors="replace")

    def tail(self, lines: int = 40) -> str:
        if self._log_dir is not None and (self._log_path is None or not self._log_path.exists()):
            return "(no log)"
        text = self._output().decode(errors="replace").splitlines()
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
