"""The long sections of the bench: py-spy profiles, growth to 1M accounts, and the soak."""

from __future__ import annotations

import random
import shutil
import statistics
import subprocess
import time
from collections.abc import Sequence
from contextlib import ExitStack
from typing import Any

from bench import profiling
from bench.harness import Harness, log, verdict
from bench.load import DEDUCT, REDEEM
from bench.seed import check_invariants
from bench.stack import ROOT, Databases, Server, fresh_databases, rss_mb


def profile(bench: Harness, cardpoints: Server, ecommerce: Server) -> None:
    """py-spy on the servers under RedeemPoints, then on cardpoints under DeductPoints."""
    if profiling.py_spy() is None:
        bench.extra["profile"] = {"error": "py-spy is not installed"}
        return
    bench.extra["profile"] = _profile(
        bench, "redeem", REDEEM, ecommerce, {"ecommerce": ecommerce, "cardpoints": cardpoints}
    )
    bench.extra["profile_deduct"] = _profile(
        bench, "deduct", DEDUCT, cardpoints, {"cardpoints": cardpoints}
    )


def _profile(
    bench: Harness, scenario: str, method: str, target: Server, servers: dict[str, Server]
) -> dict[str, Any]:
    seconds = bench.options.profile_seconds
    log(f"py-spy on {', '.join(servers)} for {seconds:.0f} s ({method}, 64 in flight)")
    outputs = {name: bench.workdir / f"profile-{scenario}-{name}.txt" for name in servers}
    spies = {
        name: profiling.start_recording(servers[name].pid, seconds + 1, path)
        for name, path in outputs.items()
    }
    try:
        row = bench.measure(
            scenario,
            "sqlite",
            method,
            [target.address],
            servers,
            64,
            bench.all_customers(),
            label="under py-spy",
            warmup=0.5,
            duration=seconds,
        )
    finally:
        for spy in spies.values():
            try:
                spy.wait(seconds + 30)
            except subprocess.TimeoutExpired:
                spy.kill()
                spy.wait()
    result: dict[str, Any] = {
        "rpc": method,
        "seconds": seconds,
        "rate_hz": profiling.RATE,
        "mode": "GIL holder only (py-spy --gil)",
        "throughput_under_profiler": row["throughput"],
    }
    for name, path in outputs.items():
        if path.exists() and path.stat().st_size:
            result[name] = profiling.summarize(path)
            keep = ROOT / "bench" / "results" / path.name
            keep.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, keep)
        else:
            stderr = spies[name].stderr
            why = stderr.read().decode(errors="replace")[-500:] if stderr else "no output"
            result[name] = {"error": why}
    return result


def growth(bench: Harness, small_cp: Server, small_ec: Server) -> None:
    """RedeemPoints on 10k accounts against 1M accounts and 2M issued coupons, in
    alternating windows so that the machine's background load hits both alike."""
    accounts = bench.options.growth_accounts
    history = bench.options.growth_coupons // 2
    with ExitStack() as stack:
        dbs = stack.enter_context(
            fresh_databases("sqlite", bench.workdir, "growth", bench.options.pg_url)
        )
        log(f"growth: seeding {accounts:,} accounts and {history * 2:,} issued coupons")
        timings = bench.prepare(dbs, accounts, history=history)
        log(f"growth: seeded in {timings}")
        (big_cp,), (big_ec,) = bench.services(stack, dbs, "growth")
        rng = random.Random(7)
        sample = sorted(rng.sample(range(1, accounts + 1), min(accounts, bench.options.accounts)))
        big_customers = bench.customers(sample)
        small, big = [], []
        for _ in range(2):
            small.append(
                bench.redeem([small_cp], [small_ec], 64, "sqlite", label="growth: 10k accounts")[
                    "throughput"
                ]
            )
            big.append(
                bench.redeem([big_cp], [big_ec], 64, "sqlite", big_customers, label="growth: 1M")[
                    "throughput"
                ]
            )
        big_ec.stop()
        big_cp.stop()
        invariants = check_invariants(dbs)
    bench.extra["growth"] = {
        "accounts": accounts,
        "issued_coupons": history * 2,
        "seed": timings,
        "small_throughput": small,
        "large_throughput": big,
        "ratio": round(statistics.fmean(big) / statistics.fmean(small), 3),
        "invariants": invariants,
    }
    log(f"growth invariants: {verdict(invariants)}")


def soak(bench: Harness, stack: ExitStack, dbs: Databases) -> None:
    total = bench.options.soak_redemptions
    log(f"soak: {total:,} RedeemPoints at 64 in flight on fresh server processes")
    (cardpoints,), (ecommerce,) = bench.services(stack, dbs, "soak")
    samples: list[dict[str, float]] = []
    started = time.monotonic()

    def tick() -> None:
        now = time.monotonic() - started
        if samples and now - samples[-1]["t"] < 1.0:
            return
        samples.append(
            {
                "t": round(now, 2),
                "ecommerce": round(rss_mb(ecommerce.pid), 1),
                "cardpoints": round(rss_mb(cardpoints.pid), 1),
            }
        )

    row = bench.redeem(
        [cardpoints], [ecommerce], 64, "sqlite", label="soak", calls=total, on_tick=tick
    )
    tick()
    ecommerce.stop()
    cardpoints.stop()
    bench.extra["soak"] = {
        "redemptions": total,
        "completed": row["completed"],
        "errors": row["errors"],
        "throughput": row["throughput"],
        "peak_rss_mb": row["peak_rss_mb"],
        "samples": samples,
        "trend": {name: _trend(samples, name) for name in ("ecommerce", "cardpoints")},
    }


def _trend(samples: Sequence[dict[str, float]], name: str) -> dict[str, float]:
    """Least-squares slope of RSS over the second half of the soak, and what it adds up to."""
    half = [s for s in samples if s["t"] >= samples[-1]["t"] / 2] if samples else []
    if len(half) < 3:
        return {"samples": len(half)}
    xs, ys = [s["t"] for s in half], [s[name] for s in half]
    slope = statistics.linear_regression(xs, ys).slope
    span = xs[-1] - xs[0]
    return {
        "samples": len(half),
        "start_mb": ys[0],
        "end_mb": ys[-1],
        "max_mb": max(ys),
        "slope_mb_per_min": round(slope * 60, 3),
        "fitted_growth_mb": round(slope * span, 2),
    }
