"""Use cases of the e-commerce service against fakes: recovery, export, committed events.

An in-memory store and a fake cardpoints; the world and its helpers are in world.py.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from ecommerce.domain import commands
from ecommerce.domain.errors import PointsSystemUnavailable
from ecommerce.domain.model import (
    RedemptionState,
    RefundState,
    UnsettledKind,
)
from ecommerce.service_layer import recovery
from tests.ecommerce.world import (
    World,
    add_customer,
    add_product,
    redeem,
    refund_coupons,
    stored_coupons,
    stored_redemptions,
)

# ---------------------------------------------------------------- recovery


POLICY = recovery.RecoveryPolicy(
    settle_delay=timedelta(seconds=5), review_after=timedelta(minutes=15)
)


async def test_recovery_finishes_a_lost_reply_forward_exactly_once(shop: World) -> None:
    shop.points.lose_replies = 1  # the deduction happens; its answer is lost
    with pytest.raises(PointsSystemUnavailable):
        await redeem(shop, "lost-1")
    [pending] = stored_redemptions(shop)
    assert pending.state is RedemptionState.PENDING

    # Too fresh: a first attempt may still be in flight, so the sweep leaves it.
    early = await recovery.recover(shop.steps, shop.points, POLICY)
    assert early.settled == 0
    assert [op.id for op in early.unsettled] == [pending.redemption_id]

    shop.clock.advance(timedelta(seconds=6))
    report = await recovery.recover(shop.steps, shop.points, POLICY)
    assert report.settled == 1
    assert report.unsettled == []
    [done] = stored_redemptions(shop)
    assert done.state is RedemptionState.COMPLETED
    assert len(stored_coupons(shop)) == 3
    assert len(shop.points.deductions) == 1
    assert shop.points.accounts["card-alice"].balance == 7000


async def test_recovery_fails_a_refused_redemption_and_keeps_unknown_ones(shop: World) -> None:
    await add_customer(shop, "bob", balance=500)
    shop.points.unreachable = 1
    with pytest.raises(PointsSystemUnavailable):
        await redeem(shop, "poor-1", customer_id="bob")
    shop.points.unreachable = 1
    with pytest.raises(PointsSystemUnavailable):
        await redeem(shop, "rich-1")
    shop.clock.advance(timedelta(seconds=6))

    shop.points.unreachable = 1  # still down for the first one the sweep tries
    first = await recovery.recover(shop.steps, shop.points, POLICY)
    assert first.settled == 1
    assert len(first.unsettled) == 1
    # The claim was released, so the next sweep retries what is still unknown.
    second = await recovery.recover(shop.steps, shop.points, POLICY)
    assert second.settled == 1
    states = {r.customer_id: r for r in stored_redemptions(shop)}
    assert states["bob"].state is RedemptionState.FAILED
    assert states["bob"].failure_reason == "INSUFFICIENT_POINTS"
    assert states["alice"].state is RedemptionState.COMPLETED
    assert shop.points.accounts["card-bob"].balance == 500


async def test_unsettled_operations_are_flagged_for_review_when_old(shop: World) -> None:
    shop.points.unreachable = 100
    with pytest.raises(PointsSystemUnavailable):
        await redeem(shop, "stuck-1")
    shop.clock.advance(timedelta(minutes=16))
    report = await recovery.recover(shop.steps, shop.points, POLICY)
    assert report.settled == 0
    [op] = report.needs_review
    assert (op.kind, op.request_id, op.points) == (
        UnsettledKind.REDEMPTION,
        "stuck-1",
        3000,
    )


async def test_recovery_settles_a_pending_refund(shop: World) -> None:
    redemption = await redeem(shop, "r-1")
    shop.points.lose_replies = 1
    with pytest.raises(PointsSystemUnavailable):
        await refund_coupons(
            shop, redemption.redemption_id, [redemption.coupons[0].code], "refund-1"
        )
    shop.clock.advance(timedelta(seconds=6))
    report = await recovery.recover(shop.steps, shop.points, POLICY)
    assert report.settled == 1
    [refund] = shop.database.state.refunds.values()
    assert refund.state is RefundState.COMPLETED
    assert shop.points.accounts["card-alice"].balance == 8000
    assert len(shop.points.reversals) == 1


async def test_export_lists_redemptions_with_their_refunds(shop: World) -> None:
    first = await redeem(shop, "e-1", quantity=2)
    await redeem(shop, "e-2", quantity=1)
    await refund_coupons(shop, first.redemption_id, [first.coupons[0].code], "refund-e")
    shop.clock.advance(timedelta(seconds=1))  # the window ends, exclusively, at now
    page = await shop.steps.read(
        recovery.export_redemptions,
        commands.ExportRedemptions(start=None, end=None, page_size=1, page_token=""),
    )
    assert [item.redemption.request_id for item in page.items] == ["e-1"]
    assert [f.points for f in page.items[0].refunds] == [1000]
    assert len(page.items[0].redemption.coupons) == 2
    rest = await shop.steps.read(
        recovery.export_redemptions,
        commands.ExportRedemptions(
            start=None, end=None, page_size=1, page_token=page.next_page_token
        ),
    )
    assert [item.redemption.request_id for item in rest.items] == ["e-2"]
    assert rest.next_page_token == ""


async def test_committed_steps_publish_their_events(world: World) -> None:
    published: list[object] = []
    steps = dataclasses.replace(world.steps, publish=published.extend)
    shop = dataclasses.replace(world, steps=steps)
    await add_product(shop)
    await add_customer(shop)
    await redeem(shop, "ev-1", quantity=2)
    await redeem(shop, "ev-1", quantity=2)  # a replay publishes nothing new
    from ecommerce.domain.events import RedemptionCompleted

    assert [(e.points, e.coupons) for e in published if isinstance(e, RedemptionCompleted)] == [
        (2000, 2)
    ]
