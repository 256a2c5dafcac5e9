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

import argparse
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
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
from sqlalchemy.exc import SQLAlchemyError

from chaos import checker
from chaos.broker import NatsServer
from chaos.credentials import Credentials, bearer, channel
from chaos.databases import DEFAULT_PG_URL, Databases, delete_coupon_row, provision
from chaos.event_check import check_events
from chaos.process import ServiceProcess, cardpoints_command, ecommerce_command
from chaos.proxy import FaultProxy, Mode
from chaos.workload import CHANNEL_OPTIONS, Client, Customer, Journal, Product
from pointsbridge.cardpoints.v1 import cardpoints_pb2 as cp
from pointsbridge.cardpoints.v1 import cardpoints_pb2_grpc as cp_grpc
from pointsbridge.ecommerce.v1 import ecommerce_pb2 as ec
from pointsbridge.ecommerce.v1 import ecommerce_pb2_grpc as ec_grpc

CARDPOINTS = "cardpoints"
ECOMMERCE = "ecommerce"
CLI = Path(sys.executable).parent / "pointsbridge"

RECOVERY_INTERVAL = 0.5
SETTLE_DELAY = 1.0
DEDUCT_TIMEOUT = 1.5
SETTLE_WITHIN = 45.0
CLIENT_STOP_GRACE = 40.0
MAX_OPS_PER_CLIENT = 100_000
ADMIN_TIMEOUT = 10.0
# The broker's one SIGKILL, as a fraction of --duration, and how long it stays down.
BROKER_KILL_AT = 0.4
BROKER_DOWNTIME = 2.0
# A relay restarted after a SIGKILL waits out its predecessor's lease before publishing.
EVENTS_WITHIN = 60.0


@dataclass(frozen=True)
class Preset:
    duration: float
    clients: int
    kills: int


PRESETS = {
    # `make test`: 15 s of load, so about 25 s per database on a 2-core machine, plus a
    # few seconds of waiting when a kill strands recovery claims (the default
    # --recovery-lease, which the harness leaves as an operator would).
    "short": Preset(duration=15.0, clients=4, kills=2),
    # `make chaos`: minutes, 10 kills of each service (20 in all) per database.
    "long": Preset(duration=150.0, clients=6, kills=10),
}


@dataclass(frozen=True)
class Options:
    db: str
    pg_url: str
    seed: int
    duration: float
    clients: int
    kills: int
    workdir: Path | None
    proxy: bool
    self_test: bool
    keep: bool
    # The relay on against a private nats-server, the broker killed once, and I8 checked.
    events: bool = True


@dataclass(frozen=True)
class Kill:
    at: float  # seconds after the clients start
    service: str
    downtime: float  # seconds between the SIGKILL and the restart


@dataclass(frozen=True)
class Fault:
    at: float
    mode: Mode
    length: float


