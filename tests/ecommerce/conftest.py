"""Fixtures of the e-commerce tests: a world of fakes, a shop in it, and both real servers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from cardpoints.entrypoints.server import Settings as CardpointsSettings
from cardpoints.entrypoints.server import start as start_cardpoints
from ecommerce.entrypoints.server import Settings, start
from pointsbridge.cardpoints.v1 import cardpoints_pb2_grpc as cpb_grpc
from pointsbridge.ecommerce.v1 import ecommerce_pb2_grpc as pb_grpc
from tests.auth import Callers
from tests.ecommerce.fakes import (
    FakeClock,
    FakeDatabase,
    FakePointsGateway,
    fake_steps,
)
from tests.ecommerce.grpc_system import MovableClock, System
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


@pytest.fixture
async def system(make_db_url: Callable[[str], str], auth: Callers) -> AsyncIterator[System]:
    cardpoints_url, ecommerce_url = make_db_url("cardpoints"), make_db_url("ecommerce")
    clock = MovableClock()
    cardpoints = await start_cardpoints(
        CardpointsSettings(
            **auth.server_security, address="127.0.0.1:0", database_url=cardpoints_url, workers=4
        )
    )
    ecommerce = await start(
        Settings(
            **auth.ecommerce_security,
            address="127.0.0.1:0",
            database_url=ecommerce_url,
            cardpoints_address=f"127.0.0.1:{cardpoints.port}",
            workers=4,
        ),
        clock=clock,
    )
    to_ecommerce = auth.channel(f"127.0.0.1:{ecommerce.port}")
    to_cardpoints = auth.channel(f"127.0.0.1:{cardpoints.port}")
    system = System(
        cardpoints_url=cardpoints_url,
        ecommerce_url=ecommerce_url,
        clock=clock,
        cardpoints=cardpoints,
        ecommerce=ecommerce,
        redemption=pb_grpc.RedemptionServiceStub(to_ecommerce),
        admin=pb_grpc.EcommerceAdminServiceStub(to_ecommerce),
        points=cpb_grpc.CardPointsServiceStub(to_cardpoints),
        points_admin=cpb_grpc.CardPointsAdminServiceStub(to_cardpoints),
        auth=auth,
        channels=[to_ecommerce, to_cardpoints],
    )
    try:
        yield system
    finally:
        for channel in system.channels:
            await channel.close()
        await system.ecommerce.stop(1)
        if system.cardpoints_up:
            await system.cardpoints.stop(1)
