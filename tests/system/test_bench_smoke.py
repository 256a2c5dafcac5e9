"""`make bench` in its smoke mode: only that the harness works and its JSON is well-formed.

No timing is asserted: the real figures come from the full run (docs/PERFORMANCE.md).
A smoke window is a count of calls, not a fraction of a second, so what it completes
does not depend on how busy the machine is.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from bench.options import parse_options
from tests.support import ROOT

SCENARIOS = {"echo-1hop", "echo-2hop", "deduct", "redeem"}
PLUMBING = {"empty-1hop", "empty-2hop"}  # once, at the highest load


@pytest.mark.timeout(150)
def test_the_smoke_run_writes_a_well_formed_result(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=140,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]
    result = json.loads(out.read_text())

    assert result["schema"] == "pointsbridge-bench/1"
    assert result["mode"] == "smoke"
    assert "incomplete" not in result
    runs = result["runs"]
    concurrency = result["settings"]["concurrency"]
    per_window = parse_options(["--smoke", "--out", str(out)]).window_calls
    assert per_window > 0
    assert {(r["scenario"], r["concurrency"]) for r in runs} == {
        (s, c) for s in SCENARIOS for c in concurrency
    } | {(s, max(concurrency)) for s in PLUMBING}
    for run in runs:
        assert run["db"] == "sqlite"
        assert run["completed"] == max(per_window, run["concurrency"]), run
        assert run["errors"] == {}, run
        assert run["throughput"] > 0
        for key in ("p50_ms", "p99_ms", "p999_ms"):
            assert isinstance(run[key], float) and math.isfinite(run[key]), (key, run)
        assert run["p50_ms"] <= run["p99_ms"] <= run["p999_ms"]
        assert "load generator" in run["cpu_ms_per_call"]
        servers = set(run["peak_rss_mb"])
        assert servers and servers <= set(run["cpu_ms_per_call"])
        assert all(mb > 0 for mb in run["peak_rss_mb"].values())
    redeem = next(r for r in runs if r["scenario"] == "redeem")
    assert set(redeem["peak_rss_mb"]) == {"ecommerce", "cardpoints"}

    invariants = result["invariants_sqlite"]
    assert invariants["ok"], invariants
    # Warmup calls are not in the windows, but they are in the database.
    windowed = sum(r["completed"] for r in runs if r["scenario"] == "redeem")
    assert invariants["completed_redemptions"] >= windowed
    names = {t["name"] for t in result["targets"]}
    assert any(name.startswith("SQLite RedeemPoints throughput") for name in names)
    # The table `make bench` prints.
    assert "| database | in flight | RPC | calls/s |" in done.stdout
