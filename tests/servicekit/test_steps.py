"""servicekit.steps: a write commits and then publishes what it committed; a read never commits."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TypeVar

import pytest

from cardpoints.domain.errors import InsufficientPoints
from cardpoints.domain.events import AccountOpened, DeductionRefused, PointsCredited
from cardpoints.domain.model import CreditPoints, DeductPoints, GetAccount, OpenAccount
from cardpoints.service_layer import services
from cardpoints.service_layer.ports import UnitOfWork
from servicekit.steps import Steps
from tests.cardpoints.fakes import FakeUnitOfWork, Store

T = TypeVar("T")
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


class CountingRunner:
    """Runs inline, and says which of its two doors each step came through."""

    def __init__(self) -> None:
        self.doors: list[str] = []

    async def run(self, fn: Callable[[], T]) -> T:
        self.doors.append("run")
        return fn()

    async def write(self, fn: Callable[[], T]) -> T:
        self.doors.append("write")
        return fn()


def steps_over(store: Store, published: list[object]) -> tuple[Steps[UnitOfWork], CountingRunner]:
    runner = CountingRunner()

    def publish(events: Sequence[object]) -> None:
        published.extend(events)

    steps: Steps[UnitOfWork] = Steps(
        runner=runner,
        uow=lambda: FakeUnitOfWork(store),
        read_uow=lambda: FakeUnitOfWork(store),
        clock=lambda: NOW,
        publish=publish,
    )
    return steps, runner


async def test_a_write_publishes_what_it_committed_and_a_read_publishes_nothing() -> None:
    store, published = Store(), list[object]()
    steps, runner = steps_over(store, published)
    await steps.write(services.open_account, OpenAccount("card-1", "Li Lei"))
    await steps.write(services.credit_points, CreditPoints("c-1", "card-1", 500, ""))
    account = await steps.read(services.get_account, GetAccount("card-1"))
    assert account.balance == 500
    assert [type(e) for e in published] == [AccountOpened, PointsCredited]
    assert runner.doors == ["write", "write", "run"]
    # A replay commits nothing new, so there is nothing new to publish.
    await steps.write(services.credit_points, CreditPoints("c-1", "card-1", 500, ""))
    assert len(published) == 2


async def test_a_step_that_commits_and_then_refuses_still_publishes_its_commit() -> None:
    store, published = Store(), list[object]()
    steps, _ = steps_over(store, published)
    await steps.write(services.open_account, OpenAccount("card-1", "Li Lei"))
    published.clear()
    # The refusal is stored (a replay repeats it) before the step raises it.
    with pytest.raises(InsufficientPoints):
        await steps.write(services.deduct_points, DeductPoints("d-1", "card-1", 100, 1, 100, "s"))
    assert published == [DeductionRefused("card-1", "INSUFFICIENT_POINTS")]
