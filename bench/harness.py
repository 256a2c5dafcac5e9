"""The harness of the bench: servers started for a section, and one measured window a row."""

from __future__ import annotations

import secrets
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.load import DEDUCT, REDEEM, Job, LoadPool, Result, percentile, split
from bench.options import Options
from bench.seed import seed
from bench.stack import (
    Databases,
    Keys,
    Server,
    cardpoints_argv,
    cpu_seconds,
    ecommerce_argv,
    machine_busy_seconds,
    migrate,
    postgres_cpu_seconds,
)
from bench.verdicts import CHAIN, HOP, PLUMBING_CHAIN, PLUMBING_HOP

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


class Harness:
    """What every section measures with: the servers it starts, the load, and one row per window."""

    def __init__(self, options: Options, workdir: Path, keys: Keys, pool: LoadPool) -> None:
        self.options = options
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
        processes: int = 1,
        connections: int = 1,
    ) -> dict[str, Any]:
        warmup = self.options.warmup if warmup is None else warmup
        duration = self.options.duration if duration is None else duration
        self.count += 1
        if not calls and self.options.window_calls:
            calls = max(self.options.window_calls, concurrency)
        parts = split(concurrency, self.pool.size)
        per_call_share = split(calls, len(parts)) if calls else [0] * len(parts)
        shares = _deal(customers, len(parts))
        start_at = time.monotonic() + (0.15 if self.options.smoke else 0.3)
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
                connections=connections,
            )
            for i, n in enumerate(parts)
        ]
        busy = self.pool.submit(jobs)
        window_start = start_at if calls else start_at + warmup
        sleep_until(window_start)
        first = self._snapshot(servers, db)
        if calls:
            limit = self.options.window_limit_s
            try:
                results = self.pool.collect(busy, timeout=limit, tick=on_tick)
            except TimeoutError:
                raise TimeoutError(
                    f"{scenario} ({db or 'no database'}, {concurrency} in flight):"
                    f" {calls} calls did not complete within {limit:.0f} s"
                ) from None
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
        row["processes"] = processes
        self.runs.append(row)
        log(describe(row))
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

    # ------------------------------------------------------------ the rows sections measure
    def all_customers(self) -> list[tuple[str, str, str]]:
        return self.customers(range(1, self.options.accounts + 1))

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
        self, stack: ExitStack, dbs: Databases, name: str, replicas: int = 1, processes: int = 1
    ) -> tuple[list[Server], list[Server]]:
        """`replicas` of each service, each of `processes` server processes (--processes);
        ecommerce replica i calls cardpoints replica i."""
        extra = (*self.options.server_args, *self.events_args)
        if processes > 1:
            extra = (*extra, "--processes", str(processes))
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
        processes: int = 1,
        connections: int = 1,
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
            processes=processes,
            connections=connections,
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
        processes: int = 1,
        connections: int = 1,
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
            processes=processes,
            connections=connections,
        )


def _deal(
    customers: Sequence[tuple[str, str, str]], parts: int
) -> list[list[tuple[str, str, str]]]:
    """Disjoint shares, so that no customer is driven by two workers at once."""
    if len(customers) < parts:
        return [list(customers)] * parts
    return [list(customers[i::parts]) for i in range(parts)]


def _ms(seconds: float) -> float | None:
    return None if seconds != seconds else round(seconds * 1000, 2)


def verdict(invariants: dict[str, Any]) -> str:
    return "hold" if invariants.get("ok") else f"VIOLATED {invariants}"


def describe(row: dict[str, Any]) -> str:
    errors = f" errors={row['errors']} ({row['first_error']})" if row["errors"] else ""
    label = f" [{row['label']}]" if row.get("label") else ""
    return (
        f"{row['scenario']:<16} {row['db'] or '-':<8} x{row['concurrency']:<3} r{row['replicas']}"
        f"{' p' + str(row['processes']) if row.get('processes', 1) > 1 else ''}"
        f" {row['throughput']:>8.1f}/s p50 {row['p50_ms']} p99 {row['p99_ms']} ms"
        f" busy {row['machine_busy']:.0%}{label}{errors}"
    )
