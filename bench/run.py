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

This module orders the sections and writes the result; bench/options.py parses the
arguments, bench/harness.py starts servers and measures each window, bench/phases.py
holds the profile, growth and soak sections, and bench/verdicts.py and bench/report.py
turn the result into targets and Markdown.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench import phases, report, verdicts
from bench.harness import Harness, log, verdict
from bench.limits import measure as measure_limits
from bench.load import DEDUCT, REDEEM, LoadPool
from bench.options import parse_options
from bench.seed import check_invariants
from bench.stack import (
    ROOT,
    Keys,
    Server,
    echo_argv,
    empty_argv,
    fresh_databases,
    lean_argv,
    lean_chain_argv,
)
from chaos.broker import NatsServer

SCHEMA = "pointsbridge-bench/1"
# Connections per load process in the processes rows: enough that the kernel spreads
# them over the processes of a port (it picks one per connection, not per call).
CONNECTIONS = 8


class Bench(Harness):
    """The sections of one run, in the order that pairs each figure with its baseline."""

    def baselines(self, stack: ExitStack) -> dict[str, Server]:
        """The bare echo pair (what every target divides by), and the empty services on
        the project's plumbing (extra rows that price it), with and without auth."""
        log("starting the baselines: bare echo server and chain, empty services")
        (echo_leaf,) = self.start(stack, [("echo-leaf", echo_argv("leaf"))])
        leaves = [("empty-leaf", empty_argv(self.keys, "leaf"))]
        bare = not (self.options.smoke or self.options.targets)
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

    def matrix(
        self,
        empty: dict[str, Server],
        cardpoints: Sequence[Server],
        ecommerce: Sequence[Server],
        db: str,
        baselines_at: Sequence[int],
    ) -> None:
        """Each service figure right after the baseline it is divided by."""
        for c in self.options.concurrency:
            if c in baselines_at:
                self.hop(empty, c, db)
            self.deduct(cardpoints, c, db)
            if c in baselines_at:
                self.chain(empty, c, db)
            self.redeem(cardpoints, ecommerce, c, db)
        if verdicts.TARGETS_AT in self.options.concurrency:
            # One window of a few seconds on a shared machine is one sample: the
            # targets take the median ratio of several pairs.
            for k in range(2, self.options.repeats + 1):
                label = f"{verdicts.REPEAT} {k}"
                self.hop(empty, verdicts.TARGETS_AT, db, label=label)
                self.deduct(cardpoints, verdicts.TARGETS_AT, db, label=label)
                self.chain(empty, verdicts.TARGETS_AT, db, label=label)
                self.redeem(cardpoints, ecommerce, verdicts.TARGETS_AT, db, label=label)

    def lean(self, empty: dict[str, Server], db: str) -> None:
        """The bare work of each RPC with no project code, on the section's database: the
        bare-work DeductPoints after an echo server window, then the bare redemption chain
        in front of it after an echo chain window, `--repeats` times."""
        if self.options.smoke or verdicts.TARGETS_AT not in self.options.concurrency:
            return
        at, accounts = verdicts.TARGETS_AT, self.options.accounts
        with ExitStack() as stack:
            if db == "sqlite":
                stores: tuple[Path | str, Path | str] = (
                    self.workdir / "lean-deduct.sqlite",
                    self.workdir / "lean-redeem.sqlite",
                )
            else:
                # Made as the services' databases are, dropped once the servers stopped.
                dbs = stack.enter_context(
                    fresh_databases("postgres", self.workdir, "lean", self.options.pg_url)
                )
                stores = (dbs.cardpoints, dbs.ecommerce)
            log(f"{db}: the bare-work servers, no project code")
            (deduct,) = self.start(stack, [(f"lean-deduct-{db}", lean_argv(stores[0], accounts))])
            argv = lean_chain_argv(stores[1], accounts, deduct.address)
            (chain,) = self.start(stack, [(f"lean-redeem-{db}", argv)])
            customers = self.all_customers()
            for k in range(1, self.options.repeats + 1):
                label = f"{verdicts.LEAN_PAIR} {k}"
                self.hop(empty, at, db, label=label)
                servers = {"leaf": deduct}
                self.measure(
                    verdicts.LEAN, db, DEDUCT, [deduct.address], servers, at, customers, label=label
                )
                self.chain(empty, at, db, label=label)
                servers = {"chain": chain, "leaf": deduct}
                self.measure(
                    verdicts.LEAN_REDEEM,
                    db,
                    REDEEM,
                    [chain.address],
                    servers,
                    at,
                    customers,
                    label=label,
                )

    def limits(self) -> None:
        log("measuring the floors: fsync, commits, ES256, statements, thread hops")
        self.extra["limits"] = measure_limits(1.0, self.options.pg_url)

    def sqlite_section(self, empty: dict[str, Server]) -> None:
        with ExitStack() as stack:
            dbs = stack.enter_context(
                fresh_databases("sqlite", self.workdir, "main", self.options.pg_url)
            )
            log(f"SQLite: migrating and seeding {self.options.accounts:,} accounts")
            self.extra["seed_sqlite"] = self.prepare(dbs, self.options.accounts)
            cardpoints, ecommerce = self.services(stack, dbs, "sqlite")
            self.matrix(empty, cardpoints, ecommerce, "sqlite", self.options.concurrency)
            self.lean(empty, "sqlite")
            # The project's plumbing with nothing behind it: what it costs on its own.
            plumbing = (
                ("empty",) if self.options.smoke or self.options.targets else ("empty", "bare")
            )
            at = (
                verdicts.TARGETS_AT
                if verdicts.TARGETS_AT in self.options.concurrency
                else max(self.options.concurrency)
            )
            for kind in plumbing:
                self.hop(empty, at, "sqlite", kind=kind)
                self.chain(empty, at, "sqlite", kind=kind)
            if "profile" in self.options.sections:
                phases.profile(self, cardpoints[0], ecommerce[0])
            if "growth" in self.options.sections:
                phases.growth(self, cardpoints[0], ecommerce[0])
            for server in (*ecommerce, *cardpoints):
                server.stop()
            if "soak" in self.options.sections:
                phases.soak(self, stack, dbs)
            self.extra["invariants_sqlite"] = check_invariants(dbs)
            log(f"SQLite invariants: {verdict(self.extra['invariants_sqlite'])}")

    def postgres_section(self, empty: dict[str, Server]) -> None:
        with ExitStack() as stack:
            dbs = stack.enter_context(
                fresh_databases("postgres", self.workdir, "main", self.options.pg_url)
            )
            log(f"PostgreSQL: migrating and seeding {self.options.accounts:,} accounts")
            self.extra["seed_postgres"] = self.prepare(dbs, self.options.accounts)
            cardpoints, ecommerce = self.services(stack, dbs, "pg")
            self.matrix(empty, cardpoints, ecommerce, "postgres", (64,))
            self.lean(empty, "postgres")
            log("processes: the same services with --processes 2 on the same databases")
            two_cp, two_ec = self.services(stack, dbs, "pg-p2", processes=2)
            stacks = {1: (cardpoints, ecommerce), 2: (two_cp, two_ec)}
            scale: dict[str, list[float]] = {
                f"{rpc}_{n}": [] for rpc in ("redeem", "deduct") for n in stacks
            }
            rows: dict[str, list[dict[str, Any]]] = {key: [] for key in scale}
            for _ in range(2):
                for n, (cps, ecs) in stacks.items():
                    label = f"processes: {n}"
                    row = self.redeem(
                        cps, ecs, 64, "postgres", label=label, processes=n, connections=CONNECTIONS
                    )
                    scale[f"redeem_{n}"].append(row["throughput"])
                    rows[f"redeem_{n}"].append(row)
                    row = self.deduct(
                        cps, 64, "postgres", label=label, processes=n, connections=CONNECTIONS
                    )
                    scale[f"deduct_{n}"].append(row["throughput"])
                    rows[f"deduct_{n}"].append(row)
            for server in (*two_ec, *two_cp, *ecommerce, *cardpoints):
                server.stop()
            invariants = check_invariants(dbs)
        self.extra["invariants_postgres"] = invariants
        self.extra["processes"] = {
            **scale,
            "redeem_ratio": _mean_ratio(scale["redeem_2"], scale["redeem_1"]),
            "deduct_ratio": _mean_ratio(scale["deduct_2"], scale["deduct_1"]),
            "connections": CONNECTIONS * self.options.clients,
            "usage": {key: _usage(found) for key, found in rows.items()},
            "invariants": invariants,
        }
        log(f"PostgreSQL invariants: {verdict(invariants)}")


def _usage(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """What the windows of one kind used of the machine: the busy share of its cores, and
    the cores each process (group) took, averaged over the windows."""
    cores: dict[str, list[float]] = {}
    for row in rows:
        for name, used in row["cpu_cores"].items():
            cores.setdefault(name, []).append(used)
    return {
        "machine_busy": round(statistics.fmean(r["machine_busy"] for r in rows), 3),
        "cpu_cores": {name: round(statistics.fmean(v), 2) for name, v in cores.items()},
        "cpu_ms_per_call": {
            name: round(statistics.fmean(r["cpu_ms_per_call"][name] or 0.0 for r in rows), 3)
            for name in rows[0]["cpu_ms_per_call"]
        },
    }


def _mean_ratio(a: Sequence[float], b: Sequence[float]) -> float:
    return round(statistics.fmean(a) / statistics.fmean(b), 3)


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
                " and nothing else) is an extra row that prices the plumbing; bench/lean.py"
                " and bench/lean_chain.py (the bare durable work of DeductPoints and of a"
                " redemption, no project code, on the same databases) give the reference"
                " row beside each target"
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
