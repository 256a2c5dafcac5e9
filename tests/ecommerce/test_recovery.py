"""The recovery loop: on fakes as the server runs it, and through real servers on both databases."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

import grpc
import pytest

from cardpoints.entrypoints.server import Settings as CardpointsSettings
from cardpoints.entrypoints.server import start as start_cardpoints
from ecommerce.domain import commands
from ecommerce.domain.errors import PointsSystemUnavailable
from ecommerce.domain.model import RedemptionState
from ecommerce.entrypoints.recovery import run_recovery
from ecommerce.entrypoints.server import Settings, start
from ecommerce.service_layer import redemptions
from ecommerce.service_layer.recovery import RecoveryPolicy
from pointsbridge.cardpoints.v1 import cardpoints_pb2 as cpb
from pointsbridge.cardpoints.v1 import cardpoints_pb2_grpc as cpb_grpc
from pointsbridge.ecommerce.v1 import ecommerce_pb2 as pb
from pointsbridge.ecommerce.v1 import ecommerce_pb2_grpc as pb_grpc
from servicekit.status import remote_error
from tests.auth import Callers
from tests.ecommerce.fakes import FakeClock, FakeDatabase, FakePointsGateway, fake_steps
from tests.ecommerce.seed import seed_over_grpc, seed_use_cases

TIMEOUT = 10.0
T = TypeVar("T")


async def wait_until(check: Callable[[], object], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await check():  # type: ignore[misc]
            return
        await asyncio.sleep(0.1)
    raise AssertionError("timed out")


async def test_the_servers_loop_sweeps_at_once_settles_and_stops_when_told() -> None:
    """run_recovery is what the server starts: a first sweep at once, then one an interval."""
    database, clock, points = FakeDatabase(), FakeClock(), FakePointsGateway()
    steps = fake_steps(database, clock)
    await seed_use_cases(steps, points)
    points.unreachable = 1
    with pytest.raises(PointsSystemUnavailable):
        await redemptions.redeem_points(
            steps, points, commands.RedeemPoints("outage-1", "alice", "coupon-10", 2)
        )
    stop = asyncio.Event()
    policy = RecoveryPolicy(settle_delay=timedelta(0))
    loop = asyncio.create_task(run_recovery(steps, points, policy, 3600.0, stop))
    for _ in range(1000):  # the fakes answer at once: the first sweep needs a few turns
        [(_, redemption)] = database.state.redemptions.values()
        if redemption.state is not RedemptionState.PENDING:
            break
        await asyncio.sleep(0)
    assert redemption.state is RedemptionState.COMPLETED
    assert len(points.successful_deductions()) == 1
    stop.set()
    await asyncio.wait_for(loop, TIMEOUT)


class BrokenRunner:
    """A database that fails every step; the second failure tells the loop to stop."""

    def __init__(self, stop: asyncio.Event) -> None:
        self.stop, self.sweeps = stop, 0

    async def run(self, fn: Callable[[], T]) -> T:
        raise AssertionError("a sweep starts with its claim, a write")

    async def write(self, fn: Callable[[], T]) -> T:
        self.sweeps += 1
        if self.sweeps == 2:
            self.stop.set()
        raise RuntimeError("the database is gone")


async def test_a_failed_sweep_is_logged_and_the_loop_carries_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stop = asyncio.Event()
    runner = BrokenRunner(stop)
    database, clock = FakeDatabase(), FakeClock()
    steps = dataclasses.replace(fake_steps(database, clock), runner=runner)
    with caplog.at_level("ERROR", logger="ecommerce.recovery"):
        await asyncio.wait_for(
            run_recovery(steps, FakePointsGateway(), RecoveryPolicy(), 0.0, stop), TIMEOUT
        )
    assert runner.sweeps == 2
    assert [r.getMessage() for r in caplog.records] == [
        "recovery sweep failed; the next one retries"
    ] * 2


async def test_the_loop_settles_what_an_outage_left_pending(
    make_db_url: Callable[[str], str],
    auth: Callers,
) -> None:
    cardpoints_url, ecommerce_url = make_db_url("cardpoints"), make_db_url("ecommerce")
    cardpoints = await start_cardpoints(
        CardpointsSettings(
            **auth.server_security, address="127.0.0.1:0", database_url=cardpoints_url, workers=2
        )
    )
    port = cardpoints.port
    ecommerce = await start(
        Settings(
            **auth.ecommerce_security,
            address="127.0.0.1:0",
            database_url=ecommerce_url,
            cardpoints_address=f"127.0.0.1:{port}",
            workers=2,
            deduct_timeout=1.0,
            recovery_interval=0.2,
            settle_delay=0.0,
        )
    )
    to_shop = auth.channel(f"127.0.0.1:{ecommerce.port}")
    to_bank = auth.channel(f"127.0.0.1:{port}")
    try:
        shop = pb_grpc.RedemptionServiceStub(to_shop)
        admin = pb_grpc.EcommerceAdminServiceStub(to_shop)
        await seed_over_grpc(to_bank, to_shop)

        await cardpoints.stop(0)
        redeem = pb.RedeemPointsRequest(
            request_id="outage-1", customer_id="alice", product_id="c10", quantity=2
        )
        try:
            await shop.RedeemPoints(redeem, timeout=TIMEOUT)
            raise AssertionError("redeemed with cardpoints down")
        except grpc.aio.AioRpcError as error:
            failure = remote_error(error)
        assert (failure.code, failure.reason) == (
            grpc.StatusCode.UNAVAILABLE,
            "POINTS_SYSTEM_UNAVAILABLE",
        )
        unsettled = await admin.ListUnsettled(pb.ListUnsettledRequest(), timeout=TIMEOUT)
        [operation] = unsettled.operations
        assert operation.kind == pb.UNSETTLED_KIND_REDEMPTION
        assert operation.request_id == "outage-1"
        assert operation.points == 2000
        assert not operation.needs_review

        # The bank comes back; nobody retries; the loop finishes the redemption.
        cardpoints = await start_cardpoints(
            CardpointsSettings(
                **auth.server_security, address=f"127.0.0.1:{port}", database_url=cardpoints_url
            )
        )

        async def settled() -> bool:
            listing = await admin.ListUnsettled(pb.ListUnsettledRequest(), timeout=TIMEOUT)
            return not listing.operations

        await wait_until(settled)
        export = await admin.ExportRedemptions(pb.ExportRedemptionsRequest(), timeout=TIMEOUT)
        [item] = export.redemptions
        assert item.redemption.state == pb.REDEMPTION_STATE_COMPLETED
        assert len(item.redemption.coupons) == 2
        bank = cpb_grpc.CardPointsServiceStub(to_bank)
        deduction = await bank.GetDeduction(
            cpb.GetDeductionRequest(request_id=f"redemption:{item.redemption.redemption_id}"),
            timeout=TIMEOUT,
        )
        assert deduction.deduction.deduction_id == item.redemption.deduction_id
        account = await bank.GetAccount(cpb.GetAccountRequest(account_id="card-a"), timeout=TIMEOUT)
        assert account.account.balance == 8000

        # The client's late retry returns the same redemption and moves nothing more.
        again = (await shop.RedeemPoints(redeem, timeout=TIMEOUT)).redemption
        assert again.redemption_id == item.redemption.redemption_id
        assert [c.code for c in again.coupons] == [c.code for c in item.redemption.coupons]
        account = await bank.GetAccount(cpb.GetAccountRequest(account_id="card-a"), timeout=TIMEOUT)
        assert account.account.balance == 8000
    finally:
        await to_shop.close()
        await to_bank.close()
        await ecommerce.stop(1)
        await cardpoints.stop(0)
