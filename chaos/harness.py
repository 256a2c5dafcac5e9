"""The exactly-once fault harness: `python -m chaos.harness --preset short|long [--db ...]`.

One run:

1. makes two fresh databases (SQLite files in the work directory, or two PostgreSQL
   databases that are dropped afterwards);
2. starts a private nats-server with JetStream (unless --no-events), then cardpoints
   and ecommerce as real OS processes on 127.0.0.1 port 0, with a fast recovery loop
   and their event relays on, and (unless --no-proxy) puts chaos.proxy between them;
   on PostgreSQL it adds a standby process of each service on the same database,
   whose relay takes the lease over from a killed one;
3. opens card accounts with known credits, creates coupon products and links customers;
4. runs --clients concurrent clients (quote, redeem, use, refund, plus calls that must be
   refused), each retrying with the same request_id on UNAVAILABLE/DEADLINE_EXCEEDED;
5. meanwhile SIGKILLs cardpoints and ecommerce, each at least --kills times, one at a
   time, and restarts each on its own port; SIGKILLs the broker once and restarts it;
   the proxy loses and delays responses in seeded windows;
6. stops the clients, waits (bounded) until ListUnsettled is empty, reads both systems
   through their RPCs and checks I1-I6 plus every acknowledged success (chaos.checker),
   then waits for both outboxes to drain and checks I8: both streams against both
   databases (chaos.event_check);
7. runs `pointsbridge reconcile --json` over the run's window, which must be clean;
8. prints the violations, then one summary line, and exits 0 only if all is well.

Determinism: every random choice (accounts, products, each client's actions and
quantities, the kill schedule, the proxy's fault windows) comes from
`random.Random(--seed)`. The operating system still decides timing: which request a
kill lands on, how the clients interleave and therefore what the later choices act on.
A seed reproduces the schedule, not the exact execution.

Exit codes: 0 clean; 1 a violation, something left unsettled or a reconcile mismatch;
2 the harness itself could not do its job (a service did not start, too few kills).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
from sqlalchemy.exc import SQLAlchemyError

from chaos import checker
from chaos.event_check import check_events
from chaos.plan import PRESETS, Options, Plan, parse_options
from chaos.proxy import FaultProxy
from chaos.selftest import sabotage
from chaos.snapshot import take_snapshot, wait_settled
from chaos.system import Run, broker_outage, fault_schedule, kill_schedule, restart, seed_data
from chaos.workload import Client
from servicekit.devtools.credentials import channel
from servicekit.devtools.databases import fresh_databases

__all__ = ["PRESETS", "Options", "Plan", "main", "parse_options"]

CLI = Path(sys.executable).parent / "pointsbridge"
SETTLE_WITHIN = 45.0
CLIENT_STOP_GRACE = 40.0
MAX_OPS_PER_CLIENT = 100_000
# A relay restarted after a SIGKILL waits out its predecessor's lease before publishing.
EVENTS_WITHIN = 60.0


async def drive(run: Run) -> tuple[list[checker.Violation], int, str]:
    options = run.options
    if run.broker is not None:
        await asyncio.to_thread(run.broker.start)
    await run.cardpoints.serve()
    if options.proxy:
        run.proxy = await FaultProxy(run.cardpoints.port).start()
    await run.ecommerce.serve()
    run.say(
        f"cardpoints on {run.cardpoints.address}, ecommerce on {run.ecommerce.address}"
        + (f", proxy on {run.proxy.address}" if run.proxy else "")
    )
    for standby in run.standbys:
        await standby.serve()
        run.say(f"{standby.name} on {standby.address} (same database; its relay stands by)")
    since = datetime.now(UTC) - timedelta(seconds=5)
    to_bank = channel(run.cardpoints.address, run.operator)
    to_shop = channel(run.ecommerce.address, run.operator)
    try:
        await seed_data(run, to_bank, to_shop)
        run.started = time.monotonic()
        run.say(
            f"{len(run.plan.customers)} accounts, {len(run.plan.products)} products, "
            f"{options.clients} clients, {len(run.plan.kills)} kills planned over "
            f"{options.duration:.0f}s"
        )
        await exercise(run)
        for service in (run.cardpoints, run.ecommerce):
            if not service.running:
                await restart(run, service)
        waited = time.monotonic()
        left = await wait_settled(to_shop, SETTLE_WITHIN)
        if not left and run.last_kill:
            run.settled_after_last_kill = time.monotonic() - run.last_kill
        run.say(
            f"{len(left)} operations unsettled after waiting "
            f"{time.monotonic() - waited:.1f}s for the recovery loop"
            + (
                f"; 0 PENDING {run.settled_after_last_kill:.1f}s after the last kill"
                if run.settled_after_last_kill is not None
                else ""
            )
        )
        snap = await take_snapshot(to_bank, to_shop, run.plan.customers)
        violations = checker.check(snap, run.plan.customers, run.journal)
        pending = snap.pending
        if run.broker is not None:
            if not run.broker.running:
                await asyncio.to_thread(run.broker.start)
            found, run.events_checked = await check_events(
                run.dbs.cardpoints, run.dbs.ecommerce, run.broker.url, within=EVENTS_WITHIN
            )
            run.say(f"{run.events_checked} events in the streams checked against both databases")
            violations += found
        until = datetime.now(UTC) + timedelta(seconds=5)
        verdict = await reconcile(run, since, until)
        if options.self_test:
            run.say(
                f"self-test: before sabotage violations={len(violations)} pending={pending} "
                f"reconcile={verdict}"
            )
            violations = await sabotage(run, to_bank, to_shop)
            snap = await take_snapshot(to_bank, to_shop, run.plan.customers)
            pending = snap.pending
            verdict = await reconcile(run, since, datetime.now(UTC) + timedelta(seconds=5))
        return violations, pending, verdict
    finally:
        await to_bank.close()
        await to_shop.close()


async def exercise(run: Run) -> None:
    """The clients against the kills and the proxy's faults; returns once all are done."""
    stop = asyncio.Event()
    # No token on the channel: each call carries its customer's own.
    channels = [channel(run.ecommerce.address) for _ in range(run.options.clients)]
    clients = [
        Client(
            i,
            random.Random(seed),
            channels[i],
            run.plan.customers,
            run.plan.products,
            run.journal,
            f"s{run.options.seed}",
            run.customer_token,
        )
        for i, seed in enumerate(run.plan.client_seeds)
    ]
    tasks = [asyncio.create_task(c.run(stop, MAX_OPS_PER_CLIENT)) for c in clients]
    faults = asyncio.create_task(fault_schedule(run, run.proxy)) if run.proxy is not None else None
    outage = asyncio.create_task(broker_outage(run, run.broker)) if run.broker is not None else None
    try:
        # The kills may run past --duration when restarts are slow; the clients keep
        # going until every planned kill is done, within a hard bound.
        await asyncio.wait_for(kill_schedule(run), run.options.duration + 120)
        left = run.options.duration - (time.monotonic() - run.started)
        if left > 0:
            await asyncio.sleep(left)
    finally:
        stop.set()
        if faults is not None:
            faults.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await faults
        if outage is not None:
            await outage  # the broker is back before the checks
        done, late = await asyncio.wait(tasks, timeout=CLIENT_STOP_GRACE)
        for task in late:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                raise RuntimeError("a client crashed") from task.exception()
        for client_channel in channels:
            await client_channel.close()
    run.say(
        f"clients stopped: {run.journal.ops} operations, {run.journal.attempts} calls; "
        f"kills cardpoints:{run.cardpoints.kills} ecommerce:{run.ecommerce.kills}"
        + (f"; proxy {run.proxy.stats}" if run.proxy else "")
    )
    run.say(run.journal.tally())


