"""Recovery claims on real databases: a dead sweeper's run out fast, a live one's are kept."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import NamedTuple

import pytest

from ecommerce.adapters.unit_of_work import SqlUnitOfWork
from ecommerce.domain import commands
from ecommerce.domain.card_points import Deduction, DeductionOrder
from ecommerce.domain.errors import PointsSystemUnavailable
from ecommerce.domain.model import RedemptionState
from ecommerce.entrypoints.server import MIGRATIONS, VERSION_TABLE, Settings, recovery_policy
from ecommerce.service_layer import recovery, redemptions
from ecommerce.service_layer.ports import EcommerceSteps, UnitOfWork
from servicekit.clock import Clock, utc_now
from servicekit.config import ConfigError
from servicekit.db import Database, create_db_engine, upgrade_schema
from servicekit.steps import Steps
from tests.ecommerce.fakes import FakePointsGateway
from tests.ecommerce.seed import seed_use_cases

LEASE = timedelta(seconds=1)
POLICY = recovery.RecoveryPolicy(lease=LEASE, settle_delay=timedelta(0))


class SlowPointsGateway(FakePointsGateway):
    """Cardpoints that takes `delay` seconds over each DeductPoints."""

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__()
        self.delay = delay
        self.deducting = asyncio.Event()

    def same_bank(self, delay: float = 0.0) -> SlowPointsGateway:
        """Another channel to the same cardpoints (its accounts and deductions)."""
        other = SlowPointsGateway(delay)
        other.accounts, other.deductions = self.accounts, self.deductions
        other.reversals, other.reversed = self.reversals, self.reversed
        return other

    async def deduct_points(self, order: DeductionOrder) -> Deduction:
        self.deducting.set()
        await asyncio.sleep(self.delay)
        return await super().deduct_points(order)


class Replica(NamedTuple):
    steps: EcommerceSteps
    points: SlowPointsGateway


@dataclass
class Shop:
    database: Database
    points: SlowPointsGateway

    def replica(self, points: SlowPointsGateway) -> Replica:
        """Another replica's view: the same database, its own channel to cardpoints."""
        steps: EcommerceSteps = Steps(
            runner=self.database,
            uow=lambda: SqlUnitOfWork(self.database.sessions),
            read_uow=lambda: SqlUnitOfWork(self.database.sessions),
            clock=utc_now,
        )
        return Replica(steps, points)


@pytest.fixture
async def shop(make_db_url: Callable[[str], str]) -> AsyncIterator[Shop]:
    engine = create_db_engine(make_db_url("ecommerce"), pool_size=4)
    upgrade_schema(engine, MIGRATIONS, VERSION_TABLE)
    database = Database(engine, workers=4)
    points = SlowPointsGateway()
    replica = Shop(database, points).replica(points)
    await seed_use_cases(replica.steps, points)
    # An outage leaves one redemption PENDING for the sweeps.
    points.unreachable = 1
    with pytest.raises(PointsSystemUnavailable):
        await redemptions.redeem_points(
            *replica,
            commands.RedeemPoints(
                request_id="redeem-1",
                customer_id="alice",
                product_id="coupon-10",
                quantity=2,
                expected_points=None,
            ),
        )
    yield Shop(database, points)
    database.close()


async def _state(replica: Replica) -> RedemptionState:
    def read(uow: UnitOfWork, request_id: str, clock: Clock) -> RedemptionState:
        with uow:
            redemption = uow.redemptions.get_by_request_id(request_id)
        assert redemption is not None
        return redemption.state

    return await replica.steps.read(read, "redeem-1")


def test_the_default_lease_is_seconds_and_is_not_stretched_to_cover_calls() -> None:
    lease = recovery_policy(Settings()).lease
    assert lease <= timedelta(seconds=10)
    assert recovery_policy(Settings(deduct_timeout=30, recovery_lease=2)).lease == timedelta(
        seconds=2
    )
    with pytest.raises(ConfigError, match="--recovery-lease"):
        recovery_policy(Settings(recovery_lease=0))


async def test_a_dead_sweepers_claim_is_taken_over_once_its_short_lease_runs_out(
    shop: Shop,
) -> None:
    survivor = shop.replica(shop.points.same_bank())
    # A sweeper claims the row, then dies: nobody releases or renews its claim.
    now = utc_now()

    def claim_and_die(uow: UnitOfWork, cmd: None, clock: Clock) -> list[str]:
        with uow:
            claimed = uow.redemptions.claim_pending(
                now=now, untouched_since=now, lease_until=now + LEASE, limit=10
            )
            uow.commit()
        return claimed

    assert len(await shop.replica(shop.points).steps.write(claim_and_die, None)) == 1
    assert (await recovery.recover(*survivor, POLICY)).settled == 0
    started = time.monotonic()
    while (await recovery.recover(*survivor, POLICY)).settled == 0:
        assert time.monotonic() - started < 5, "the dead sweeper's claim never ran out"
        await asyncio.sleep(0.1)
    assert time.monotonic() - started >= LEASE.total_seconds() * 0.5
    assert await _state(survivor) is RedemptionState.COMPLETED


async def test_a_live_sweepers_long_running_work_keeps_its_claim(shop: Shop) -> None:
    # The call to cardpoints outlasts the lease three times over.
    slow = shop.points.same_bank(delay=3 * LEASE.total_seconds())
    other = shop.points.same_bank()
    working = asyncio.create_task(recovery.recover(*shop.replica(slow), POLICY))
    await asyncio.wait_for(slow.deducting.wait(), 5)
    # Past the lease, and past it again: another replica's sweeps still find it held.
    for _ in range(4):
        await asyncio.sleep(LEASE.total_seconds() * 0.6)
        assert (await recovery.recover(*shop.replica(other), POLICY)).settled == 0
    assert not other.deducting.is_set()
    report = await asyncio.wait_for(working, 10)
    assert report.settled == 1
    assert len(shop.points.successful_deductions()) == 1
    assert await _state(shop.replica(slow)) is RedemptionState.COMPLETED
    # Once the work is over, the claim is gone: nothing is left for anyone to take.
    assert (await recovery.recover(*shop.replica(other), POLICY)).settled == 0
