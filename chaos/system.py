"""The system under test in one harness run: its processes, credentials and seed data,
and the kills and faults done to it while the clients run."""

from __future__ import annotations

import asyncio
import functools
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from chaos.broker import NatsServer
from chaos.journal import Journal
from chaos.plan import CARDPOINTS, ECOMMERCE, Options, Plan
from chaos.proxy import FaultProxy, Mode
from pointsbridge.cardpoints.v1 import cardpoints_pb2 as cp
from pointsbridge.cardpoints.v1 import cardpoints_pb2_grpc as cp_grpc
from pointsbridge.ecommerce.v1 import ecommerce_pb2 as ec
from pointsbridge.ecommerce.v1 import ecommerce_pb2_grpc as ec_grpc
from servicekit.auth import ROLE_ADMIN, ROLE_CUSTOMER, ROLE_SERVICE
from servicekit.devtools.credentials import Credentials
from servicekit.devtools.databases import Databases
from servicekit.devtools.launch import ServiceProcess, cardpoints_command, ecommerce_command

RECOVERY_INTERVAL = 0.5
SETTLE_DELAY = 1.0
DEDUCT_TIMEOUT = 1.5
ADMIN_TIMEOUT = 10.0
# The broker's one SIGKILL, as a fraction of --duration, and how long it stays down.
BROKER_KILL_AT = 0.4
BROKER_DOWNTIME = 2.0
TTL = 24 * 3600  # every token of a run outlives it
OPERATOR = "chaos-operator"


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
    operator: str = field(init=False)
    customer_token: Callable[[str], str] = field(init=False)
    broker: NatsServer | None = field(init=False, default=None)
    # On PostgreSQL with events: a second process of each service on the same database,
    # never killed, whose relay stands by and takes over the lease from a killed one.
    standbys: list[ServiceProcess] = field(init=False, default_factory=list)
    events_checked: int = 0

    def __post_init__(self) -> None:
        self.credentials = Credentials.ensure(self.workdir / "credentials", service_ttl=TTL)
        # The operator seeds and reads the books; each customer may act only for itself.
        self.operator = self.credentials.issue(OPERATOR, ROLE_ADMIN, ROLE_SERVICE, ttl=TTL)
        self.customer_token = functools.cache(
            lambda customer_id: self.credentials.issue(customer_id, ROLE_CUSTOMER, ttl=TTL)
        )
        if self.options.events:
            (self.workdir / "nats").mkdir(exist_ok=True)
            self.broker = NatsServer(self.workdir / "nats")
        cardpoints = cardpoints_command(
            self.dbs.cardpoints, *self.credentials.server_flags, *self._event_flags()
        )
        self.cardpoints = self._process(CARDPOINTS, cardpoints)
        self.ecommerce = self._process(ECOMMERCE, self._ecommerce_argv)
        if self.broker is not None and self.options.db == "postgres":
            self.standbys = [
                self._process(f"{CARDPOINTS}-standby", cardpoints),
                self._process(f"{ECOMMERCE}-standby", self._ecommerce_argv),
            ]

    def _process(self, name: str, argv: Callable[[str], list[str]]) -> ServiceProcess:
        # Hermetic; and SIGKILLed by the kernel if the harness dies, so none outlives a run.
        return ServiceProcess(name, argv, self.workdir, hermetic=True, lifeline=signal.SIGKILL)

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


async def restart(run: Run, service: ServiceProcess) -> None:
    for attempt in range(3):
        try:
            await service.serve(within=30.0)
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
        pid = service.pid
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