async def reconcile(run: Run, since: datetime, until: datetime) -> str:
    """`pointsbridge reconcile --json` over the run's window: clean, mismatch or error."""
    command = [
        str(CLI),
        "--cardpoints",
        run.cardpoints.address,
        "--ecommerce",
        run.ecommerce.address,
        "reconcile",
        "--since",
        since.isoformat(),
        "--until",
        until.isoformat(),
        "--json",
    ]
    # Hermetic, and the operator token in the environment rather than in `ps` output.
    env = {k: v for k, v in os.environ.items() if not k.startswith("POINTSBRIDGE_")}
    env["POINTSBRIDGE_TOKEN"] = run.operator
    done = await asyncio.to_thread(
        subprocess.run,
        command,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    (run.workdir / "reconcile.json").write_text(done.stdout)
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        report = None
    mismatches = report.get("mismatches") if isinstance(report, dict) else None
    if isinstance(report, dict):
        run.say(f"reconcile exit {done.returncode}, counted {report.get('counted')}")
    if done.returncode == 0 and mismatches == []:
        return "clean"
    if done.returncode != 0 and isinstance(mismatches, list) and mismatches:
        for mismatch in mismatches:
            print(f"reconcile mismatch: {json.dumps(mismatch, sort_keys=True)}")
        return "mismatch"
    print(
        f"reconcile failed (exit {done.returncode}): {done.stderr.strip() or done.stdout.strip()}"
    )
    return "error"


async def main_async(options: Options) -> int:
    plan = Plan.draw(options)
    if options.workdir is not None:
        workdir = options.workdir
        workdir.mkdir(parents=True, exist_ok=True)
    else:
        workdir = Path(tempfile.mkdtemp(prefix=f"chaos-{options.db}-seed{options.seed}-"))
    print(f"chaos: seed {options.seed} on {options.db}; logs in {workdir}", flush=True)
    try:
        return await _run_on(options, plan, workdir)
    except SQLAlchemyError as error:
        print(f"chaos: cannot make the {options.db} databases: {error}")
        return 2


async def _run_on(options: Options, plan: Plan, workdir: Path) -> int:
    with fresh_databases(options.db, workdir, "chaos", options.pg_url) as dbs:
        run = Run(options, plan, workdir, dbs)
        try:
            violations, pending, verdict = await drive(run)
        except (RuntimeError, OSError, grpc.aio.AioRpcError) as error:
            print(f"chaos: the harness could not finish: {error}")
            for service in (run.cardpoints, run.ecommerce):
                print(f"--- last lines of {service.name} ---\n{service.tail()}")
            return 2
        finally:
            if run.proxy is not None:
                await run.proxy.close()
            for service in (*run.standbys, run.ecommerce, run.cardpoints):
                service.stop()
            if run.broker is not None:
                run.broker.stop()
    for violation in violations:
        print(violation)
    kills_done = min(run.cardpoints.kills, run.ecommerce.kills)
    if kills_done < options.kills:
        print(f"chaos: only {kills_done} kills of each service, {options.kills} asked for")
    print(
        f"ops={run.journal.ops} kills=cardpoints:{run.cardpoints.kills},"
        f"ecommerce:{run.ecommerce.kills} pending={pending} "
        f"settled_after_last_kill={_seconds(run.settled_after_last_kill)} "
        f"violations={len(violations)} "
        f"reconcile={verdict} events={run.events_checked} seed={options.seed} db={options.db}",
        flush=True,
    )
    if kills_done < options.kills:
        return 2
    ok = not violations and pending == 0 and verdict == "clean"
    if ok and options.workdir is None and not options.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}s"


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)
    loop = asyncio.new_event_loop()
    task = loop.create_task(main_async(options))
    # SIGTERM/SIGINT cancel the run; the finally blocks stop every process it started.
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        return loop.run_until_complete(task)
    except asyncio.CancelledError:
        print("chaos: interrupted")
        return 130
    finally:
        loop.close()


if __name__ == "__main__":
    sys.exit(main())
