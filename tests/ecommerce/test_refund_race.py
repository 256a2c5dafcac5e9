"""Two copies of one RefundCoupons at once, interleaved on purpose, get one outcome."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest
from sqlalchemy.orm import Session

from ecommerce.adapters.unit_of_work import SqlUnitOfWork
from ecommerce.domain import commands
from ecommerce.domain.model import Refund, RefundState
from ecommerce.entrypoints.server import MIGRATIONS, VERSION_TABLE
from ecommerce.service_layer import redemptions, refunds
from ecommerce.service_layer.ports import EcommerceSteps, RefundRepository
from servicekit.clock import utc_now
from servicekit.db import Database, create_db_engine, upgrade_schema
from servicekit.steps import Steps
from tests.ecommerce.fakes import FakePointsGateway
from tests.ecommerce.seed import seed_use_cases


class Interleaving:
    """Copy A stops just before its COMMIT until copy B has looked its request id up.

    So B has found no refund yet while A's voids are written but not committed: B
    then meets A's row locks, and A commits under it. The copies are told apart by
    which unit of work asks for the request id first.
    """

    def __init__(self) -> None:
        self.armed = False
        self.first: object | None = None
        self.second_looked = threading.Event()
        self.waited_out = False
        self._lock = threading.Lock()

    def looked_up(self, uow: object) -> None:
        with self._lock:
            if not self.armed:
                return
            if self.first is None:
                self.first = uow
            elif uow is not self.first and not self.second_looked.is_set():
                self.second_looked.set()

    def before_commit(self, uow: object) -> None:
        if self.armed and uow is self.first and not self.second_looked.is_set():
            # Bounded: a database that serialized the two copies would never let B look.
            self.waited_out = not self.second_looked.wait(10)


class _WatchedRefunds:
    def __init__(self, inner: RefundRepository, on_lookup: Callable[[], None]) -> None:
        self._inner = inner
        self._on_lookup = on_lookup

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    def get_by_request_id(self, request_id: str) -> object:
        found = self._inner.get_by_request_id(request_id)
        self._on_lookup()
        return found


class InterleavedUnitOfWork(SqlUnitOfWork):
    def __init__(self, database: Database, plan: Interleaving) -> None:
        super().__init__(database.sessions)
        self._plan = plan

    def _start(self, session: Session) -> None:
        super()._start(session)
        self.refunds = _WatchedRefunds(self.refunds, lambda: self._plan.looked_up(self))  # type: ignore[assignment]

    def commit(self) -> None:
        self._plan.before_commit(self)
        super().commit()


# SQLite admits one writer at a time, so the second copy cannot start before the
# first commits; the interleaving exists where writers run side by side.
@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_concurrent_duplicates_of_one_refund_both_get_the_same_refund(
    make_db_url: Callable[[str], str],
) -> None:
    engine = create_db_engine(make_db_url("ecommerce"), pool_size=4)
    upgrade_schema(engine, MIGRATIONS, VERSION_TABLE)
    database = Database(engine, workers=4)
    plan = Interleaving()
    points = FakePointsGateway()
    steps: EcommerceSteps = Steps(
        runner=database,
        uow=lambda: InterleavedUnitOfWork(database, plan),
        read_uow=lambda: InterleavedUnitOfWork(database, plan),
        clock=utc_now,
    )
    try:
        await seed_use_cases(steps, points)
        redemption = await redemptions.redeem_points(
            steps,
            points,
            commands.RedeemPoints(
                request_id="redeem-1",
                customer_id="alice",
                product_id="coupon-10",
                quantity=3,
                expected_points=None,
            ),
        )
        codes = [c.code for c in redemption.coupons[:2]]

        def refund() -> asyncio.Future[Refund]:
            return asyncio.ensure_future(
                refunds.refund_coupons(
                    steps,
                    points,
                    commands.RefundCoupons(
                        request_id="refund-1",
                        customer_id="alice",
                        redemption_id=redemption.redemption_id,
                        codes=codes,
                    ),
                )
            )

        plan.armed = True
        outcomes = await asyncio.wait_for(
            asyncio.gather(refund(), refund(), return_exceptions=True), 30
        )
    finally:
        database.close()
    assert not plan.waited_out, "the two copies never overlapped"
    assert plan.second_looked.is_set()
    first, second = outcomes
    assert isinstance(first, Refund), first
    assert isinstance(second, Refund), second
    assert first.refund_id == second.refund_id
    assert first.state is second.state is RefundState.COMPLETED
    assert len(points.reversals) == 1
    assert points.accounts["card-alice"].balance == 10_000 - 3000 + 2000
