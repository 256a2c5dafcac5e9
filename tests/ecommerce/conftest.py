"""Fixtures of the service-layer tests: an empty world, and a shop with a product and alice."""

from __future__ import annotations

import pytest

from tests.ecommerce.fakes import (
    FakeClock,
    FakeDatabase,
    FakePointsGateway,
    fake_steps,
)
from tests.ecommerce.world import World, add_customer, add_product


@pytest.fixture
def world() -> World:
    database = FakeDatabase()
    clock = FakeClock()
    return World(fake_steps(database, clock), database, FakePointsGateway(), clock)


@pytest.fixture
async def shop(world: World) -> World:
    """One product (1000 points a coupon) and alice, linked to a card with 10,000 points."""
    await add_product(world)
    await add_customer(world)
    return world
