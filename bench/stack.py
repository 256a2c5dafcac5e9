"""What a benchmark run stands on: its credentials and fresh databases, the server
processes with their CPU and memory read from /proc, and how each is started."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Self

from bench.seed import account_id, customer_id
from servicekit.auth import ROLE_CUSTOMER
from servicekit.devtools import databases
from servicekit.devtools.credentials import Credentials
from servicekit.devtools.databases import PG_URL as DEFAULT_PG_URL
from servicekit.devtools.databases import Databases
from servicekit.devtools.launch import (
    LOCALHOST,
    ROOT,
    ServiceProcess,
    cardpoints_command,
    ecommerce_command,
    python_module,
)

__all__ = ["DEFAULT_PG_URL", "ROOT", "Databases", "Keys", "Server", "fresh_databases"]

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
TTL = 6 * 3600  # every token of a run outlives it


class Keys(Credentials):
    """The run's credentials (a signing key for this run only), and its customers' tokens."""

    @classmethod
    def create(cls, workdir: Path) -> Self:
        return cls.ensure(workdir, service_ttl=TTL)

    def customer_tokens(self, indexes: Sequence[int]) -> list[tuple[str, str, str]]:
        """(customer id, card account id, bearer token) of each customer, minted up front."""
        return [
            (customer_id(i), account_id(i), self.issue(customer_id(i), ROLE_CUSTOMER, ttl=TTL))
            for i in indexes
        ]


def fresh_databases(
    kind: str, workdir: Path, name: str, pg_url: str
) -> AbstractContextManager[Databases]:
    """Two empty databases for one part of the run: SQLite files under `workdir/name`, or
    PostgreSQL databases made on the server of `pg_url` and dropped after it."""
    return databases.fresh_databases(kind, workdir / name, f"bench_{name}", pg_url)


# ---------------------------------------------------------------- processes


def _read_stat(pid: int) -> tuple[float, float]:
    """(CPU seconds used, resident MB) of one process."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return cpu, int(fields[21]) * PAGE_KB / 1024


def cpu_seconds(pid: int) -> float:
    try:
        return _read_stat(pid)[0]
    except (FileNotFoundError, ProcessLookupError):
        return 0.0


def rss_mb(pid: int) -> float:
    try:
        return _read_stat(pid)[1]
    except (FileNotFoundError, ProcessLookupError):
        return 0.0


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the most memory the process has ever had resident."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return 0.0


def process_tree(pid: int) -> list[int]:
    """`pid` and every process below it (a server's --processes, for one)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii") as stat:
                parent = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
            continue
        children.setdefault(parent, []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, ()))
    return tree


def postgres_cpu_seconds() -> float:
    """CPU of every postgres process on the machine (the server is shared; approximate)."""
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/comm", encoding="ascii") as comm:
                if comm.read().strip() != "postgres":
                    continue
            total += _read_stat(int(entry))[0]
        except (FileNotFoundError, ProcessLookupError, PermissionError, ValueError):
            continue
    return total


def machine_busy_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    with open("/proc/stat", encoding="ascii") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    idle = values[3] + values[4]
    total = sum(values[:8])
    return (total - idle) / CLOCK_TICKS, total / CLOCK_TICKS


class Server(ServiceProcess):
    """One server as an OS process on a port it picks, started at once; ended with us."""

    def __init__(self, name: str, argv: Sequence[str], log_dir: Path) -> None:
        super().__init__(name, argv, log_dir)
        self.spawn()

    def wait_ready(self, timeout: float = 60) -> Server:
        self.wait_port(timeout)
        return self

    def tree(self) -> list[int]:
        """The server's processes: with --processes N, the parent and its N children."""
        return process_tree(self.pid)

    def cpu(self) -> float:
        """CPU seconds of every live process of the server."""
        return sum(cpu_seconds(pid) for pid in self.tree())

    def peak_rss_mb(self) -> float:
        """The largest process's VmHWM (the per-process figure the RSS target is about)."""
        return max(peak_rss_mb(pid) for pid in self.tree())


def cardpoints_argv(keys: Keys, database_url: str, *extra: str) -> list[str]:
    return cardpoints_command(database_url, *keys.server_flags, *extra)(f"{LOCALHOST}:0")


def ecommerce_argv(keys: Keys, database_url: str, cardpoints: str, *extra: str) -> list[str]:
    command = ecommerce_command(database_url, cardpoints, *keys.ecommerce_flags, *extra)
    return command(f"{LOCALHOST}:0")


def echo_argv(role: str, *extra: str) -> list[str]:
    return python_module("bench.echo", role, *extra)


def lean_store(database: Path | str) -> tuple[str, str]:
    """The store flag of a bare-work server: a SQLite file, or a PostgreSQL database URL."""
    if isinstance(database, Path):
        return ("--database", str(database))
    return ("--postgres", database)


def lean_argv(database: Path | str, accounts: int) -> list[str]:
    """The bare-work DeductPoints server (bench/lean.py)."""
    return python_module("bench.lean", *lean_store(database), "--accounts", str(accounts))


def lean_chain_argv(database: Path | str, accounts: int, deduct: str) -> list[str]:
    """The bare redemption chain (bench/lean_chain.py) in front of the server at `deduct`."""
    return python_module(
        "bench.lean_chain", *lean_store(database), "--accounts", str(accounts), "--next", deduct
    )


def empty_argv(keys: Keys, role: str, *extra: str) -> list[str]:
    return python_module("bench.empty", role, "--token-public-key", str(keys.public_key), *extra)


def migrate(service: str, database_url: str) -> None:
    module = f"{service}.entrypoints.server"
    subprocess.run(
        python_module(
            module, "--migrate-only", "--database-url", database_url, "--log-level", "WARNING"
        ),
        check=True,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
    )
