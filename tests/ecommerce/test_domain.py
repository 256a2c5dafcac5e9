"""The e-commerce aggregates decide: redemptions and refunds settle, coupons are spent and
expire."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from ecommerce.domain.errors import CouponAlreadyUsed, CouponExpired, CouponVoid, DomainError
from ecommerce.domain.events import (
    CouponsRestored,
    CouponUsed,
    PointsRefunded,
    RedemptionCompleted,
    RedemptionFailed,
)
from ecommerce.domain.model import (
    Coupon,
    CouponFilter,
    CouponProduct,
    CouponState,
    Redemption,
    RedemptionState,
    Refund,
    RefundState,
)

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
PRODUCT = CouponProduct("c10", "10 off", 1000, "CNY", 100, 1, 30, 10, True, NOW)


def pending() -> Redemption:
    return Redemption(
        "rd_1", "req-1", "alice", "c10", 2, 200, 100, 1, "card-1", RedemptionState.PENDING, NOW, NOW
    )


def issued(expire_time: datetime = NOW + timedelta(days=1)) -> Coupon:
    return Coupon("CODE", "alice", "c10", "rd_1", 1000, "CNY", CouponState.ISSUED, NOW, expire_time)


def test_complete_moves_pending_to_completed_with_its_coupons_and_one_event() -> None:
    redemption = pending()
    later = NOW + timedelta(seconds=1)
    coupons = redemption.issue_coupons(PRODUCT, later)
    completed, events = redemption.complete("ded_1", coupons, later)
    assert (completed.state, completed.deduction_id, completed.update_time) == (
        RedemptionState.COMPLETED,
        "ded_1",
        later,
    )
    assert completed.coupons == tuple(coupons)
    assert events == [RedemptionCompleted(200, 2, completed)]
    assert completed.answer() is completed
    # Only PENDING moves: a settled redemption is left as it is, with nothing to publish.
    assert completed.complete("ded_2", coupons, later) == (completed, [])
    assert completed.fail("INSUFFICIENT_POINTS", later) == (completed, [])


def test_fail_moves_pending_to_failed_and_the_answer_replays_the_refusal() -> None:
    failed, events = pending().fail("ACCOUNT_FROZEN", NOW)
    assert (failed.state, failed.failure_reason) == (RedemptionState.FAILED, "ACCOUNT_FROZEN")
    assert events == [RedemptionFailed("ACCOUNT_FROZEN", failed)]
    with pytest.raises(DomainError) as excinfo:
        failed.answer()
    assert (excinfo.value.reason, excinfo.value.metadata) == (
        "ACCOUNT_FROZEN",
        {"redemption_id": "rd_1"},
    )
    assert failed.fail("ACCOUNT_FROZEN", NOW) == (failed, [])


def pending_refund() -> Refund:
    return Refund(
        "rf_1", "req-rf-1", "alice", "rd_1", ("C1", "C2"), 200, RefundState.PENDING, NOW, NOW
    )


def test_a_refund_completes_once_from_pending_with_one_event() -> None:
    later = NOW + timedelta(seconds=1)
    completed, events = pending_refund().complete("rev_1", later)
    assert (completed.state, completed.reversal_id, completed.update_time) == (
        RefundState.COMPLETED,
        "rev_1",
        later,
    )
    assert events == [PointsRefunded(200, completed)]
    # Only PENDING moves: a completed refund is left as it is, with nothing to publish.
    assert completed.complete("rev_2", later) == (completed, [])
    assert completed.discard("ACCOUNT_CLOSED", later) == []


def test_a_refused_pending_refund_is_discarded_and_its_coupons_restored() -> None:
    refund = pending_refund()
    assert refund.discard("ACCOUNT_CLOSED", NOW) == [
        CouponsRestored(2, refund, "ACCOUNT_CLOSED", NOW)
    ]


def test_use_spends_an_issued_coupon_once_and_replays_the_same_order() -> None:
    used, events = issued().use("order-1", NOW)
    assert (used.state, used.used_order_id, used.use_time) == (CouponState.USED, "order-1", NOW)
    assert events == [CouponUsed("CODE", used)]
    assert used.use("order-1", NOW) == (used, [])  # a replay changes nothing
    with pytest.raises(CouponAlreadyUsed):
        used.use("order-2", NOW)


def test_expiry_is_decided_once_by_the_coupon() -> None:
    coupon = issued(expire_time=NOW)
    assert coupon.state_at(NOW - timedelta(microseconds=1)) is CouponState.ISSUED
    assert coupon.state_at(NOW) is CouponState.EXPIRED
    assert coupon.as_seen(NOW).state is CouponState.EXPIRED
    with pytest.raises(CouponExpired):
        coupon.use("order-1", NOW)
    with pytest.raises(CouponVoid):
        dataclasses.replace(issued(), state=CouponState.VOID).use("o", NOW)


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (CouponState.EXPIRED, CouponFilter(CouponState.ISSUED, expired_by=NOW)),
        (CouponState.ISSUED, CouponFilter(CouponState.ISSUED, live_after=NOW)),
        (CouponState.USED, CouponFilter(CouponState.USED)),
        (None, CouponFilter(None)),
    ],
)
def test_a_listing_filter_is_the_expiry_rule_in_stored_terms(
    state: CouponState | None, expected: CouponFilter
) -> None:
    assert CouponFilter.of(state, NOW) == expected
