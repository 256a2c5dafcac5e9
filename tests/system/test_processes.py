"""`--processes N`: two processes of each service on one port each, on PostgreSQL, under
load, with every invariant intact; SQLite refused; SIGTERM and SIGKILL on the parent.

Both services run as real servers (port 0, their own processes); the load is bounded in
count (calls in flight) and in time, and nothing here is timed against a budget.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from chaos.checker import check
from chaos.journal import Customer, Journal, Outcome, RedeemCall
from chaos.snapshot import take_snapshot, wait_settled
from pointsbridge.cardpoints.v1 import cardpoints_pb2 as cp
from pointsbridge.cardpoints.v1 import cardpoints_pb2_grpc as cp_grpc
from pointsbridge.ecommerce.v1 import ecommerce_pb2 as ec
from pointsbridge.ecommerce.v1 import ecommerce_pb2_grpc as ec_grpc
from servicekit.devtools.credentials import channel
from servicekit.devtools.launch import ServiceProcess, cardpoints_command, ecommerce_command
from servicekit.status import remote_error
from tests.auth import Callers
from tests.metrics_scrape import scrape
from tests.support import ROOT

PROCESSES = 2
CUSTOMERS = 6
CREDITED = 20_000
PRODUCT = "procs-coupon"
POINTS_PER_COUPON = 100
DIRECT_POINTS = 30
DIRECT_PREFIX = "direct-"
# The load: this many calls in flight of each kind, for this long.
REDEEMERS = 12
DEDUCTERS = 8
LOAD_SECONDS = 5.0
# Separate connections (a channel each, not shared), so that the kernel has some to spread
# over the processes of the port.
CONNECTIONS = 12
TIMEOUT = 10.0
UNKNOWN = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})

_PID = re.compile(r"process (\d+) serving (?:again )?\(pid (\d+)\)")


def _connections(address: str, token: str) -> list[grpc.aio.Channel]:
    return [
        channel(address, token, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(CONNECTIONS)
    ]


def _lines(service: ServiceProcess) -> list[dict[str, object]]:
    lines = []
    for line in service.log().splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def _served_by(service: ServiceProcess, rpc: str) -> dict[int, int]:
    """How many calls of `rpc` each process logged, by its index."""
    counts: dict[int, int] = {}
    for line in _lines(service):
        if line.get("logger") == "pointsbridge.rpc" and line.get("rpc") == rpc:
            index = int(str(line["server_process"]))
            counts[index] = counts.get(index, 0) + 1
    return counts


def _pids(service: ServiceProcess) -> dict[int, int]:
    """The pid of each process (the newest incarnation), by its index."""
    return {int(m[1]): int(m[2]) for m in _PID.finditer(service.log())}


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _wait_gone(pids: list[int], within: float = 30.0) -> list[int]:
    deadline = time.monotonic() + within
    while (left := [p for p in pids if _alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


async def _wait_for(service: ServiceProcess, text: str, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while text not in service.log():
        assert time.monotonic() < deadline, f"no {text!r} in:\n{service.tail()}"
        await asyncio.sleep(0.1)


async def _seed(
    bank_admin: cp_grpc.CardPointsAdminServiceAsyncStub,
    admin: ec_grpc.EcommerceAdminServiceAsyncStub,
) -> list[Customer]:
    customers = [
        Customer(f"procs-customer-{i}", f"procs-card-{i}", CREDITED) for i in range(CUSTOMERS)
    ]
    for customer in customers:
        await bank_admin.OpenAccount(
            cp.OpenAccountRequest(account_id=customer.account_id, holder_name="Processes"),
            timeout=TIMEOUT,
        )
        await bank_admin.CreditPoints(
            cp.CreditPointsRequest(
                request_id=f"credit-{customer.account_id}",
                account_id=customer.account_id,
                points=CREDITED,
            ),
            timeout=TIMEOUT,
        )
        await admin.LinkCardAccount(
            ec.LinkCardAccountRequest(
                customer_id=customer.customer_id, card_account_id=customer.account_id
            ),
            timeout=TIMEOUT,
        )
    await admin.CreateCouponProduct(
        ec.CreateCouponProductRequest(
            product_id=PRODUCT,
            display_name="Processes coupon",
            face_value_minor=500,
            currency="CNY",
            points_per_coupon=POINTS_PER_COUPON,
            validity_days=30,
            max_quantity_per_redemption=5,
        ),
        timeout=TIMEOUT,
    )
    return customers


async def _load(
    shops: list[ec_grpc.RedemptionServiceAsyncStub],
    banks: list[cp_grpc.CardPointsServiceAsyncStub],
    customers: list[Customer],
    journal: Journal,
) -> dict[str, int]:
    """REDEEMERS RedeemPoints and DEDUCTERS DeductPoints in flight for LOAD_SECONDS; the
    direct deductions cardpoints acknowledged, by request id."""
    rng = random.Random(12)
    numbers = itertools.count()
    deducted: dict[str, int] = {}
    deadline = time.monotonic() + LOAD_SECONDS

    async def redeemer(shop: ec_grpc.RedemptionServiceAsyncStub) -> None:
        while time.monotonic() < deadline:
            customer = rng.choice(customers)
            call = RedeemCall(
                request_id=f"procs-rd-{next(numbers)}",
                customer_id=customer.customer_id,
                product_id=PRODUCT,
                quantity=rng.randint(1, 3),
                expected_points=None,
            )
            journal.redeems.append(call)
            try:
                answer = await shop.RedeemPoints(
                    ec.RedeemPointsRequest(
                        request_id=call.request_id,
                        customer_id=call.customer_id,
                        product_id=call.product_id,
                        quantity=call.quantity,
                    ),
                    timeout=TIMEOUT,
                )
            except grpc.aio.AioRpcError as failure:
                error = remote_error(failure)
                if error.code not in UNKNOWN:
                    call.outcome, call.reason = Outcome.REFUSED, error.reason
                continue
            redemption = answer.redemption
            call.outcome = Outcome.OK
            call.redemption_id = redemption.redemption_id
            call.state = redemption.state
            call.codes = tuple(c.code for c in redemption.coupons)
            call.points = redemption.points

    async def deducter(bank: cp_grpc.CardPointsServiceAsyncStub) -> None:
        while time.monotonic() < deadline:
            request_id = f"{DIRECT_PREFIX}{next(numbers)}"
            try:
                await bank.DeductPoints(
                    cp.DeductPointsRequest(
                        request_id=request_id,
                        account_id=rng.choice(customers).account_id,
                        points=DIRECT_POINTS,
                        coupon_quantity=1,
                        points_per_coupon=DIRECT_POINTS,
                        merchant_id="procs-merchant",
                    ),
                    timeout=TIMEOUT,
                )
            except grpc.aio.AioRpcError:
                continue  # refused (e.g. not enough points) or unknown: no claim either way
            deducted[request_id] = DIRECT_POINTS

    await asyncio.gather(
        *(redeemer(shops[i % len(shops)]) for i in range(REDEEMERS)),
        *(deducter(banks[i % len(banks)]) for i in range(DEDUCTERS)),
    )
    return deducted


@pytest.mark.timeout(240)
@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_two_processes_of_each_service_share_its_port_under_load_and_keep_the_invariants(
    make_db_url: Callable[[str], str], auth: Callers, tmp_path: Path
) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    processes = ("--processes", str(PROCESSES), "--metrics-address", "127.0.0.1:0")
    cardpoints = ServiceProcess(
        "cardpoints",
        cardpoints_command(make_db_url("cardpoints"), *auth.server_flags, *processes),
        logs,
        hermetic=True,
        lifeline=signal.SIGKILL,
    )
    ecommerce: ServiceProcess | None = None
    channels: list[grpc.aio.Channel] = []
    try:
        await cardpoints.serve(within=90)
        ecommerce = ServiceProcess(
            "ecommerce",
            ecommerce_command(
                make_db_url("ecommerce"),
                cardpoints.address,
                "--recovery-interval",
                "1",
                "--settle-delay",
                "0.5",
                *auth.ecommerce_flags,
                *processes,
            ),
            logs,
            hermetic=True,
            lifeline=signal.SIGKILL,
        )
        await ecommerce.serve(within=90)
        for service in (cardpoints, ecommerce):
            assert service.log().count("serving on port") == 1
            assert sorted(_pids(service)) == [1, 2]
            assert "metrics on port" in service.log() and service.metrics_port

        bank_channels = _connections(cardpoints.address, auth.superuser)
        shop_channels = _connections(ecommerce.address, auth.superuser)
        channels = [*bank_channels, *shop_channels]
        customers = await _seed(
            cp_grpc.CardPointsAdminServiceStub(bank_channels[0]),
            ec_grpc.EcommerceAdminServiceStub(shop_channels[0]),
        )
        journal = Journal()
        deducted = await _load(
            [ec_grpc.RedemptionServiceStub(c) for c in shop_channels],
            [cp_grpc.CardPointsServiceStub(c) for c in bank_channels],
            customers,
            journal,
        )
        completed = [c for c in journal.redeems if c.outcome is Outcome.OK]
        assert completed and deducted, journal.tally()

        # Recovery (each ecommerce process runs it) leaves nothing PENDING.
        assert await wait_settled(shop_channels[0], 60) == []
        snap = await take_snapshot(bank_channels[0], shop_channels[0], customers)
        direct = [d for d in snap.deductions if d.request_id.startswith(DIRECT_PREFIX)]
        violations = [
            str(v)
            for v in check(snap, customers, journal)
            # A direct DeductPoints has no redemption by design; it is checked below.
            if not (v.invariant == "I3" and f"({DIRECT_PREFIX}" in v.message)
        ]
        assert violations == [], "\n".join(violations[:20])
        assert all(account.balance >= 0 for account in snap.accounts.values())
        by_request = {d.request_id: d for d in direct}
        assert len(by_request) == len(direct)  # each request deducted at most once
        for request_id, points in deducted.items():
            assert by_request[request_id].points == points
        for call in completed:
            assert len(call.codes) == call.quantity

        # More than one process served: every process logged some of the calls, and the
        # parent's /metrics sums what they all counted.
        deductions = _served_by(cardpoints, "DeductPoints")
        redemptions = _served_by(ecommerce, "RedeemPoints")
        assert sorted(deductions) == [1, 2], deductions
        assert sorted(redemptions) == [1, 2], redemptions
        assert cardpoints.metrics_port is not None
        counted = sum(
            value
            for (name, labels), value in scrape(cardpoints.metrics_port).items()
            if name == "pointsbridge_rpc_requests_total" and ("method", "DeductPoints") in labels
        )
        assert counted == sum(deductions.values())
        # A gauge every process sets from the same database is one value, not one per pid.
        assert ecommerce.metrics_port is not None
        unsettled = [
            labels
            for (name, labels), _ in scrape(ecommerce.metrics_port).items()
            if name == "ecommerce_unsettled_operations"
        ]
        assert unsettled, "the recovery sweeps report what they left unsettled"
        assert all("pid" not in dict(labels) for labels in unsettled), unsettled

        # A process that dies is started again, on the same port.
        pids = _pids(cardpoints)
        os.kill(pids[2], signal.SIGKILL)
        await _wait_for(cardpoints, "process 2 serving again")
        assert _pids(cardpoints)[2] != pids[2]
        for bank in bank_channels:
            await cp_grpc.CardPointsServiceStub(bank).GetAccount(
                cp.GetAccountRequest(account_id=customers[0].account_id), timeout=TIMEOUT
            )

        # SIGKILL on a parent: its processes do not stay behind.
        ecommerce_pids = list(_pids(ecommerce).values())
        ecommerce.kill()
        assert _wait_gone(ecommerce_pids) == []

        # SIGTERM on a parent: every process drains, and the parent exits 0.
        cardpoints_pids = list(_pids(cardpoints).values())
        assert cardpoints.stop(timeout=60) == 0
        assert _wait_gone(cardpoints_pids) == []
        stopped = {
            line.get("server_process")
            for line in _lines(cardpoints)
            if line.get("message") == "stopped"
        }
        assert stopped == {0, 1, 2}
    finally:
        for open_channel in channels:
            await open_channel.close()
        if ecommerce is not None:
            ecommerce.stop()
        cardpoints.stop()


def _refused(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *args, "--log-format", "text"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith("POINTSBRIDGE_")},
    )


@pytest.mark.parametrize("service", ["cardpoints", "ecommerce"])
def test_sqlite_with_two_processes_is_refused_in_one_sentence_before_anything_opens(
    service: str, tmp_path: Path
) -> None:
    database = tmp_path / "refused.db"
    done = _refused(
        f"{service}.entrypoints.server",
        "--processes",
        "2",
        "--database-url",
        f"sqlite:///{database}",
    )
    assert done.returncode == 2, done.stderr
    assert "--processes 2 needs PostgreSQL" in done.stderr
    assert "postgresql://" in done.stderr
    assert "Traceback" not in done.stderr
    assert not database.exists()


def test_fewer_than_one_process_is_refused(tmp_path: Path) -> None:
    done = _refused(
        "cardpoints.entrypoints.server",
        "--processes",
        "0",
        "--database-url",
        f"sqlite:///{tmp_path / 'refused.db'}",
    )
    assert done.returncode == 2, done.stderr
    assert "--processes must be at least 1, got 0" in done.stderr


def test_the_processes_come_from_the_flag_or_each_service_s_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from cardpoints.entrypoints.server import parse_settings as cardpoints_settings
    from ecommerce.entrypoints.server import parse_settings as ecommerce_settings

    assert cardpoints_settings([])[0].processes == 1
    monkeypatch.setenv("POINTSBRIDGE_ECOMMERCE_PROCESSES", "3")
    assert ecommerce_settings([])[0].processes == 3
    assert ecommerce_settings(["--processes", "2"])[0].processes == 2
    assert cardpoints_settings([])[0].processes == 1


def test_a_process_that_cannot_start_stops_the_parent_with_its_exit_code() -> None:
    # No --token-public-key: the first process refuses, before it opens the database.
    done = _refused(
        "cardpoints.entrypoints.server",
        "--processes",
        "2",
        "--address",
        "127.0.0.1:0",
        "--insecure-plaintext",
        "true",
        "--database-url",
        "postgresql://postgres@127.0.0.1:1/never-opened",
    )
    assert done.returncode == 2, done.stderr
    assert "process 1 did not start (it exited with code 2)" in done.stderr
    assert "serving on port" not in done.stderr
    assert "Traceback" not in done.stderr
