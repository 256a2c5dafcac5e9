"""The fake store's database and units of work, a clock, and the steps over them."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Self

from ecommerce.service_layer.ports import (
    CouponRepository,
    EcommerceSteps,
    LinkRepository,
    ProductRepository,
    RatioRepository,
    RedemptionRepository,
    RefundRepository,
)
from servicekit.steps import Steps
from tests.ecommerce.fakes.redemptions import FakeRedemptions, FakeRefunds
from tests.ecommerce.fakes.repositories import FakeCoupons, FakeLinks, FakeProducts, FakeRatios
from tests.ecommerce.fakes.state import START, FakeState, T


class FakeDatabase:
    """Holds the committed state; each unit of work works on a copy until it commits."""

    def __init__(self) -> None:
        self.state = FakeState()
        self.commits = 0


class FakeUnitOfWork:
    def __init__(self, database: FakeDatabase) -> None:
        self._database = database
        self.events: list[object] = []
        self.committed_events: list[object] = []

    def __enter__(self) -> Self:
        self.events = []
        self._state = copy.deepcopy(self._database.state)
        self.products: ProductRepository = FakeProducts(self._state)
        self.ratios: RatioRepository = FakeRatios(self._state)
        self.links: LinkRepository = FakeLinks(self._state)
        self.redemptions: RedemptionRepository = FakeRedemptions(self._state)
        self.coupons: CouponRepository = FakeCoupons(self._state)
        self.refunds: RefundRepository = FakeRefunds(self._state)
        return self

    def __exit__(self, *exc: object) -> None:
        pass  # anything not committed is simply dropped with the copy

    def commit(self) -> None:
        self._database.state = copy.deepcopy(self._state)
        self._database.commits += 1
        self.committed_events += self.events
        self.events = []


class InlineRunner:
    async def run(self, fn: Callable[[], T]) -> T:
        return fn()

    async def write(self, fn: Callable[[], T]) -> T:
        return fn()


class FakeClock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


def fake_steps(database: FakeDatabase, clock: Callable[[], datetime]) -> EcommerceSteps:
    """Steps over the fake store, run inline on the event loop."""
    return Steps(
        runner=InlineRunner(),
        uow=lambda: FakeUnitOfWork(database),
        read_uow=lambda: FakeUnitOfWork(database),
        clock=clock,
    )
