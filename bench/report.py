"""The benchmark's Markdown: the tables `make bench` prints, and docs/PERFORMANCE.md,
whose hand-written analysis is kept between its markers."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.verdicts import RPC_NAMES, SHOWN_AGAINST, find, ratio

ANALYSIS_START = "<!-- analysis:start -->"
ANALYSIS_END = "<!-- analysis:end -->"
DASH = "-"


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return DASH
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _list(values: Sequence[float]) -> str:
    return ", ".join(_fmt(v, 0) for v in values)


def _services_cell(row: dict[str, Any]) -> tuple[str, str]:
    """(CPU ms per call of each server, peak RSS MB of each server)."""
    cpu, rss = row["cpu_ms_per_call"], row["peak_rss_mb"]
    names = {
        "redeem": [("ecommerce", "ecommerce"), ("cardpoints", "cardpoints")],
        "deduct": [("cardpoints", "cardpoints")],
    }.get(row["scenario"])
    if names is None:
        names = [("chain", "A"), ("leaf", "B")] if "chain" in cpu else [("leaf", "B")]
    services = " / ".join(f"{label} {_fmt(cpu.get(key), 2)}" for key, label in names)
    if cpu.get("postgres") is not None:
        services += f" / postgres {_fmt(cpu['postgres'], 2)}"
    return services, " / ".join(_fmt(rss.get(key)) for key, _ in names)


def throughput_table(result: dict[str, Any]) -> str:
    lines = [
        "| database | in flight | RPC | calls/s | vs baseline | p50 ms | p99 ms | p99.9 ms "
        "| CPU ms per call, by server | load gen | peak RSS MB |",
        "|---|---:|---|---:|---:|---:|---:|---:|---|---:|---|",
    ]
    for row in result.get("runs", []):
        if row.get("label"):
            continue
        scenario = row["scenario"]
        against = None
        if scenario in SHOWN_AGAINST:
            base = find(result, SHOWN_AGAINST[scenario], row["db"], row["concurrency"])
            against = ratio(row, base, "throughput")
        services, rss = _services_cell(row)
        errors = f" ({sum(row['errors'].values())} errors)" if row["errors"] else ""
        lines.append(
            f"| {row['db']} | {row['concurrency']} | {RPC_NAMES.get(scenario, scenario)}{errors} "
            f"| {_fmt(row['throughput'], 0)} | {_fmt(against, 2) if against is not None else ''} "
            f"| {_fmt(row['p50_ms'], 2)} | {_fmt(row['p99_ms'], 2)} | {_fmt(row['p999_ms'], 2)} "
            f"| {services} | {_fmt(row['cpu_ms_per_call'].get('load generator'), 2)} | {rss} |"
        )
    return "\n".join(lines)


def targets_table(result: dict[str, Any]) -> str:
    lines = ["| target | measured | required | met |", "|---|---:|---:|:---:|"]
    for t in result.get("targets", []):
        verdict = {True: "yes", False: "**no**", None: "not measured"}[t["met"]]
        value, unit = _fmt(t["value"], 2), t["unit"]
        if len(t.get("pairs", ())) > 1:
            value += f" (median of {', '.join(_fmt(p, 2) for p in t['pairs'])})"
        lines.append(f"| {t['name']} | {value}{unit} | {t['op']} {t['limit']}{unit} | {verdict} |")
    return "\n".join(lines)


def limits_table(result: dict[str, Any]) -> str:
    limits = result.get("limits")
    if not limits:
        return ""
    commit = limits["sqlite_one_row_commit"]
    statement, deduction = limits["statement"], limits["deduction"]
    rows = [
        ("write + fsync of 4 KiB (the disk under the databases)", limits["fsync_4k"]),
        ("SQLite one-row commit, WAL, synchronous=FULL", commit["FULL"]),
        ("SQLite one-row commit, WAL, synchronous=NORMAL (no fsync)", commit["NORMAL"]),
        ("ES256 token verification (PyJWT + cryptography)", limits["jwt"]["es256_verify"]),
        ("the same token, remembered by TokenVerifier", limits["jwt"]["cached_verify"]),
        ("SELECT by key, SQLAlchemy Core, statement built once", statement["sqlalchemy_core"]),
        *(
            [("the same, compiled once, on the DBAPI cursor", statement["compiled"])]
            if "compiled" in statement
            else []
        ),
        ("the same SELECT on the raw sqlite3 cursor", statement["raw_sqlite3"]),
        ("`await Database.run(...)` of nothing (thread pool hop)", limits["thread_handoff"]),
        ("deduct_points use case: one durable unit of work", deduction["use_case"]),
        (
            "its 5 statements and commit on the raw sqlite3 cursor",
            deduction["same_sql_raw_sqlite3"],
        ),
    ]
    lines = ["| one ... | wall µs | CPU µs |", "|---|---:|---:|"]
    lines += [f"| {name} | {_fmt(v['wall_us'])} | {_fmt(v['cpu_us'])} |" for name, v in rows]
    drivers = limits.get("drivers_tx_per_s", {})
    lines.append(
        "\nbench/drivers.py, deduction-shaped transactions through SQLAlchemy, one connection: "
        f"SQLite (synchronous=FULL) {_fmt(drivers.get('sqlite_sync'))}/s, PostgreSQL "
        f"{_fmt(drivers.get('postgres_sync'))}/s."
    )
    return "\n".join(lines)


def extras_tables(result: dict[str, Any]) -> str:
    parts: list[str] = []
    growth = result.get("growth")
    if growth:
        parts.append(
            "| growth: SQLite, RedeemPoints, 64 in flight | calls/s, alternating windows |\n"
            "|---|---|\n"
            f"| 10k accounts | {_list(growth['small_throughput'])} |\n"
            f"| {growth['accounts']:,} accounts and {growth['issued_coupons']:,} issued coupons "
            f"| {_list(growth['large_throughput'])} |\n"
            f"| ratio of the means | {_fmt(growth['ratio'], 3)} |\n\n"
            "Seeded with INSERT ... SELECT after the migrations, outside the timed part: "
            + ", ".join(f"{k.removesuffix('_s')} {v} s" for k, v in growth["seed"].items())
            + "."
        )
    soak = result.get("soak")
    if soak:
        rows = [
            f"| {name} | {_fmt(soak['peak_rss_mb'].get(name))} | {_fmt(t.get('start_mb'))} to "
            f"{_fmt(t.get('end_mb'))} | {_fmt(t.get('slope_mb_per_min'), 2)} "
            f"| {_fmt(t.get('fitted_growth_mb'), 2)} |"
            for name, t in soak["trend"].items()
        ]
        errors = f", {sum(soak['errors'].values())} errors" if soak.get("errors") else ""
        parts.append(
            f"Soak: {soak['completed']:,} RedeemPoints at 64 in flight on fresh SQLite server "
            f"processes, {_fmt(soak['throughput'], 0)} calls/s{errors}; RSS read from /proc "
            f"every second ({len(soak['samples'])} samples).\n\n"
            "| server | peak RSS MB (VmHWM) | RSS over the last half, MB | slope MB/min "
            "| fitted growth over the last half, MB |\n|---|---:|---|---:|---:|\n" + "\n".join(rows)
        )
    procs = result.get("processes")
    if procs:
        inv = procs["invariants"]
        parts.append(
            "| PostgreSQL, 64 in flight, each service with | 1 process | --processes 2 "
            "| ratio |\n|---|---|---|---:|\n"
            f"| RedeemPoints calls/s | {_list(procs['redeem_1'])} | {_list(procs['redeem_2'])} "
            f"| {_fmt(procs['redeem_ratio'], 2)} |\n"
            f"| DeductPoints calls/s | {_list(procs['deduct_1'])} | {_list(procs['deduct_2'])} "
            f"| {_fmt(procs['deduct_ratio'], 2)} |\n\n"
            + processes_limits(procs, result.get("machine", {}).get("cpus"))
            + "\n\n"
            f"Invariants after every PostgreSQL run: {'hold' if inv.get('ok') else 'VIOLATED'}: "
            f"{inv['completed_redemptions']:,} completed redemptions and as many deductions by "
            f"ecommerce ({inv['deductions_by_ecommerce']:,}), "
            f"{inv['deductions_direct']:,} direct DeductPoints, "
            f"{inv['pending_redemptions']} pending, "
            f"{inv['I1_negative_balances']} negative balances, "
            f"{inv['I2_unbalanced_accounts']} accounts whose ledger does not add up."
        )
    return "\n\n".join(parts)


def processes_limits(procs: dict[str, Any], cores: int | None) -> str:
    """What the machine's cores did in the processes windows, and so what limits them."""
    usage = procs.get("usage", {})
    if not usage:
        return ""
    lines = [
        f"Both columns ran over {procs.get('connections', DASH)} client connections (the "
        "kernel gives each connection to one process of the port). CPU cores used, read "
        "from /proc (a server's figure sums its parent and processes):",
        "",
        "| window | machine busy | "
        + " | ".join(PROCESS_GROUPS)
        + " |\n|---|---:|"
        + "---:|" * len(PROCESS_GROUPS),
    ]
    for key, title in (
        ("redeem_1", "RedeemPoints, 1 process"),
        ("redeem_2", "RedeemPoints, --processes 2"),
        ("deduct_1", "DeductPoints, 1 process"),
        ("deduct_2", "DeductPoints, --processes 2"),
    ):
        found = usage.get(key)
        if not found:
            continue
        used = found["cpu_cores"]
        lines.append(
            f"| {title} | {_fmt(100 * found['machine_busy'], 0)} % | "
            + " | ".join(_fmt(used.get(name), 2) for name in PROCESS_GROUPS)
            + " |"
        )
    two = [usage[k] for k in ("redeem_2", "deduct_2") if k in usage]
    busiest = max((u["machine_busy"] for u in two), default=0.0)
    lines += [
        "",
        f"On {_fmt(cores)} cores a second process of a service can only run on what the first "
        "one, the other service, PostgreSQL and the load generator leave idle: with "
        f"--processes 2 the machine was up to {_fmt(100 * busiest, 0)} % busy, so the "
        "cores, not the processes, bound the ratio; it measures the spare CPU of this "
        "machine, not what a second process gives a host with cores to spare.",
    ]
    return "\n".join(lines)


