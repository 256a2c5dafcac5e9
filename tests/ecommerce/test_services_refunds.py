"""Use cases of the e-commerce service against fakes: refunds.

An in-memory store and a fake cardpoints; the world and its helpers are in world.py.
"""

from __future__ import annotations

import pytest

from ecommerce.domain import commands, coupon_codes
from ecommerce.domain.card_points import AccountState, ReversalOrder
from ecommerce.domain.errors import DomainError, PointsSystemUnavailable
from ecommerce.domain.model import (
    CouponState,
    RefundState,
)
from ecommerce.service_layer import coupons, redemptions, refunds
from servicekit.errors import FieldViolation
from tests.ecommerce.world import (
    World,
    balance,
    redeem,
    refund_coupons,
    refused,
    stored_coupons,
    stored_redemptions,
)


async def test_partial_refund_voids_coupons_and_gives_their_points_back(shop: World) -> None:
    redemption = await redeem(shop, quantity=3)
    codes = [c.code for c in redemption.coupons]
    refund = await refund_coupons(
        shop, redemption.redemption_id, [codes[0].lower(), codes[1]], "refund-1"
    )
    assert (refund.state, refund.points, refund.codes) == (
        RefundState.COMPLETED,
        2000,
        (codes[0], codes[1]),
    )
    assert balance(shop) == 10_000 - 3000 + 2000
    [(order, reversal)] = shop.points.reversals.values()
    assert order == ReversalOrder(
        f"refund:{refund.refund_id}",
        f"redemption:{redemption.redemption_id}",
        2000,
        order.reason,
    )
    assert refund.reversal_id == reversal.reversal_id
    after = await shop.steps.read(
        redemptions.get_redemption,
        commands.GetRedemption(customer_id="alice", redemption_id=redemption.redemption_id),
    )
    assert after.refunded_points == 2000
    assert [c.state for c in after.coupons] == [
        CouponState.VOID,
        CouponState.VOID,
        CouponState.ISSUED,
    ]

    again = await refund_coupons(shop, redemption.redemption_id, [codes[1], codes[0]], "refund-1")
    assert again == refund
    assert balance(shop) == 9000

    with pytest.raises(DomainError) as void:
        await shop.steps.write(
            coupons.use_coupon, commands.UseCoupon(customer_id="alice", code=codes[0], order_id="o")
        )
    assert void.value.reason == "COUPON_VOID"
    with pytest.raises(DomainError) as twice:
        await refund_coupons(shop, redemption.redemption_id, [codes[2], codes[0]], "refund-2")
    assert refused(twice) == ("COUPON_VOID", {"code": codes[0]})
    with pytest.raises(DomainError) as reused:
        await refund_coupons(shop, redemption.redemption_id, [codes[2]], "refund-1")
    assert reused.value.reason == "REQUEST_ID_REUSED"
    assert stored_coupons(shop)[2].state is CouponState.ISSUED


async def test_refund_refusals(shop: World) -> None:
    redemption = await redeem(shop, quantity=2)
    other = await redeem(shop, "req-2", quantity=1)
    used, unused = (c.code for c in redemption.coupons)
    await shop.steps.write(
        coupons.use_coupon, commands.UseCoupon(customer_id="alice", code=used, order_id="o")
    )

    async def refund(codes: list[str], redemption_id: str = redemption.redemption_id) -> str:
        with pytest.raises(DomainError) as excinfo:
            await refund_coupons(shop, redemption_id, codes, "rf")
        return excinfo.value.reason

    assert await refund([unused, used]) == "COUPON_ALREADY_USED"
    assert await refund([other.coupons[0].code]) == "COUPON_NOT_FOUND"
    assert await refund([coupon_codes.new_code()]) == "COUPON_NOT_FOUND"
    assert await refund([unused], "rd_missing") == "REDEMPTION_NOT_FOUND"
    assert await refund([]) == "INVALID_FIELD"
    codes = [unused, "nonsense", unused.replace("-", "")]
    with pytest.raises(DomainError) as excinfo:
        await refund_coupons(shop, redemption.redemption_id, codes, "rf")
    assert excinfo.value.violations == (
        FieldViolation("codes[1]", "must have 18 symbols, not counting dashes"),
        FieldViolation("codes[2]", "repeats codes[0]"),
    )
    assert shop.database.state.refunds == {}
    assert {c.code: c.state for c in stored_coupons(shop)}[unused] is CouponState.ISSUED
    assert shop.points.reversals == {}


async def test_refund_with_unknown_outcome_stays_pending_and_resumes(shop: World) -> None:
    redemption = await redeem(shop, quantity=2)
    code = redemption.coupons[0].code
    shop.points.lose_replies = 1
    with pytest.raises(PointsSystemUnavailable) as excinfo:
        await refund_coupons(shop, redemption.redemption_id, [code])
    [pending] = shop.database.state.refunds.values()
    assert pending.state is RefundState.PENDING
    assert excinfo.value.metadata["refund_id"] == pending.refund_id
    assert {c.code: c.state for c in stored_coupons(shop)}[code] is CouponState.VOID

    done = await refund_coupons(shop, redemption.redemption_id, [code])
    assert done.state is RefundState.COMPLETED
    assert await refunds.settle(shop.steps, shop.points, done.refund_id) == done
    assert len(shop.points.reversals) == 1
    assert balance(shop) == 9000
    assert stored_redemptions(shop)[0].refunded_points == 1000


async def test_a_refused_reversal_undoes_the_refund(shop: World) -> None:
    redemption = await redeem(shop, quantity=1)
    shop.points.accounts["card-alice"].state = AccountState.CLOSED
    with pytest.raises(DomainError) as excinfo:
        await refund_coupons(shop, redemption.redemption_id, [redemption.coupons[0].code])
    assert excinfo.value.reason == "ACCOUNT_CLOSED"
    # The refusal names the refund it undid, beside what card-points said.
    assert excinfo.value.metadata["request_id"] == "rf-1"
    assert excinfo.value.metadata["redemption_id"] == redemption.redemption_id
    assert excinfo.value.metadata["refund_id"]
    assert shop.database.state.refunds == {}
    assert [c.state for c in stored_coupons(shop)] == [CouponState.ISSUED]
