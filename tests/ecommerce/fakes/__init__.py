"""In-memory fakes of the e-commerce ports: a store, its units of work, and a cardpoints."""

from tests.ecommerce.fakes.cardpoints import FakeAccount, FakePointsGateway
from tests.ecommerce.fakes.redemptions import FakeRedemptions, FakeRefunds
from tests.ecommerce.fakes.repositories import FakeCoupons, FakeLinks, FakeProducts, FakeRatios
from tests.ecommerce.fakes.state import START, FakeState
from tests.ecommerce.fakes.unit_of_work import (
    FakeClock,
    FakeDatabase,
    FakeUnitOfWork,
    InlineRunner,
    fake_steps,
)

__all__ = [
    "START",
    "FakeAccount",
    "FakeClock",
    "FakeCoupons",
    "FakeDatabase",
    "FakeLinks",
    "FakePointsGateway",
    "FakeProducts",
    "FakeRatios",
    "FakeRedemptions",
    "FakeRefunds",
    "FakeState",
    "FakeUnitOfWork",
    "InlineRunner",
    "fake_steps",
]
