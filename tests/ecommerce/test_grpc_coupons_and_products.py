"""Both real servers on 127.0.0.1 port 0, on SQLite and PostgreSQL: coupons, links, products."""

from __future__ import annotations

from datetime import timedelta

import grpc

from pointsbridge.cardpoints.v1 import cardpoints_pb2 as cpb
from pointsbridge.ecommerce.v1 import ecommerce_pb2 as pb
from tests.ecommerce.grpc_system import FAILED_PRECONDITION, TIMEOUT, System, refused


async def test_coupons_are_used_once_refunds_give_points_back_and_expiry_is_enforced(
    system: System,
) -> None:
    account = await system.customer("alice", 10_000)
    await system.product()
    redemption = await system.redeem("r-1", quantity=3)
    first, second, third = (c.code for c in redemption.coupons)
    assert await system.balance(account) == 7000

    async def use(code: str, order_id: str, customer_id: str = "alice") -> pb.Coupon:
        request = pb.UseCouponRequest(customer_id=customer_id, code=code, order_id=order_id)
        return (await system.redemption.UseCoupon(request, timeout=TIMEOUT)).coupon

    used = await use(first, "order-1")
    assert (used.state, used.used_order_id) == (pb.COUPON_STATE_USED, "order-1")
    assert await use(first.lower().replace("-", ""), "order-1") == used
    other_order = await refused(use(first, "order-2"))
    assert (other_order.code, other_order.reason) == (FAILED_PRECONDITION, "COUPON_ALREADY_USED")
    foreign = await refused(use(second, "order-3", customer_id="mallory"))
    assert (foreign.code, foreign.reason) == (grpc.StatusCode.PERMISSION_DENIED, "NOT_OWNER")

    async def refund(request_id: str, codes: list[str]) -> pb.Refund:
        request = pb.RefundCouponsRequest(
            request_id=request_id,
            customer_id="alice",
            redemption_id=redemption.redemption_id,
            codes=codes,
        )
        return (await system.redemption.RefundCoupons(request, timeout=TIMEOUT)).refund

    refunded = await refund("refund-1", [second])
    assert (refunded.state, refunded.points, list(refunded.codes)) == (
        pb.REFUND_STATE_COMPLETED,
        1000,
        [second],
    )
    assert await system.balance(account) == 8000
    assert await refund("refund-1", [second]) == refunded
    assert await system.balance(account) == 8000
    reversals = [e for e in await system.ledger(account) if e.type == cpb.ENTRY_TYPE_REVERSAL]
    assert [(e.amount, e.request_id) for e in reversals] == [(1000, f"refund:{refunded.refund_id}")]
    void = await refused(use(second, "order-4"))
    assert (void.code, void.reason) == (FAILED_PRECONDITION, "COUPON_VOID")
    refund_used = await refused(refund("refund-2", [first]))
    assert refund_used.reason == "COUPON_ALREADY_USED"
    reused = await refused(refund("refund-1", [third]))
    assert (reused.code, reused.reason) == (grpc.StatusCode.ALREADY_EXISTS, "REQUEST_ID_REUSED")
    after = (
        await system.redemption.GetRedemption(
            pb.GetRedemptionRequest(customer_id="alice", redemption_id=redemption.redemption_id),
            timeout=TIMEOUT,
        )
    ).redemption
    assert after.refunded_points == 1000
    assert [c.state for c in after.coupons] == [
        pb.COUPON_STATE_USED,
        pb.COUPON_STATE_VOID,
        pb.COUPON_STATE_ISSUED,
    ]

    system.clock.advance(timedelta(days=30, seconds=1))
    expired = await refused(use(third, "order-5"))
    assert (expired.code, expired.reason) == (FAILED_PRECONDITION, "COUPON_EXPIRED")
    assert [c.code for c in await system.coupons("alice", pb.COUPON_STATE_EXPIRED)] == [third]
    assert await system.coupons("alice", pb.COUPON_STATE_ISSUED) == []
    assert await system.balance(account) == 8000


async def test_link_and_redeem_follow_the_card_account_state(system: System) -> None:
    await system.product()
    missing = await refused(
        system.admin.LinkCardAccount(
            pb.LinkCardAccountRequest(customer_id="alice", card_account_id="no-such-card"),
            timeout=TIMEOUT,
        )
    )
    assert (missing.code, missing.reason) == (grpc.StatusCode.NOT_FOUND, "ACCOUNT_NOT_FOUND")
    not_linked = await refused(system.redeem("r-0"))
    assert (not_linked.code, not_linked.reason) == (FAILED_PRECONDITION, "CARD_NOT_LINKED")

    account = await system.customer("alice", 10_000)
    await system.points_admin.SetAccountState(
        cpb.SetAccountStateRequest(account_id=account, state=cpb.ACCOUNT_STATE_FROZEN, reason="t"),
        timeout=TIMEOUT,
    )
    frozen = await refused(system.redeem("r-1"))
    assert (frozen.code, frozen.reason) == (FAILED_PRECONDITION, "ACCOUNT_FROZEN")
    relink = await refused(
        system.admin.LinkCardAccount(
            pb.LinkCardAccountRequest(customer_id="bob", card_account_id=account),
            timeout=TIMEOUT,
        )
    )
    assert relink.reason == "ACCOUNT_FROZEN"
    assert await system.balance(account) == 10_000


async def test_products_limits_and_activation(system: System) -> None:
    await system.customer("alice", 10_000)
    await system.product(max_quantity=2)
    duplicate = await refused(system.product())
    assert (duplicate.code, duplicate.reason) == (
        grpc.StatusCode.ALREADY_EXISTS,
        "PRODUCT_ALREADY_EXISTS",
    )
    too_many = await refused(system.redeem("r-1", quantity=3))
    assert (too_many.code, too_many.reason) == (FAILED_PRECONDITION, "QUANTITY_LIMIT_EXCEEDED")
    await system.admin.SetCouponProductActive(
        pb.SetCouponProductActiveRequest(product_id="coupon-10", active=False), timeout=TIMEOUT
    )
    inactive = await refused(system.redeem("r-2", quantity=1))
    assert (inactive.code, inactive.reason) == (FAILED_PRECONDITION, "PRODUCT_INACTIVE")
    unknown = await refused(system.redeem("r-3", quantity=1, product_id="nope"))
    assert (unknown.code, unknown.reason) == (grpc.StatusCode.NOT_FOUND, "PRODUCT_NOT_FOUND")
    listed = await system.redemption.ListCouponProducts(
        pb.ListCouponProductsRequest(), timeout=TIMEOUT
    )
    assert list(listed.products) == []
    everything = await system.redemption.ListCouponProducts(
        pb.ListCouponProductsRequest(include_inactive=True), timeout=TIMEOUT
    )
    assert [(p.product_id, p.active) for p in everything.products] == [("coupon-10", False)]
    assert system.row_counts()["redemptions"] == 0
