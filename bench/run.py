"""`make bench`: PointsBridge against bare gRPC echo baselines with no project code.

    .venv/bin/python -m bench            # the full run (~15 min): writes docs/PERFORMANCE.md
    .venv/bin/python -m bench --targets  # only the target rows (~10 min): writes it too
    .venv/bin/python -m bench --smoke    # a few seconds, only to keep the harness working

Every figure comes from real processes on 127.0.0.1: cardpoints and ecommerce on fresh
databases (SQLite with synchronous=FULL, and PostgreSQL), their event relays publishing
to a private nats-server, the bare echo server and 2-hop echo chain of bench/echo.py
(the baselines every target divides by), the empty services of bench/empty.py (the
project's plumbing and nothing else, an extra row that prices the plumbing), and a
multi-process grpc.aio load generator. Each baseline is measured seconds before the
figure it is compared with, and the targets take the median of several such pairs.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import random
import secrets
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import profiling, report, verdicts
from bench.limits import measure as measure_limits
from bench.load import DEDUCT, REDEEM, Job, LoadPool, Result, percentile, split
from bench.options import Options, parse_options
from bench.seed import check_invariants, seed
from bench.stack import (
    ROOT,
    Databases,
    Keys,
    Server,
    cardpoints_argv,
    cpu_seconds,
    echo_argv,
    ecommerce_argv,
    empty_argv,
    fresh_databases,
    lean_argv,
    machine_busy_seconds,
    migrate,
    postgres_cpu_seconds,
    rss_mb,
)
from bench.verdicts import CHAIN, HOP, PLUMBING_CHAIN, PLUMBING_HOP
from chaos.broker import NatsServer

SCHEMA = "pointsbridge-bench/1"
CHAIN_BARE, HOP_BARE = PLUMBING_CHAIN + "-bare", PLUMBING_HOP + "-bare"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def sleep_until(moment: float) -> None:
    delay = moment - time.monotonic()
    if delay > 0:
        time.sleep(delay)


@dataclass
class Snapshot:
    at: float
    cpu: dict[str, float]
    busy: float
    total: float


class Bench:
    def __init__(self, options: Options, workdir: Path, keys: Keys, pool: LoadPool) -> None:
        self.o = options
        self.workdir = workdir
        self.keys = keys
        self.pool = pool
        self.run_id = secrets.token_hex(3)
        self.count = 0
        self.runs: list[dict[str, Any]] = []
        self.extra: dict[str, Any] = {}
        self.tokens: dict[int, tuple[str, str, str]] = {}
        self.events_args: tuple[str, ...] = ()

    # ------------------------------------------------------------ plumbing

    def customers(self, indexes: Sequence[int]) -> list[tuple[str, str, str]]:
        missing = [i for i in indexes if i not in self.tokens]
        for i, minted in zip(missing, self.keys.customer_tokens(missing), strict=True):
            self.tokens[i] = minted
        return [self.tokens[i] for i in indexes]

    def start(self, stack: ExitStack, servers: Sequence[tuple[str, list[str]]]) -> list[Server]:
        """Start servers together; each is stopped when `stack` closes, whatever happens."""
        started = []
        for name, argv in servers:
            server = Server(name, argv, self.workdir)
            stack.callback(server.stop)
            started.append(server)
        return [s.wait_ready() for s in started]

    def _snapshot(self, servers: dict[str, Server], db: str | None) -> Snapshot:
        cpu = {name: server.cpu() for name, server in servers.items()}
        cpu["load generator"] = sum(cpu_seconds(pid) for pid in self.pool.pids)
        if db == "postgres":
            cpu["postgres"] = postgres_cpu_seconds()
        busy, total = machine_busy_seconds()
        return Snapshot(time.monotonic(), cpu, busy, total)

    def measure(
        self,
        scenario: str,
        db: str | None,
        method: str,
        targets: Sequence[str],
        servers: dict[str, Server],
        concurrency: int,
        customers: Sequence[tuple[str, str, str]],
        *,
        calls: int = 0,
        replicas: int = 1,
        label: str = "",
        on_tick: Callable[[], None] | None = None,
        warmup: float | None = None,
        duration: float | None = None,
    ) -> dict[str, Any]:
        warmup = self.o.warmup if warmup is None else warmup
        duration = self.o.duration if duration is None else duration
        self.count += 1
        parts = split(concurrency, self.pool.size)
        per_call_share = split(calls, len(parts)) if calls else [0] * len(parts)
        shares = _deal(customers, len(parts))
        start_at = time.monotonic() + (0.15 if self.o.smoke else 0.3)
        jobs = [
            Job(
                method=method,
                targets=tuple(targets),
                concurrency=n,
                start_at=start_at,
                warmup=warmup,
                duration=duration,
                tag=f"b{self.run_id}-{self.count}-{i}",
                customers=shares[i],
                service_token=self.keys.service_token,
                seed=self.count * 16 + i,
                calls=per_call_share[i],
            )
            for i, n in enumerate(parts)
        ]
        busy = self.pool.submit(jobs)
        window_start = start_at if calls else start_at + warmup
        sleep_until(window_start)
        first = self._snapshot(servers, db)
        if calls:
            results = self.pool.collect(busy, timeout=3600, tick=on_tick)
            last = self._snapshot(servers, db)
            window = max(r.ended for r in results) - window_start
        else:
            sleep_until(window_start + duration)
            last = self._snapshot(servers, db)
            results = self.pool.collect(busy, timeout=120 + duration)
            window = duration
        row = self._row(scenario, db, concurrency, replicas, results, window, first, last, servers)
        if label:
            row["label"] = label
        self.runs.append(row)
        log(_describe(row))
        return row

    def _row(
        self,
        scenario: str,
        db: str | None,
        concurrency: int,
        replicas: int,
        results: Sequence[Result],
        window: float,
        first: Snapshot,
        last: Snapshot,
        servers: dict[str, Server],
    ) -> dict[str, Any]:
        latencies = sorted(x for r in results for x in r.latencies)
        completed = sum(r.completed for r in results)
        errors: dict[str, int] = {}
        for r in results:
            for code, n in r.errors.items():
                errors[code] = errors.get(code, 0) + n
        elapsed = last.at - first.at
        cpu_used = {k: last.cpu[k] - first.cpu.get(k, 0.0) for k in last.cpu}
        row: dict[str, Any] = {
            "scenario": scenario,
            "db": db,
            "concurrency": concurrency,
            "replicas": replicas,
            "window_s": round(window, 3),
            "completed": completed,
            "throughput": round(completed / window, 1) if window > 0 else 0.0,
            "errors": errors,
            "first_error": next((r.first_error for r in results if r.first_error), ""),
            "p50_ms": _ms(percentile(latencies, 0.50)),
            "p99_ms": _ms(percentile(latencies, 0.99)),
            "p999_ms": _ms(percentile(latencies, 0.999)),
            "mean_ms": _ms(statistics.fmean(latencies)) if latencies else None,
            "cpu_ms_per_call": {
                k: round(1000 * v / completed, 3) if completed else None
                for k, v in cpu_used.items()
            },
            "cpu_cores": {k: round(v / elapsed, 2) for k, v in cpu_used.items()},
            "machine_busy": round(
                (last.busy - first.busy) / max(1e-9, last.total - first.total), 3
            ),
            "peak_rss_mb": {name: round(s.peak_rss_mb(), 1) for name, s in servers.items()},
        }
        return row

    # ------------------------------------------------------------ sections

    def baselines(self, stack: ExitStack) -> dict[str, Server]:
        """The bare echo pair (what every target divides by), and the empty services on
        the project's plumbing (extra rows that price it), with and without auth."""
        log("starting the baselines: bare echo server and chain, empty services")
        (echo_leaf,) = self.start(stack, [("echo-leaf", echo_argv("leaf"))])
        leaves = [("empty-leaf", empty_argv(self.keys, "leaf"))]
        bare = not (self.o.smoke or self.o.targets)
        if bare:
            leaves.append(("empty-leaf-bare", empty_argv(self.keys, "leaf", "--auth", "false")))
        started = self.start(stack, leaves)
        servers = {"echo-leaf": echo_leaf, "leaf": started[0]}
        token = str(self.keys.service_token_file)
        nxt = ("--next-token-file", token, "--next")
        chains = [
            ("echo-chain", echo_argv("chain", "--next", echo_leaf.address)),
            ("empty-chain", empty_argv(self.keys, "chain", *nxt, started[0].address)),
        ]
        if bare:
            servers["leaf-bare"] = started[1]
            chains.append(
                (
                    "empty-chain-bare",
                    empty_argv(self.keys, "chain", "--auth", "false", *nxt, started[1].address),
                )
            )
        for (name, _argv), server in zip(chains, self.start(stack, chains), strict=True):
            servers[name.removeprefix("empty-")] = server
        return servers

    def all_customers(self) -> list[tuple[str, str, str]]:
        return self.customers(range(1, self.o.accounts + 1))

    def hop(
        self, empty: dict[str, Server], c: int, db: str | None, kind: str = "echo", label: str = ""
    ) -> None:
        """kind: "echo" (the baseline), "empty" (plumbing) or "bare" (plumbing, no auth)."""
        leaf = empty[{"echo": "echo-leaf", "empty": "leaf", "bare": "leaf-bare"}[kind]]
        scenario = {"echo": HOP, "empty": PLUMBING_HOP, "bare": HOP_BARE}[kind]
        servers = {"leaf": leaf}
        customers = self.all_customers()
        self.measure(scenario, db, DEDUCT, [leaf.address], servers, c, customers, label=label)

    def chain(
        self, empty: dict[str, Server], c: int, db: str | None, kind: str = "echo", label: str = ""
    ) -> None:
        names = {"echo": ("echo-chain", "echo-leaf"), "empty": ("chain", "leaf")}
        chain, leaf = (empty[n] for n in names.get(kind, ("chain-bare", "leaf-bare")))
        scenario = {"echo": CHAIN, "empty": PLUMBING_CHAIN, "bare": CHAIN_BARE}[kind]
        servers = {"chain": chain, "leaf": leaf}
        customers = self.all_customers()
        self.measure(scenario, db, REDEEM, [chain.address], servers, c, customers, label=label)

    def services(
        self, stack: ExitStack, dbs: Databases, name: str, replicas: int = 1
    ) -> tuple[list[Server], list[Server]]:
        """`replicas` of each service; ecommerce replica i calls cardpoints replica i."""
        extra = (*self.o.server_args, *self.events_args)
        cardpoints = self.start(
            stack,
            [
                (f"{name}-cardpoints-{i + 1}", cardpoints_argv(self.keys, dbs.cardpoints, *extra))
                for i in range(replicas)
            ],
        )
        ecommerce = self.start(
            stack,
            [
                (
                    f"{name}-ecommerce-{i + 1}",
                    ecommerce_argv(self.keys, dbs.ecommerce, cardpoints[i].address, *extra),
                )
                for i in range(replicas)
            ],
        )
        return cardpoints, ecommerce

    def prepare(self, dbs: Databases, accounts: int, history: int = 0) -> dict[str, float]:
        """Migrate both databases (as the servers would), then bulk-seed them."""
        started = time.monotonic()
        with ThreadPoolExecutor(2) as migrations:
            list(
                migrations.map(
                    migrate, ("cardpoints", "ecommerce"), (dbs.cardpoints, dbs.ecommerce)
                )
            )
        migrated = time.monotonic() - started
        timings = seed(dbs, accounts, history=history, coupons_per_redemption=2)
        timings["migrations_s"] = migrated
        return {k: round(v, 1) for k, v in timings.items()}

    def deduct(
        self,
        cardpoints: Sequence[Server],
        c: int,
        db: str,
        replicas: int = 1,
        label: str = "",
    ) -> dict[str, Any]:
        used = cardpoints[:replicas]
        names = [f"cardpoints-{i + 1}" if replicas > 1 else "cardpoints" for i in range(replicas)]
        return self.measure(
            "deduct",
            db,
            DEDUCT,
            [s.address for s in used],
            dict(zip(names, used, strict=True)),
            c,
            self.all_customers(),
            replicas=replicas,
            label=label,
        )

    def redeem(
        self,
        cardpoints: Sequence[Server],
        ecommerce: Sequence[Server],
        c: int,
        db: str,
        customers: Sequence[tuple[str, str, str]] | None = None,
        replicas: int = 1,
        label: str = "",
        calls: int = 0,
        on_tick: Callable[[], None] | None = None,
    ) -> dict[str, Any]:
        servers: dict[str, Server] = {}
        for i in range(replicas):
            suffix = f"-{i + 1}" if replicas > 1 else ""
            servers["ecommerce" + suffix] = ecommerce[i]
            servers["cardpoints" + suffix] = cardpoints[i]
        return self.measure(
            "redeem",
            db,
            REDEEM,
            [s.address for s in ecommerce[:replicas]],
            servers,
            c,
            self.all_customers() if customers is None else customers,
            replicas=replicas,
            label=label,
            calls=calls,
            on_tick=on_tick,
        )

    def matrix(
        self,
        empty: dict[str, Server],
        cardpoints: Sequence[Server],
        ecommerce: Sequence[Server],
        db: str,
        baselines_at: Sequence[int],
    ) -> None:
        """Each service figure right after the baseline it is divided by."""
        for c in self.o.concurrency:
            if c in baselines_at:
                self.hop(empty, c, db)
            self.deduct(cardpoints, c, db)
            if c in baselines_at:
                self.chain(empty, c, db)
            self.redeem(cardpoints, ecommerce, c, db)
        if verdicts.TARGETS_AT in self.o.concurrency:
            # One window of a few seconds on a shared machine is one sample: the
            # targets take the median ratio of several pairs.
            for k in range(2, self.o.repeats + 1):
                label = f"{verdicts.REPEAT} {k}"
                self.hop(empty, verdicts.TARGETS_AT, db, label=label)
                self.deduct(cardpoints, verdicts.TARGETS_AT, db, label=label)
                self.chain(empty, verdicts.TARGETS_AT, db, label=label)
                self.redeem(cardpoints, ecommerce, verdicts.TARGETS_AT, db, label=label)

    def lean(self, stack: ExitStack, empty: dict[str, Server]) -> None:
        """The bare work of a deduction with no project code, each after an echo window."""
        if self.o.smoke or verdicts.TARGETS_AT not in self.o.concurrency:
            return
        argv = lean_argv(self.workdir / "lean.sqlite", self.o.accounts)
        (lean,) = self.start(stack, [("lean-deduct", argv)])
        for k in range(1, self.o.repeats + 1):
            label = f"{verdicts.LEAN_PAIR} {k}"
            self.hop(empty, verdicts.TARGETS_AT, "sqlite", label=label)
            customers = self.all_customers()
            servers = {"lean": lean}
            at = verdicts.TARGETS_AT
            self.measure(
                verdicts.LEAN, "sqlite", DEDUCT, [lean.address], servers, at, customers, label=label
            )
        lean.stop()

    def limits(self) -> None:
        log("measuring the floors: fsync, commits, ES256, statements, thread hops")
        self.extra["limits"] = measure_limits(1.0, self.o.pg_url)

    def sqlite_section(self, empty: dict[str, Server]) -> None:
        with ExitStack() as stack:
            dbs = stack.enter_context(
                fresh_databases("sqlite", self.workdir, "main", self.o.pg_url)
            )
            log(f"SQLite: migrating and seeding {self.o.accounts:,} accounts")
            self.extra["seed_sqlite"] = self.prepare(dbs, self.o.accounts)
            cardpoints, ecommerce = self.services(stack, dbs, "sqlite")
            self.matrix(empty, cardpoints, ecommerce, "sqlite", self.o.concurrency)
            self.lean(stack, empty)
            # The project's plumbing with nothing behind it: what it costs on its own.
            plumbing = ("empty",) if self.o.smoke or self.o.targets else ("empty", "bare")
            at = (
                verdicts.TARGETS_AT
                if verdicts.TARGETS_AT in self.o.concurrency
                else max(self.o.concurrency)
            )
            for kind in plumbing:
                self.hop(empty, at, "sqlite", kind=kind)
                self.chain(empty, at, "sqlite", kind=kind)
            if "profile" in self.o.sections:
                self.profile(cardpoints[0], ecommerce[0])
            if "growth" in self.o.sections:
                self.growth(cardpoints[0], ecommerce[0])
            for server in (*ecommerce, *cardpoints):
                server.stop()
            if "soak" in self.o.sections:
                self.soak(stack, dbs)
            self.extra["invariants_sqlite"] = check_invariants(dbs)
            log(f"SQLite invariants: {_verdict(self.extra['invariants_sqlite'])}")

    def profile(self, cardpoints: Server, ecommerce: Server) -> None:
        """py-spy on the servers under RedeemPoints, then on cardpoints under DeductPoints."""
        if profiling.py_spy() is None:
            self.extra["profile"] = {"error": "py-spy is not installed"}
            return
        self.extra["profile"] = self._profile(
            "redeem", REDEEM, ecommerce, {"ecommerce": ecommerce, "cardpoints": cardpoints}
        )
        self.extra["profile_deduct"] = self._profile(
            "deduct", DEDUCT, cardpoints, {"cardpoints": cardpoints}
        )

    def _profile(
        self, scenario: str, method: str, target: Server, servers: dict[str, Server]
    ) -> dict[str, Any]:
        seconds = self.o.profile_seconds
        log(f"py-spy on {', '.join(servers)} for {seconds:.0f} s ({method}, 64 in flight)")
        outputs = {name: self.workdir / f"profile-{scenario}-{name}.txt" for name in servers}
        spies = {
            name: profiling.start_recording(servers[name].pid, seconds + 1, path)
            for name, path in outputs.items()
        }
        try:
            row = self.measure(
                scenario,
                "sqlite",
                method,
                [target.address],
                servers,
                64,
                self.all_customers(),
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

    def growth(self, small_cp: Server, small_ec: Server) -> None:
        """RedeemPoints on 10k accounts against 1M accounts and 2M issued coupons, in
        alternating windows so that the machine's background load hits both alike."""
        accounts = self.o.growth_accounts
        history = self.o.growth_coupons // 2
        with ExitStack() as stack:
            dbs = stack.enter_context(
                fresh_databases("sqlite", self.workdir, "growth", self.o.pg_url)
            )
            log(f"growth: seeding {accounts:,} accounts and {history * 2:,} issued coupons")
            timings = self.prepare(dbs, accounts, history=history)
            log(f"growth: seeded in {timings}")
            (big_cp,), (big_ec,) = self.services(stack, dbs, "growth")
            rng = random.Random(7)
            sample = sorted(rng.sample(range(1, accounts + 1), min(accounts, self.o.accounts)))
            big_customers = self.customers(sample)
            small, big = [], []
            for _ in range(2):
                small.append(
                    self.redeem([small_cp], [small_ec], 64, "sqlite", label="growth: 10k accounts")[
                        "throughput"
                    ]
                )
                big.append(
                    self.redeem(
                        [big_cp], [big_ec], 64, "sqlite", big_customers, label="growth: 1M"
                    )["throughput"]
                )
            big_ec.stop()
            big_cp.stop()
            invariants = check_invariants(dbs)
        self.extra["growth"] = {
            "accounts": accounts,
            "issued_coupons": history * 2,
            "seed": timings,
            "small_throughput": small,
            "large_throughput": big,
            "ratio": round(statistics.fmean(big) / statistics.fmean(small), 3),
            "invariants": invariants,
        }
        log(f"growth invariants: {_verdict(invariants)}")

    def soak(self, stack: ExitStack, dbs: Databases) -> None:
        total = self.o.soak_redemptions
        log(f"soak: {total:,} RedeemPoints at 64 in flight on fresh server processes")
        (cardpoints,), (ecommerce,) = self.services(stack, dbs, "soak")
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

        row = self.redeem(
            [cardpoints], [ecommerce], 64, "sqlite", label="soak", calls=total, on_tick=tick
        )
        tick()
        ecommerce.stop()
        cardpoints.stop()
        self.extra["soak"] = {
            "redemptions": total,
            "completed": row["completed"],
            "errors": row["errors"],
            "throughput": row["throughput"],
            "peak_rss_mb": row["peak_rss_mb"],
            "samples": samples,
            "trend": {name: _trend(samples, name) for name in ("ecommerce", "cardpoints")},
        }

    def postgres_section(self, empty: dict[str, Server]) -> None:
        with ExitStack() as stack:
            dbs = stack.enter_context(
                fresh_databases("postgres", self.workdir, "main", self.o.pg_url)
            )
            log(f"PostgreSQL: migrating and seeding {self.o.accounts:,} accounts")
            self.extra["seed_postgres"] = self.prepare(dbs, self.o.accounts)
            cardpoints, ecommerce = self.services(stack, dbs, "pg")
            self.matrix(empty, cardpoints, ecommerce, "postgres", (64,))
            log("scale-out: a second replica of each service on the same databases")
            more_cp, more_ec = self.services(stack, dbs, "pg-b")
            cps, ecs = [cardpoints[0], more_cp[0]], [ecommerce[0], more_ec[0]]
            scale: dict[str, list[float]] = {k: [] for k in ("redeem_1", "redeem_2")}
            scale |= {k: [] for k in ("deduct_1", "deduct_2")}
            for _ in range(2):
                for n in (1, 2):
                    label = f"scale-out: {n} replica{'s' if n > 1 else ''}"
                    row = self.redeem(cps, ecs, 64, "postgres", replicas=n, label=label)
                    scale[f"redeem_{n}"].append(row["throughput"])
                    row = self.deduct(cps, 64, "postgres", replicas=n, label=label)
                    scale[f"deduct_{n}"].append(row["throughput"])
            for server in (*ecs, *cps):
                server.stop()
            invariants = check_invariants(dbs)
        self.extra["invariants_postgres"] = invariants
        self.extra["scaleout"] = {
            **scale,
            "redeem_ratio": _mean_ratio(scale["redeem_2"], scale["redeem_1"]),
            "deduct_ratio": _mean_ratio(scale["deduct_2"], scale["deduct_1"]),
            "invariants": invariants,
        }
        log(f"PostgreSQL invariants: {_verdict(invariants)}")


def _mean_ratio(a: Sequence[float], b: Sequence[float]) -> float:
    return round(statistics.fmean(a) / statistics.fmean(b), 3)


def _deal(
    customers: Sequence[tuple[str, str, str]], parts: int
) -> list[list[tuple[str, str, str]]]:
    """Disjoint shares, so that no customer is driven by two workers at once."""
    if len(customers) < parts:
        return [list(customers)] * parts
    return [list(customers[i::parts]) for i in range(parts)]


def _ms(seconds: float) -> float | None:
    return None if seconds != seconds else round(seconds * 1000, 2)


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


def _verdict(invariants: dict[str, Any]) -> str:
    return "hold" if invariants.get("ok") else f"VIOLATED {invariants}"


def _describe(row: dict[str, Any]) -> str:
    errors = f" errors={row['errors']} ({row['first_error']})" if row["errors"] else ""
    label = f" [{row['label']}]" if row.get("label") else ""
    return (
        f"{row['scenario']:<16} {row['db'] or '-':<8} x{row['concurrency']:<3} r{row['replicas']}"
        f" {row['throughput']:>8.1f}/s p50 {row['p50_ms']} p99 {row['p99_ms']} ms"
        f" busy {row['machine_busy']:.0%}{label}{errors}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)
    command = shlex.join(["python", "-m", "bench", *(argv if argv is not None else sys.argv[1:])])
    started = time.monotonic()
    result: dict[str, Any] = {
        "schema": SCHEMA,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": command,
        "mode": "smoke" if options.smoke else "targets" if options.targets else "full",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average_at_start": list(os.getloadavg()),
        },
        "settings": {
            "concurrency": list(options.concurrency),
            "warmup_s": options.warmup,
            "window_s": options.duration,
            "load_generator_processes": options.clients,
            "accounts": options.accounts,
            "sections": list(options.sections),
            "server_args": list(options.server_args),
            "events": (
                "the services' event relays publish to a private nats-server"
                if options.events
                else "off: events stay in the outbox (--no-events)"
            ),
            "baselines": (
                "bench/echo.py: a bare grpc.aio server answering DeductPoints from a canned"
                " response, and a bare 2-hop chain answering RedeemPoints after one"
                " DeductPoints call to it; no project code, asyncio's default loop as the"
                " services. bench/empty.py (the project's server plumbing, auth included,"
                " and nothing else) is an extra row that prices the plumbing"
            ),
        },
    }
    workdir = Path(tempfile.mkdtemp(prefix="pointsbridge-bench-"))
    try:
        with ExitStack() as stack:
            stack.callback(shutil.rmtree, workdir, True)
            keys = Keys.create(workdir)
            pool = LoadPool(options.clients)
            stack.callback(pool.close)
            bench = Bench(options, workdir, keys, pool)
            if options.events:
                nats = NatsServer(workdir / "nats")
                (workdir / "nats").mkdir()
                nats.start()
                stack.callback(nats.stop)
                bench.events_args = ("--nats-url", nats.url)
            try:
                if "limits" in options.sections:
                    bench.limits()
                empty = bench.baselines(stack)
                if "sqlite" in options.sections:
                    bench.sqlite_section(empty)
                if "postgres" in options.sections:
                    bench.postgres_section(empty)
            finally:
                result["runs"] = bench.runs
                result.update(bench.extra)
    except BaseException:
        result["incomplete"] = True
        _write(options.out, result)
        log(f"failed; partial results in {options.out}")
        raise
    result["elapsed_s"] = round(time.monotonic() - started, 1)
    result["targets"] = verdicts.targets(result)
    _write(options.out, result)
    table = report.markdown_tables(result)
    print(table)
    if options.docs:
        docs = ROOT / "docs"
        _write(docs / "performance.json", result)
        report.write_doc(docs / "PERFORMANCE.md", result)
        log("wrote docs/PERFORMANCE.md and docs/performance.json")
    log(f"done in {result['elapsed_s']} s; JSON in {options.out}")
    return 0


def _write(path: Path, result: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1, sort_keys=False) + "\n")
