"""The benchmark's verdicts: each target, the measured pairs it divides, and its limit."""

from __future__ import annotations

import statistics
from typing import Any

# The baselines every target divides by (bench/echo.py), and the project's plumbing with
# nothing behind it (bench/empty.py), an extra row divided by the same baselines.
CHAIN, HOP = "echo-2hop", "echo-1hop"
PLUMBING_CHAIN, PLUMBING_HOP = "empty-2hop", "empty-1hop"
# The bare work of each RPC with no project code, on SQLite and PostgreSQL: DeductPoints
# (bench/lean.py) and the redemption chain in front of it (bench/lean_chain.py).
LEAN, LEAN_REDEEM = "lean-deduct", "lean-redeem"
LEAN_OF = {"deduct": LEAN, "redeem": LEAN_REDEEM}
BASELINE_OF = {"redeem": CHAIN, "deduct": HOP, LEAN: HOP, LEAN_REDEEM: CHAIN}
SHOWN_AGAINST = {
    **BASELINE_OF,
    PLUMBING_CHAIN: CHAIN,
    PLUMBING_HOP: HOP,
    PLUMBING_CHAIN + "-bare": CHAIN,
    PLUMBING_HOP + "-bare": HOP,
}
RPC_NAMES = {
    "redeem": "RedeemPoints",
    "deduct": "DeductPoints",
    CHAIN: "bare echo 2-hop chain",
    HOP: "bare echo server",
    PLUMBING_CHAIN: "plumbing only, 2-hop chain",
    PLUMBING_HOP: "plumbing only, 1-hop",
    PLUMBING_CHAIN + "-bare": "plumbing only, 2-hop chain, no auth",
    PLUMBING_HOP + "-bare": "plumbing only, 1-hop, no auth",
    LEAN: "bare-work DeductPoints (no project code)",
    LEAN_REDEEM: "bare-work RedeemPoints chain (no project code)",
}
SOAK_RSS_LIMIT_MB = 150.0
SOAK_GROWTH_LIMIT_MB = 3.0
# The load of the targets, and the label of the extra (baseline, service) pairs measured
# at it: "repeat 2", "repeat 3", ...
TARGETS_AT = 64
REPEAT = "repeat"
LEAN_PAIR = "bare work"  # the label of each (echo, bare-work server) pair


def find(
    result: dict[str, Any], scenario: str, db: str | None, concurrency: int, replicas: int = 1
) -> dict[str, Any] | None:
    """The matrix row (unlabelled) of one scenario, database and load."""
    for row in result.get("runs", []):
        if (
            row["scenario"] == scenario
            and row["db"] == db
            and row["concurrency"] == concurrency
            and row["replicas"] == replicas
            and not row.get("label")
        ):
            found: dict[str, Any] = row
            return found
    return None


def ratio(a: dict[str, Any] | None, b: dict[str, Any] | None, key: str) -> float | None:
    if a is None or b is None or not a.get(key) or not b.get(key):
        return None
    return round(float(a[key]) / float(b[key]), 3)


def _target(
    name: str, value: float | None, op: str, limit: float, unit: str = ""
) -> dict[str, Any]:
    met = None if value is None else (value >= limit if op == ">=" else value <= limit)
    return {"name": name, "value": value, "op": op, "limit": limit, "unit": unit, "met": met}


def _pairs(result: dict[str, Any], scenario: str, db: str, at: int, key: str) -> list[float]:
    """The ratio of each (service, baseline) pair: the matrix's, then each repeat's."""
    base = BASELINE_OF[scenario]
    labels = {
        row.get("label", "")
        for row in result.get("runs", [])
        if row["scenario"] == scenario
        and (not row.get("label") or str(row["label"]).startswith((REPEAT + " ", LEAN_PAIR)))
    }
    ratios = []
    for label in sorted(labels, key=lambda text: (len(text), text)):
        rows = {
            row["scenario"]: row
            for row in result.get("runs", [])
            if row["db"] == db
            and row["concurrency"] == at
            and row["replicas"] == 1
            and row.get("label", "") == label
            and row["scenario"] in (scenario, base)
        }
        pair = ratio(rows.get(scenario), rows.get(base), key)
        if pair is not None:
            ratios.append(pair)
    return ratios


def _median_of_pairs(
    result: dict[str, Any],
    name: str,
    scenario: str,
    db: str,
    key: str,
    op: str,
    limit: float,
    at: int,
) -> dict[str, Any]:
    ratios = _pairs(result, scenario, db, at, key)
    value = round(statistics.median(ratios), 3) if ratios else None
    target = _target(f"{name}, {at} in flight", value, op, limit)
    target["pairs"] = ratios
    return target


def targets(result: dict[str, Any], at: int = TARGETS_AT) -> list[dict[str, Any]]:
    chain, hop = RPC_NAMES[CHAIN], RPC_NAMES[HOP]
    paired: tuple[tuple[str, str, str, str, str, float], ...] = (
        # name, scenario, database, measure, operator, limit
        (f"SQLite RedeemPoints throughput / {chain}", "redeem", "sqlite", "throughput", ">=", 0.60),
        (f"SQLite DeductPoints throughput / {hop}", "deduct", "sqlite", "throughput", ">=", 0.70),
        (f"SQLite RedeemPoints p99 / {chain} p99", "redeem", "sqlite", "p99_ms", "<=", 3.0),
        (f"PostgreSQL DeductPoints / {hop}", "deduct", "postgres", "throughput", ">=", 0.55),
        (f"PostgreSQL RedeemPoints / {chain}", "redeem", "postgres", "throughput", ">=", 0.50),
    )
    measured = {(row["scenario"], row["db"]) for row in result.get("runs", [])}
    out = []
    for name, scenario, db, key, op, limit in paired:
        out.append(_median_of_pairs(result, name, scenario, db, key, op, limit, at))
        # Beside each target, when it ran: the same ratio of the server that does only
        # the bare work of the RPC, which says whether the target is within reach at all.
        lean = LEAN_OF[scenario]
        if (lean, db) in measured:
            reference = "Reference, not a target: " + name.replace(
                RPC_NAMES[scenario], RPC_NAMES[lean], 1
            )
            out.append(_median_of_pairs(result, reference, lean, db, key, op, limit, at))
    growth = result.get("growth")
    if growth:
        name = "Growth: RedeemPoints at 1M accounts, 2M coupons / at 10k accounts"
        out.append(_target(name, growth["ratio"], ">=", 0.85))
    soak = result.get("soak")
    if soak:
        for name, peak in soak["peak_rss_mb"].items():
            out.append(_target(f"Soak: peak RSS of {name}", peak, "<=", SOAK_RSS_LIMIT_MB, " MB"))
        for name, trend in soak["trend"].items():
            out.append(
                _target(
                    f"Soak: {name} RSS growth over the last half (least squares)",
                    trend.get("fitted_growth_mb"),
                    "<=",
                    SOAK_GROWTH_LIMIT_MB,
                    " MB",
                )
            )
    checks = [
        ("SQLite", result.get("invariants_sqlite")),
        ("growth", growth["invariants"] if growth else None),
        ("PostgreSQL, 1 and 2 processes", result.get("invariants_postgres")),
    ]
    for name, invariants in checks:
        if invariants is not None:
            ok = 1.0 if invariants.get("ok") else 0.0
            out.append(_target(f"Invariants hold: {name}", ok, ">=", 1.0))
    return out
