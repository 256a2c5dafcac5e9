"""`--processes N`: N processes of one server on one port, watched by a parent that serves
no RPC itself.

The parent starts process 1 on the configured address. That one migrates the schema (when
asked to) and binds, so that port 0 becomes a real port; then the parent starts processes
2..N on that port, none of them migrating. Every process binds with SO_REUSEPORT and the
kernel spreads new connections over them; each has its own event loop, database pool and
--workers threads, and runs the service's background loops (the relay's lease lets one
process publish at a time, and the recovery sweep claims rows with a lease, as replicas
on other hosts do). Once all of them serve, the parent says "serving on port P" once.

SIGTERM or SIGINT on the parent drains every process (each its own graceful drain, up to
--grace) and the parent exits 0 when all of them did. A process that dies unexpectedly is
logged and started again on the same port, after a delay that doubles up to a bound. The
processes have their own session, so a Ctrl-C at a terminal reaches only the parent; if
the parent dies, even by SIGKILL, the kernel sends each of them SIGTERM
(servicekit.lifeline), and they also stop when their stdin, a pipe from the parent, ends.

Every log line says which process wrote it: `server_process` in JSON lines (0 is the
parent, 1..N the servers), `name[i]` in text. With --metrics-address the parent serves
/metrics: the processes record their metrics in a private directory (prometheus_client's
multiprocess mode), which the parent sums and removes when it stops.

    python -m servicekit.processes MODULE NAME INDEX PARENT_PID READY_FD

is how the parent starts one process: the server `NAME` found in `MODULE`, its settings
as one JSON line on stdin, the port it serves on written to READY_FD.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib
import json
import logging
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from servicekit import lifeline
from servicekit.config import ConfigError
from servicekit.observability import JsonFormatter, configure_logging
from servicekit.ports import check_port_free, listen_address
from servicekit.server import wait_for_stop_signal

if TYPE_CHECKING:
    from servicekit.app import Server, ServerSettings

log = logging.getLogger("pointsbridge.processes")

# A process that died is started again after this, doubled for each death in a row, up to
# BACKOFF_MAX; one that served for HEALTHY_AFTER seconds starts the count again.
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0
HEALTHY_AFTER = 30.0
# Seconds past --grace that a draining process is given before SIGKILL.
KILL_AFTER = 10.0
POLL = 0.1

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"


def check_processes(settings: ServerSettings) -> None:
    """Refuse a --processes that cannot work, before anything is opened."""
    count = settings.processes
    if count < 1:
        raise ConfigError(f"--processes must be at least 1, got {count}")
    if count > 1 and settings.database_url.startswith("sqlite"):
        raise ConfigError(
            f"--processes {count} needs PostgreSQL: SQLite's group commit needs one writer "
            "process per database; use --processes 1 with SQLite, or a postgresql:// "
            "--database-url"
        )


class _ProcessField(logging.Filter):
    """Names the process on each record: a JSON field, or `name[i]` in text."""

    def __init__(self, index: int, in_name: bool) -> None:
        super().__init__()
        self.index = index
        self.in_name = in_name

    def filter(self, record: logging.LogRecord) -> bool:
        record.server_process = self.index
        if self.in_name and not record.name.endswith("]"):
            record.name = f"{record.name}[{self.index}]"
        return True


def label_logs(index: int) -> None:
    """From now on every log line of this process names it by `index` (0: the parent)."""
    for handler in logging.getLogger().handlers:
        in_name = not isinstance(handler.formatter, JsonFormatter)
        handler.addFilter(_ProcessField(index, in_name))


def _died(returncode: int) -> str:
    if returncode < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-returncode).name}"
    return f"exited with code {returncode}"


# -- one of the processes --------------------------------------------------------------


class Member:
    """What a server process started by the parent does once it serves: say its port, then
    wait for SIGTERM or SIGINT, or for its stdin to end (the parent is gone)."""

    def __init__(self, index: int, ready_fd: int) -> None:
        self.index = index
        self.ready_fd = ready_fd

    async def serving(self, port: int) -> None:
        os.write(self.ready_fd, f"{port}\n".encode())
        os.close(self.ready_fd)
        log.info("process %d serving (pid %d)", self.index, os.getpid())
        loop = asyncio.get_running_loop()
        orphaned = asyncio.Event()

        def readable() -> None:
            try:
                data = os.read(0, 4096)
            except OSError:
                data = b""
            if not data:
                loop.remove_reader(0)
                orphaned.set()

        loop.add_reader(0, readable)
        signalled = asyncio.ensure_future(wait_for_stop_signal())
        parent_gone = asyncio.ensure_future(orphaned.wait())
        try:
            await asyncio.wait({signalled, parent_gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (signalled, parent_gone):
                task.cancel()
            await asyncio.gather(signalled, parent_gone, return_exceptions=True)
            with contextlib.suppress(ValueError, OSError):
                loop.remove_reader(0)
        if orphaned.is_set():
            log.warning("process %d: the parent is gone; stopping", self.index)


def _find_server(module: str, name: str) -> Server[Any]:
    from servicekit.app import Server

    found = vars(importlib.import_module(module)).values()
    for value in found:
        if isinstance(value, Server) and value.name == name:
            return value
    raise SystemExit(f"no server {name!r} in {module}")


def member_main(argv: Sequence[str]) -> int:
    """One server process, started by `Supervisor`."""
    module, name, index_text, parent_text, ready_text = argv
    lifeline.tie_to_parent(int(parent_text))
    data = json.loads(sys.stdin.buffer.readline())
    server = _find_server(module, name)
    settings = server.settings(**data)
    configure_logging(server.name, settings.log_level, settings.log_format)
    index = int(index_text)
    label_logs(index)
    try:
        asyncio.run(server.serve(settings, member=Member(index, int(ready_text))))
    except ConfigError as error:
        server.log.error("%s", error)
        return 2
    return 0


# -- the parent ------------------------------------------------------------------------


@dataclass
class _Slot:
    """Process `index` of N: its current incarnation, if any."""

    index: int
    process: subprocess.Popen[bytes] | None = None
    ready_fd: int | None = None  # until it has said its port
    answer: bytes = b""
    started: float = 0.0
    serving: bool = False
    deaths: int = 0
    restart_at: float | None = None


class Supervisor:
    """Runs `settings.processes` processes of `server` and watches them (module doc)."""

    def __init__(self, server: Server[Any], settings: ServerSettings) -> None:
        self.server = server
        self.settings = settings
        self.address = listen_address(
            settings.address, server.default_port, tls=bool(settings.tls_cert)
        )
        self.slots = [_Slot(i) for i in range(1, settings.processes + 1)]
        self.stopping = False
        self.failed: _Slot | None = None
        self.port = 0
        self.metrics_dir = ""
        self.env = dict(os.environ)
        module = type(server).__module__
        if module == "__main__":  # started as python -m <module>
            spec = getattr(sys.modules["__main__"], "__spec__", None)
            module = spec.name if spec is not None else module
        self.module = module

    # the life of the parent

    def run(self) -> int:
        previous = {
            sig: signal.signal(sig, self._stop_requested) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            return self._run()
        finally:
            self._kill_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if self.metrics_dir:
                shutil.rmtree(self.metrics_dir, ignore_errors=True)

    def _stop_requested(self, signum: int, _frame: Any) -> None:
        self.stopping = True

    def _run(self) -> int:
        check_port_free(self.address)
        if self.settings.metrics_address:
            self._serve_metrics()
        first = self.slots[0]
        self._spawn(first, self.address, migrate=self.settings.migrate)
        if not self._wait_ready([first]):
            return self._abort()
        host = self.address.rpartition(":")[0]
        self.address = f"{host}:{self.port}"
        for slot in self.slots[1:]:
            self._spawn(slot, self.address, migrate=False)
        if not self._wait_ready(self.slots[1:]):
            return self._abort()
        self.server.say_warnings(self.settings)
        self.server.log.info(
            "%s serving on port %d%s, %d processes",
            self.server.name,
            self.port,
            self.server.serving(self.settings),
            len(self.slots),
        )
        self._watch()
        return self._drain()

    def _serve_metrics(self) -> None:
        from prometheus_client import CollectorRegistry, start_http_server
        from prometheus_client.multiprocess import MultiProcessCollector

        address = self.settings.metrics_address
        check_port_free(address, "metrics")
        self.metrics_dir = tempfile.mkdtemp(prefix=f"{self.server.name}-metrics-")
        self.env[MULTIPROC_DIR] = self.metrics_dir
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self.metrics_dir)  # type: ignore[no-untyped-call]
        host, _, port = address.rpartition(":")
        bind = host.strip("[]") or "0.0.0.0"  # noqa: S104
        http, _thread = start_http_server(int(port), addr=bind, registry=registry)
        self.server.log.info("metrics on port %d", http.server_port)

    # the processes

    def _spawn(self, slot: _Slot, address: str, *, migrate: bool) -> None:
        settings = dataclasses.replace(
            self.settings, address=address, migrate=migrate, processes=1, metrics_address=""
        )
        ready_read, ready_write = os.pipe()
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "servicekit.processes",
                self.module,
                self.server.name,
                str(slot.index),
                str(os.getpid()),
                str(ready_write),
            ],
            stdin=subprocess.PIPE,
            pass_fds=(ready_write,),
            env=self.env,
            start_new_session=True,
        )
        os.close(ready_write)
        assert process.stdin is not None
        process.stdin.write(json.dumps(dataclasses.asdict(settings)).encode() + b"\n")
        process.stdin.flush()  # and kept open: its end tells the process the parent is gone
        slot.process, slot.ready_fd, slot.answer = process, ready_read, b""
        slot.started, slot.serving, slot.restart_at = time.monotonic(), False, None

    def _read_ready(self, slot: _Slot, timeout: float) -> bool | None:
        """True once `slot` said its port, False if it ended without, None while waiting."""
        if slot.ready_fd is None:
            return slot.serving
        readable, _, _ = select.select([slot.ready_fd], [], [], timeout)
        if not readable:
            return None
        chunk = os.read(slot.ready_fd, 64)
        slot.answer += chunk
        if chunk and not slot.answer.endswith(b"\n"):
            return None
        os.close(slot.ready_fd)
        slot.ready_fd = None
        if not slot.answer.strip().isdigit():
            return False
        port = int(slot.answer)
        if self.port and port != self.port:  # cannot happen: it was told this port
            raise RuntimeError(f"process {slot.index} serves on port {port}, not {self.port}")
        self.port = port
        slot.serving = True
        return True

    def _wait_ready(self, slots: Sequence[_Slot]) -> bool:
        """Until every one of `slots` serves (True), or one ended first or we were told
        to stop (False)."""
        waiting = list(slots)
        while waiting:
            if self.stopping:
                return False
            for slot in list(waiting):
                ready = self._read_ready(slot, POLL / len(waiting))
                if ready is False:
                    self.failed = slot
                    return False
                if ready:
                    waiting.remove(slot)
        return True

    def _abort(self) -> int:
        """Start-up did not finish: stop what runs; the exit code."""
        failed = self.failed
        if failed is None:  # told to stop while starting
            return self._drain()
        assert failed.process is not None
        code = failed.process.wait()
        self.server.log.error(
            "process %d did not start (it %s); stopping", failed.index, _died(code)
        )
        self._drain()
        return code if code > 0 else 1

    def _watch(self) -> None:
        """Until told to stop: start again whatever process dies."""
        while not self.stopping:
            time.sleep(POLL)
            now = time.monotonic()
            for slot in self.slots:
                if self.stopping:
                    break
                if slot.process is None:
                    if slot.restart_at is not None and now >= slot.restart_at:
                        self._spawn(slot, self.address, migrate=False)
                    continue
                code = slot.process.poll()
                if code is None:
                    if slot.ready_fd is not None and self._read_ready(slot, 0):
                        self.server.log.info(
                            "process %d serving again (pid %d)", slot.index, slot.process.pid
                        )
                    continue
                self._buried(slot, code, now)

    def _buried(self, slot: _Slot, code: int, now: float) -> None:
        assert slot.process is not None
        pid = slot.process.pid
        self._forget(slot)
        if now - slot.started >= HEALTHY_AFTER:
            slot.deaths = 0
        delay = min(BACKOFF_FIRST * 2**slot.deaths, BACKOFF_MAX)
        slot.deaths += 1
        slot.restart_at = now + delay
        self.server.log.error(
            "process %d (pid %d) %s; starting it again in %.1f s",
            slot.index,
            pid,
            _died(code),
            delay,
        )

    def _forget(self, slot: _Slot) -> None:
        """The incarnation of `slot` has ended: release what it was given."""
        if slot.process is not None:
            if self.metrics_dir:
                from prometheus_client.multiprocess import mark_process_dead

                mark_process_dead(slot.process.pid, self.metrics_dir)  # type: ignore[no-untyped-call]
            if slot.process.stdin is not None:
                with contextlib.suppress(OSError):
                    slot.process.stdin.close()
        if slot.ready_fd is not None:
            os.close(slot.ready_fd)
            slot.ready_fd = None
        slot.process, slot.serving = None, False

    def _drain(self) -> int:
        """SIGTERM every process and wait for each to drain; 0 if every one did."""
        running = [s for s in self.slots if s.process is not None and s.process.poll() is None]
        grace = self.settings.grace
        if running:
            self.server.log.info("draining %d processes for up to %.1f s", len(running), grace)
        for slot in running:
            assert slot.process is not None
            slot.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace + KILL_AFTER
        clean = True
        for slot in self.slots:
            if slot.process is None:
                continue
            process = slot.process
            try:
                code = process.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                process.kill()
                code = process.wait()
            # One still starting has no calls to drain: SIGTERM may end it at once.
            unstarted = not slot.serving and code == -signal.SIGTERM
            if code != 0 and slot in running and not unstarted:
                clean = False
                self.server.log.error(
                    "process %d (pid %d) %s", slot.index, process.pid, _died(code)
                )
            self._forget(slot)
            slot.restart_at = None
        self.server.log.info("stopped")
        return 0 if clean else 1

    def _kill_all(self) -> None:
        for slot in self.slots:
            if slot.process is not None and slot.process.poll() is None:
                slot.process.kill()
                slot.process.wait()
            self._forget(slot)


def supervise(server: Server[Any], settings: ServerSettings) -> int:
    """Run `settings.processes` processes of `server` until SIGTERM or SIGINT; the exit code."""
    label_logs(0)
    return Supervisor(server, settings).run()


if __name__ == "__main__":
    from servicekit.processes import member_main as _member_main

    sys.exit(_member_main(sys.argv[1:]))