PROCESS_GROUPS = ("ecommerce", "cardpoints", "postgres", "load generator")


def _profiles(result: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(column heading, summary) of each profiled server: under RedeemPoints, under DeductPoints."""
    columns = []
    for key, rpc in (("profile", "RedeemPoints"), ("profile_deduct", "DeductPoints")):
        profile = result.get(key) or {}
        for server in ("ecommerce", "cardpoints"):
            if "categories" in profile.get(server, {}):
                columns.append((f"{server}, {rpc}", profile[server]))
    return columns


def profile_table(result: dict[str, Any]) -> str:
    columns = _profiles(result)
    if not columns:
        return ""
    names: list[str] = []
    for _, summary in columns:
        names += [n for n in summary["categories"] if n not in names]
    lines = [
        "| share of the samples | " + " | ".join(heading for heading, _ in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for n in names:
        shares = [_fmt(summary["categories"].get(n, 0.0)) + " %" for _, summary in columns]
        lines.append(f"| {n} | " + " | ".join(shares) + " |")
    lines.append("| samples | " + " | ".join(_fmt(s["samples"]) for _, s in columns) + " |")
    return "\n".join(lines)


def markdown_tables(result: dict[str, Any]) -> str:
    sections = [throughput_table(result), targets_table(result)]
    for extra in (extras_tables(result), limits_table(result), profile_table(result)):
        if extra:
            sections.append(extra)
    return "\n\n".join(sections) + "\n"


def _analysis(path: Path) -> str:
    if path.exists():
        text = path.read_text()
        pattern = re.escape(ANALYSIS_START) + r".*?" + re.escape(ANALYSIS_END)
        found = re.search(pattern, text, re.S)
        if found:
            return found.group(0)
    return f"{ANALYSIS_START}\n(Where the time goes, written from the profile.)\n{ANALYSIS_END}"


def write_doc(path: Path, result: dict[str, Any]) -> None:
    """docs/PERFORMANCE.md: the numbers of this run, and the analysis kept from before."""
    machine, settings = result["machine"], result["settings"]
    load = ", ".join(f"{x:.2f}" for x in machine["load_average_at_start"])
    body = [
        "# Performance",
        "",
        "How close PointsBridge gets to a bare gRPC echo server on this machine, measured by",
        "`make bench` (`bench/`). Every number below comes from one run, whose JSON is",
        "[performance.json](performance.json).",
        "",
        f"- **Date:** {result['date']}",
        f"- **Command:** `{result['command']}`"
        + (" (what `make bench` runs)" if result.get("mode") == "full" else "")
        + f", {result['elapsed_s']:.0f} s",
        f"- **Machine:** {machine['cpus']} cores, Python {machine['python']}; load average "
        f"{load} at the start. The machine is shared: other work ran beside the benchmark, "
        "so absolute rates move from run to run; the ratios compare figures measured "
        "seconds apart.",
        f"- **Load:** {settings['load_generator_processes']} grpc.aio load-generator processes, "
        f"{settings['warmup_s']} s of warmup, then a {settings['window_s']} s window per row; "
        f"{settings['accounts']:,} funded card accounts, each linked to a customer with a "
        "token of their own; quantities 1 to 5 over 4 coupon products.",
        f"- **Baselines:** {settings['baselines']}.",
        f"- **Events:** {settings.get('events', 'not recorded')}.",
        "",
        "## Targets",
        "",
        targets_table(result),
        "",
        "## Throughput and latency",
        "",
        '"vs baseline" divides by the bare echo baseline measured just before at the same',
        "load: the echo chain for RedeemPoints, the echo server for DeductPoints (and for",
        "the plumbing-only rows, the echo of the same shape). CPU is per",
        "completed call, read from /proc for each process over the window (A and B are the",
        'chain\'s two servers); "load gen" is the client.',
        "",
        throughput_table(result),
        "",
    ]
    extras = extras_tables(result)
    if extras:
        body += ["## Growth, soak and processes", "", extras, ""]
    limits = limits_table(result)
    if limits:
        body += [
            "## Floors",
            "",
            "What one ingredient of a call costs on this machine, measured alone in the same",
            "run (bench/limits.py).",
            "",
            limits,
            "",
        ]
    profile = profile_table(result)
    if profile:
        p = result["profile"]
        d = result.get("profile_deduct") or {}
        under_deduct = (
            ", then cardpoints alone while it served DeductPoints "
            f"({_fmt(d['throughput_under_profiler'], 0)} calls/s)"
            if "throughput_under_profiler" in d
            else ""
        )
        body += [
            "## Where the time goes",
            "",
            f"py-spy sampled the services {p['rate_hz']} times a second for "
            f"{p['seconds']:.0f} s, {p['mode']},",
            "while they served RedeemPoints at 64 in flight on SQLite "
            f"({_fmt(p['throughput_under_profiler'], 0)} calls/s under the profiler)"
            f"{under_deduct}.",
            "A sample counts for the first category that its innermost",
            "frames match (bench/profiling.py); a run leaves the collapsed stacks in",
            "bench/results/ (not committed).",
            "",
            profile,
            "",
        ]
    body += ["## Analysis", "", _analysis(path), ""]
    path.write_text("\n".join(body))