@dataclass(frozen=True)
class Plan:
    """Everything random about a run, drawn from the seed before anything starts."""

    customers: tuple[Customer, ...]
    products: tuple[Product, ...]
    client_seeds: tuple[int, ...]
    kills: tuple[Kill, ...]
    faults: tuple[Fault, ...]

    @classmethod
    def draw(cls, options: Options) -> Plan:
        rng = random.Random(options.seed)
        # One poor account, soon refused (INSUFFICIENT_POINTS); the others hold enough
        # for most of the run's redemptions, more the longer it runs.
        customers = [Customer("chaos-cust-0", "chaos-card-0", 1_500)]
        scale = max(1, round(options.duration / 20))
        for i in range(1, options.clients + 1):
            points = rng.randint(150, 400) * 1000 * scale
            customers.append(Customer(f"chaos-cust-{i}", f"chaos-card-{i}", points))
        products = (
            Product("chaos-small", rng.choice((100, 150, 200)), 5),
            Product("chaos-medium", rng.choice((500, 800, 1000)), 4),
            Product("chaos-large", rng.choice((2000, 3000, 5000)), 3),
        )
        client_seeds = tuple(rng.getrandbits(64) for _ in range(options.clients))
        services = [CARDPOINTS, ECOMMERCE] * options.kills
        rng.shuffle(services)
        start, span = 0.08 * options.duration, 0.8 * options.duration
        slot = span / max(len(services), 1)
        kills = tuple(
            Kill(start + i * slot + rng.uniform(0, slot / 2), service, rng.uniform(0.0, 1.0))
            for i, service in enumerate(services)
        )
        faults: list[Fault] = []
        if options.proxy:
            count = max(3, int(options.duration // 6))
            fault_slot = options.duration * 0.85 / count
            for i in range(count):
                mode = rng.choice((Mode.CUT, Mode.STALL))
                length = rng.uniform(0.3, 1.5) if mode is Mode.CUT else rng.uniform(0.5, 3.0)
                faults.append(Fault(i * fault_slot + rng.uniform(0, fault_slot / 2), mode, length))
        return cls(tuple(customers), products, client_seeds, kills, tuple(faults))


@dataclass
class Run:
    options: Options
    plan: Plan
    workdir: Path
    dbs: Databases
    proxy: FaultProxy | None = None
    journal: Journal = field(default_factory=Journal)
    started: float = 0.0
    # When the last SIGKILL landed, and how long after it nothing was PENDING any more.
    last_kill: float = 0.0
    settled_after_last_kill: float | None = None
    cardpoints: ServiceProcess = field(init=False)
    ecommerce: ServiceProcess = field(init=False)
    credentials: Credentials = field(init=False)
    broker: NatsServer | None = field(init=False, default=None)
    # On PostgreSQL with events: a second process of each service on the same database,
    # never killed, whose relay stands by and takes over the lease from a killed one.
    standbys: list[ServiceProcess] = field(init=False, default_factory=list)
    events_checked: int = 0

    def __post_init__(self) -> None:
        self.credentials = Credentials.create(self.workdir / "credentials")
        if self.options.events:
            (self.workdir / "nats").mkdir(exist_ok=True)
            self.broker = NatsServer(self.workdir / "nats")
        self.cardpoints = ServiceProcess(
            CARDPOINTS,
            cardpoints_command(
                self.dbs.cardpoints, *self.credentials.server_flags, *self._event_flags()
            ),
            self.workdir,
        )
        self.ecommerce = ServiceProcess(ECOMMERCE, self._ecommerce_argv, self.workdir)
        if self.broker is not None and self.options.db == "postgres":
            self.standbys = [
                ServiceProcess(
                    f"{CARDPOINTS}-standby",
                    cardpoints_command(
                        self.dbs.cardpoints, *self.credentials.server_flags, *self._event_flags()
                    ),
                    self.workdir,
                ),
                ServiceProcess(f"{ECOMMERCE}-standby", self._ecommerce_argv, self.workdir),
            ]

    def _event_flags(self) -> list[str]:
        return ["--nats-url", self.broker.url] if self.broker is not None else []

    def _ecommerce_argv(self, address: str) -> list[str]:
        """Through the proxy when there is one; read at every (re)start."""
        upstream = self.proxy.address if self.proxy is not None else self.cardpoints.address
        return ecommerce_command(
            self.dbs.ecommerce,
            upstream,
            "--recovery-interval",
            str(RECOVERY_INTERVAL),
            "--settle-delay",
            str(SETTLE_DELAY),
            "--deduct-timeout",
            str(DEDUCT_TIMEOUT),
            *self.credentials.ecommerce_flags,
            *self._event_flags(),
        )(address)

    def say(self, message: str) -> None:
        elapsed = time.monotonic() - self.started if self.started else 0.0
        print(f"chaos: [{elapsed:6.1f}s] {message}", flush=True)


# ---------------------------------------------------------------- setup


async def seed_data(run: Run, cardpoints: grpc.aio.Channel, ecommerce: grpc.aio.Channel) -> None:
    bank = cp_grpc.CardPointsAdminServiceStub(cardpoints)
    shop = ec_grpc.EcommerceAdminServiceStub(ecommerce)
    for customer in run.plan.customers:
        await bank.OpenAccount(
            cp.OpenAccountRequest(account_id=customer.account_id, holder_name=customer.customer_id),
            timeout=ADMIN_TIMEOUT,
        )
        # Two credits, so that the ledger starts with more than one entry.
        first = customer.credited // 3
        for n, points in enumerate((first, customer.credited - first)):
            await bank.CreditPoints(
                cp.CreditPointsRequest(
                    request_id=f"chaos-credit-{customer.account_id}-{n}",
                    account_id=customer.account_id,
                    points=points,
                    reason="chaos harness",
                ),
                timeout=ADMIN_TIMEOUT,
            )
    for product in run.plan.products:
        await shop.CreateCouponProduct(
            ec.CreateCouponProductRequest(
                product_id=product.product_id,
                display_name=f"Chaos {product.product_id}",
                face_value_minor=product.points_per_coupon,
                currency="CNY",
                points_per_coupon=product.points_per_coupon,
                validity_days=30,
                max_quantity_per_redemption=product.max_quantity,
            ),
            timeout=ADMIN_TIMEOUT,
        )
    for customer in run.plan.customers:
        await shop.LinkCardAccount(
            ec.LinkCardAccountRequest(
                customer_id=customer.customer_id, card_account_id=customer.account_id
            ),
            timeout=ADMIN_TIMEOUT,
        )


# ---------------------------------------------------------------- faults


async def restart(run: Run, service: ServiceProcess) -> None:
    for attempt in range(3):
        try:
            await service.start(within=30.0)
            return
        except RuntimeError as error:
            run.say(f"{service.name} restart {attempt + 1} failed: {error}")
            service.kill()
    raise RuntimeError(f"{service.name} would not come back on port {service.port}")


async def kill_schedule(run: Run) -> None:
    """SIGKILL one service at a time at the planned moments; restart it on its port."""
    services = {CARDPOINTS: run.cardpoints, ECOMMERCE: run.ecommerce}
    for kill in run.plan.kills:
        wait = kill.at - (time.monotonic() - run.started)
        if wait > 0:
            await asyncio.sleep(wait)
        service = services[kill.service]
        pid = service.process.pid if service.process else 0
        service.kill()
        run.last_kill = time.monotonic()
        run.say(f"SIGKILL {service.name} (pid {pid}); restart in {kill.downtime:.2f}s")
        await asyncio.sleep(kill.downtime)
        began = time.monotonic()
        await restart(run, service)
        run.say(
            f"{service.name} SERVING again on port {service.port} "
            f"after {time.monotonic() - began:.2f}s"
        )


async def broker_outage(run: Run, broker: NatsServer) -> None:
    """SIGKILL the broker once, mid-run, and restart it on its port and store."""
    await asyncio.sleep(max(0.0, run.options.duration * BROKER_KILL_AT))
    broker.kill()
    run.say(f"SIGKILL nats-server; restart in {BROKER_DOWNTIME:.1f}s")
    await asyncio.sleep(BROKER_DOWNTIME)
    await asyncio.to_thread(broker.start)
    run.say("nats-server back")


async def fault_schedule(run: Run, proxy: FaultProxy) -> None:
    """Lose (CUT) or hold (STALL) cardpoints' responses to ecommerce in planned windows."""
    try:
        for fault in run.plan.faults:
            wait = fault.at - (time.monotonic() - run.started)
            if wait > 0:
                await asyncio.sleep(wait)
            proxy.set_mode(fault.mode)
            await asyncio.sleep(fault.length)
            proxy.set_mode(Mode.FORWARD)
    finally:
        proxy.set_mode(Mode.FORWARD)


# ---------------------------------------------------------------- the run


async def drive(run: Run) -> tuple[list[checker.Violation], int, str]:
    options = run.options
    if run.broker is not None:
        await asyncio.to_thread(run.broker.start)
    await run.cardpoints.start()
    if options.proxy:
        run.proxy = await FaultProxy(run.cardpoints.port).start()
    await run.ecommerce.start()
    run.say(
        f"cardpoints on {run.cardpoints.address}, ecommerce on {run.ecommerce.address}"
        + (f", proxy on {run.proxy.address}" if run.proxy else "")
    )
    for standby in run.standbys:
        await standby.start()
        run.say(f"{standby.name} on {standby.address} (same database; its relay stands by)")
    since = datetime.now(UTC) - timedelta(seconds=5)
    operator = run.credentials.operator
    to_bank = channel(run.cardpoints.address, operator, CHANNEL_OPTIONS)
    to_shop = channel(run.ecommerce.address, operator, CHANNEL_OPTIONS)
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
        left = await checker.wait_settled(to_shop, SETTLE_WITHIN)
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
        snap = await checker.take_snapshot(to_bank, to_shop, run.plan.customers)
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
            snap = await checker.take_snapshot(to_bank, to_shop, run.plan.customers)
            pending = snap.pending
            verdict = await reconcile(run, since, datetime.now(UTC) + timedelta(seconds=5))
        return violations, pending, verdict
    finally:
        await to_bank.close()
        await to_shop.close()


async def exercise(run: Run) -> None:
    """The clients against the kills and the proxy's faults; returns once all are done."""
    stop = asyncio.Event()
    channels = [
        grpc.aio.insecure_channel(run.ecommerce.address, options=CHANNEL_OPTIONS)
        for _ in range(run.options.clients)
    ]
    clients = [
        Client(
            i,
            random.Random(seed),
            channels[i],
            run.plan.customers,
            run.plan.products,
            run.journal,
            f"s{run.options.seed}",
            run.credentials.customer,
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
    env["POINTSBRIDGE_TOKEN"] = run.credentials.operator
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


async def sabotage(
    run: Run,
    to_bank: grpc.aio.Channel,
    to_shop: grpc.aio.Channel,
) -> list[checker.Violation]:
    """--self-test: break two invariants behind the services' backs, then check again.

    1. A deduction nobody redeemed: DeductPoints at cardpoints with a fresh request_id
       for a real account (a double charge, as a lost idempotency check would make).
    2. A coupon of a COMPLETED redemption deleted from the ecommerce database.
    """
    rng = random.Random(run.options.seed)
    snap = await checker.take_snapshot(to_bank, to_shop, run.plan.customers)
    rich = max(snap.accounts.values(), key=lambda a: (a.balance, a.account_id))
    product = run.plan.products[0]
    bogus = f"chaos-selftest-{run.options.seed}"
    await cp_grpc.CardPointsServiceStub(to_bank).DeductPoints(
        cp.DeductPointsRequest(
            request_id=bogus,
            account_id=rich.account_id,
            points=product.points_per_coupon,
            coupon_quantity=1,
            points_per_coupon=product.points_per_coupon,
            merchant_id="chaos-selftest",
        ),
        timeout=ADMIN_TIMEOUT,
        metadata=bearer(run.credentials.service),
    )
    print(
        f"self-test: injected deduction {bogus} of {product.points_per_coupon} points "
        f"from {rich.account_id}"
    )
    completed = sorted(
        (r for r in snap.redemptions if r.state == ec.REDEMPTION_STATE_COMPLETED),
        key=lambda r: r.request_id,
    )
    if not completed:
        raise RuntimeError("self-test: the run completed no redemption to break")
    victim = rng.choice(completed)
    code = sorted(c.code for c in victim.coupons)[0]
    deleted = await asyncio.to_thread(delete_coupon_row, run.dbs.ecommerce, code)
    print(f"self-test: deleted coupon {code} of redemption {victim.redemption_id} ({deleted} row)")
    after_snap = await checker.take_snapshot(to_bank, to_shop, run.plan.customers)
    after = checker.check(after_snap, run.plan.customers, run.journal)
    caught_deduction = any(bogus in v.message for v in after)
    caught_coupon = any(victim.redemption_id in v.message and v.invariant == "I4" for v in after)
    print(
        f"self-test: bogus deduction {'caught' if caught_deduction else 'MISSED'}, "
        f"deleted coupon {'caught' if caught_coupon else 'MISSED'}"
    )
    return after


# ---------------------------------------------------------------- entry point


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
    with provision(options.db, workdir, options.pg_url) as dbs:
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


def parse_options(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m chaos.harness",
        description=(
            "Run cardpoints and ecommerce as real processes, drive concurrent clients "
            "while SIGKILLing and restarting both, then check invariants I1-I6 across "
            "both databases and require a clean `pointsbridge reconcile`. Prints one "
            "summary line; exits 0 only if nothing was violated, 1 on a violation, 2 if "
            "the harness itself failed."
        ),
    )
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="short",
        help="duration/clients/kills: short (make test) or long (make chaos); "
        "explicit options win (default: short)",
    )
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument(
        "--pg-url",
        default=DEFAULT_PG_URL,
        help="PostgreSQL server for --db postgres; two fresh databases are created on it "
        f"and dropped afterwards (default: {DEFAULT_PG_URL})",
    )
    parser.add_argument("--seed", type=int, default=7, help="all randomness (default: 7)")
    parser.add_argument("--duration", type=float, help="seconds of client load")
    parser.add_argument("--clients", type=int, help="concurrent clients")
    parser.add_argument("--kills", type=int, help="minimum SIGKILLs of EACH service")
    parser.add_argument(
        "--workdir",
        type=Path,
        help="logs and SQLite files (default: a temporary directory, removed after a clean run)",
    )
    parser.add_argument(
        "--no-proxy",
        dest="proxy",
        action="store_false",
        help="connect ecommerce straight to cardpoints: no lost or delayed responses",
    )
    parser.add_argument(
        "--self-test",
        action="store_true",
        help="after the run, inject a bogus deduction and delete a coupon row, check again, "
        "and show that the checker reports both (the run then exits 1)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument(
        "--no-events",
        dest="events",
        action="store_false",
        help="no broker: the relays stay off and I8 (events) is not checked",
    )
    args = parser.parse_args(argv)
    preset = PRESETS[args.preset]
    options = Options(
        db=args.db,
        pg_url=args.pg_url,
        seed=args.seed,
        duration=args.duration if args.duration is not None else preset.duration,
        clients=args.clients if args.clients is not None else preset.clients,
        kills=args.kills if args.kills is not None else preset.kills,
        workdir=args.workdir,
        proxy=args.proxy,
        self_test=args.self_test,
        keep=args.keep,
        events=args.events,
    )
    if options.duration <= 0 or options.clients < 1 or options.kills < 0:
        parser.error("--duration must be positive, --clients at least 1, --kills at least 0")
    return options


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
