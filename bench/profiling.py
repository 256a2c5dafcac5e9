"""Where the servers' CPU goes: py-spy samples of the running processes, summed by category."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# A sample belongs to the first category (in this order) that any of its frames matches,
# looking from the innermost frame outwards: the innermost match names the work, so a
# sqlite3 commit inside SQLAlchemy inside a use case is "SQLite: commit (fsync)".
CATEGORIES: Sequence[tuple[str, Sequence[str]]] = (
    ("SQLite: commit (fsync)", ("commit (sqlite3", "commit (<built-in>", "_do_commit")),
    ("SQLite: execute", ("execute (sqlite3", "do_execute (sqlalchemy/engine/default.py")),
    ("PostgreSQL: psycopg (wait/execute)", ("psycopg/",)),
    ("JWT ES256 verify", ("jwt/", "cryptography/")),
    ("logging (JSON lines, redaction)", ("logging/", "json/", "Formatter.format (", "redact (")),
    ("Prometheus metrics", ("prometheus_client/",)),
    ("SQLAlchemy ORM/Core (Python)", ("sqlalchemy/",)),
    ("protobuf (de)serialisation", ("google/protobuf/", "_pb2")),
    ("gRPC + asyncio (server and channel)", ("grpc/", "grpc_", "asyncio/", "cygrpc")),
    ("thread pool handoff", ("concurrent/futures", "threading.py")),
    # The per-call wrapper's own frames: mostly the wait in sending the x-request-id
    # header, a gRPC operation of its own on every call.
    ("RPC duties (request id header, caller check, RPC metrics)", ("with_duties.",)),
    ("service code (domain, use cases, servicers)", ("cardpoints/", "ecommerce/", "servicekit/")),
)
OTHER = "other"
RATE = 200  # samples a second


def py_spy() -> str | None:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return found if Path(found).exists() else None


def start_recording(
    pid: int, seconds: float, output: Path, rate: int = RATE, gil: bool = True
) -> subprocess.Popen[bytes]:
    """py-spy record of one process, in collapsed-stack form, without pausing it.

    With `gil`, only the thread holding the GIL is sampled: what the process spends its
    one Python core on. Threads waiting on a lock, a commit or the GIL are left out."""
    spy = py_spy()
    if spy is None:
        raise FileNotFoundError("py-spy is not installed (pip install py-spy)")
    return subprocess.Popen(
        [
            spy,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(max(1, round(seconds))),
            "--rate",
            str(rate),
            "--format",
            "raw",
            "--nonblocking",
            *(["--gil"] if gil else []),
            "--output",
            str(output),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )


def categorize(frames: Sequence[str]) -> str:
    for frame in reversed(frames):
        for name, needles in CATEGORIES:
            if any(needle in frame for needle in needles):
                return name
    return OTHER


def summarize(collapsed: Path, top: int = 12) -> dict[str, Any]:
    """Shares of on-CPU samples by category, and the functions with the most self time."""
    by_category: Counter[str] = Counter()
    by_leaf: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += count
        by_category[categorize(frames)] += count
        by_leaf[frames[-1]] += count
    if not total:
        return {"samples": 0, "categories": {}, "top_self": []}
    return {
        "samples": total,
        "categories": {k: round(100 * v / total, 1) for k, v in by_category.most_common()},
        "top_self": [
            {"frame": frame, "percent": round(100 * count / total, 1)}
            for frame, count in by_leaf.most_common(top)
        ],
    }
