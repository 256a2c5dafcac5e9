"""Servers on a taken port, and `make run`'s children when their supervisor is killed."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.auth import Callers
from tests.support import ROOT
from tests.system.devstack import DevStack


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


def _run(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


@pytest.mark.parametrize("flag", ["--address", "--metrics-address"])
@pytest.mark.parametrize(
    "module, flags",
    [
        ("cardpoints.entrypoints.server", "server_flags"),
        ("ecommerce.entrypoints.server", "ecommerce_flags"),
    ],
)
def test_a_taken_port_is_named_in_one_line_and_the_server_exits_non_zero(
    module: str, flags: str, flag: str, taken_port: int, tmp_path: Path, auth: Callers
) -> None:
    other = "--metrics-address" if flag == "--address" else "--address"
    done = _run(
        module,
        *getattr(auth, flags),
        "--database-url",
        f"sqlite:///{tmp_path / 'db.sqlite'}",
        "--log-format",
        "text",
        flag,
        f"127.0.0.1:{taken_port}",
        *([other, "127.0.0.1:0"]),
    )
    assert done.returncode == 2
    output = done.stdout + done.stderr
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if " ERROR " in line or line.startswith("E")]
    assert len(errors) == 1, output
    assert f"port {taken_port} is already in use" in errors[0]


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; only its exit status is left


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_the_services_end_and_free_their_ports_when_the_supervisor_is_sigkilled(
    tmp_path: Path,
) -> None:
    stack = DevStack(tmp_path / "var")
    children = _children(stack.process.pid)
    ports = [
        stack.cardpoints_port,
        stack.ecommerce_port,
        stack.cardpoints_metrics,
        stack.ecommerce_metrics,
        int(stack.storefront_url.rsplit(":", 1)[1]),
    ]
    try:
        # cardpoints, ecommerce and the storefront
        assert len(children) == 3
        assert all(_accepts(port) for port in ports)
        # Each child keeps a session (and process group) of its own.
        assert all(os.getsid(child) == child for child in children)
        stack.process.send_signal(signal.SIGKILL)
        stack.process.wait(10)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (
            any(_alive(child) for child in children) or any(_accepts(port) for port in ports)
        ):
            time.sleep(0.1)
        assert not [child for child in children if _alive(child)]
        assert not [port for port in ports if _accepts(port)]
    finally:
        for child in children:
            if _alive(child):
                os.kill(child, signal.SIGKILL)
        stack.stop()


def test_make_run_on_a_taken_port_names_it_and_exits_non_zero(
    taken_port: int, tmp_path: Path
) -> None:
    done = _run(
        "pointsbridge_cli.devstack",
        "run",
        "--var",
        str(tmp_path / "var"),
        "--cardpoints-port",
        str(taken_port),
        "--ecommerce-port",
        "0",
        "--cardpoints-metrics-port",
        "0",
        "--ecommerce-metrics-port",
        "0",
    )
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "Traceback" not in output
    assert f"port {taken_port} is already in use" in output
    assert "cardpoints did not start (exit code 2)" in output
