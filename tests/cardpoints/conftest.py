"""The card-points tests' worlds: an account of 1000 points on the fakes, or a real server."""

from __future__ import annotations

import grpc
import pytest

from cardpoints.domain.model import CreditPoints, OpenAccount
from cardpoints.service_layer import services
from tests.cardpoints.bank import Bank
from tests.cardpoints.fakes import FakeUnitOfWork, Store, clock


@pytest.fixture
def store() -> Store:
    store = Store()
    services.open_account(FakeUnitOfWork(store), OpenAccount("card-1", "Li Lei"), clock)
    services.credit_points(FakeUnitOfWork(store), CreditPoints("seed", "card-1", 1000, ""), clock)
    return store


@pytest.fixture
def bank(cardpoints_channel: grpc.aio.Channel) -> Bank:
    return Bank(cardpoints_channel)
