"""Adapters room: e-commerce domain events as the protobuf events the outbox publishes.

Coupon codes leave only as their fingerprint, and the card account id never does.
"""

from __future__ import annotations

from typing import Any

from ecommerce.domain.coupon_codes import fingerprint
from ecommerce.domain.events import (
    CouponProductChanged,
    CouponsRestored,
    CouponsVoided,
    CouponUsed,
    ExchangeRatioChanged,
    PointsRefunded,
    ProductChange,
    RedemptionCompleted,
    RedemptionFailed,
)
from ecommerce.domain.model import Refund
from pointsbridge.events.v1 import ecommerce_events_pb2 as pb
from servicekit.outbox import Outgoing
from servicekit.timestamps import to_timestamp
from servicekit.validation import checked_mul

SERVICE = "ecommerce"
REDEMPTION = "redemption"
PRODUCT = "product"


_CHANGES = {
    ProductChange.CREATED: pb.PRODUCT_CHANGE_CREATED,
    ProductChange.ACTIVATED: pb.PRODUCT_CHANGE_ACTIVATED,
    ProductChange.DEACTIVATED: pb.PRODUCT_CHANGE_DEACTIVATED,
}


def _refund(refund: Refund) -> dict[str, Any]:
    """The fields every refund event shares."""
    return {
        "redemption_id": refund.redemption_id,
        "refund_id": refund.refund_id,
        "request_id": refund.request_id,
        "customer_id": refund.customer_id,
        "coupon_sha256": [fingerprint(code) for code in refund.codes],
    }


def encode(event: object) -> Outgoing | None:
    """The published form of `event`, or None for those only metrics count."""
    match event:
        case RedemptionCompleted(redemption=r):
            coupons = r.coupons
            face_value = coupons[0].face_value_minor if coupons else 0
            return Outgoing(
                REDEMPTION,
                r.redemption_id,
                "completed",
                pb.RedemptionCompleted(
                    redemption_id=r.redemption_id,
                    request_id=r.request_id,
                    customer_id=r.customer_id,
                    product_id=r.product_id,
                    quantity=r.quantity,
                    points=r.points,
                    points_per_coupon=r.points_per_coupon,
                    ratio_version=r.ratio_version,
                    deduction_id=r.deduction_id,
                    coupon_sha256=[fingerprint(c.code) for c in coupons],
                    face_value_total_minor=checked_mul(len(coupons), face_value, "coupons"),
                    currency=coupons[0].currency if coupons else "",
                    complete_time=to_timestamp(r.update_time),
                ),
                r.update_time,
            )
        case RedemptionFailed(redemption=r):
            return Outgoing(
                REDEMPTION,
                r.redemption_id,
                "failed",
                pb.RedemptionFailed(
                    redemption_id=r.redemption_id,
                    request_id=r.request_id,
                    customer_id=r.customer_id,
                    product_id=r.product_id,
                    quantity=r.quantity,
                    points=r.points,
                    failure_reason=r.failure_reason,
                    fail_time=to_timestamp(r.update_time),
                ),
                r.update_time,
            )
        case CouponUsed(coupon=c):
            assert c.use_time is not None
            return Outgoing(
                REDEMPTION,
                c.redemption_id,
                "coupon_used",
                pb.CouponUsed(
                    redemption_id=c.redemption_id,
                    code_sha256=fingerprint(c.code),
                    customer_id=c.customer_id,
                    product_id=c.product_id,
                    order_id=c.used_order_id,
                    face_value_minor=c.face_value_minor,
                    currency=c.currency,
                    use_time=to_timestamp(c.use_time),
                ),
                c.use_time,
            )
        case CouponsVoided(refund=f):
            return Outgoing(
                REDEMPTION,
                f.redemption_id,
                "refund_started",
                pb.RefundStarted(
                    **_refund(f),
                    points=f.points,
                    start_time=to_timestamp(f.create_time),
                ),
                f.create_time,
            )
        case PointsRefunded(refund=f):
            return Outgoing(
                REDEMPTION,
                f.redemption_id,
                "coupons_refunded",
                pb.CouponsRefunded(
                    **_refund(f),
                    points=f.points,
                    reversal_id=f.reversal_id,
                    refund_time=to_timestamp(f.update_time),
                ),
                f.update_time,
            )
        case CouponsRestored(refund=f, reason=reason, time=moment):
            return Outgoing(
                REDEMPTION,
                f.redemption_id,
                "refund_cancelled",
                pb.RefundCancelled(
                    **_refund(f),
                    reason=reason,
                    cancel_time=to_timestamp(moment),
                ),
                moment,
            )
        case CouponProductChanged(product=p, change=change, time=moment):
            return Outgoing(
                PRODUCT,
                p.product_id,
                "changed",
                pb.CouponProductChanged(
                    product_id=p.product_id,
                    change=_CHANGES[change],
                    display_name=p.display_name,
                    face_value_minor=p.face_value_minor,
                    currency=p.currency,
                    points_per_coupon=p.points_per_coupon,
                    ratio_version=p.ratio_version,
                    validity_days=p.validity_days,
                    max_quantity_per_redemption=p.max_quantity_per_redemption,
                    active=p.active,
                    change_time=to_timestamp(moment),
                ),
                moment,
            )
        case ExchangeRatioChanged(ratio=ratio):
            return Outgoing(
                PRODUCT,
                ratio.product_id,
                "exchange_ratio_changed",
                pb.ExchangeRatioChanged(
                    product_id=ratio.product_id,
                    ratio_version=ratio.version,
                    points_per_coupon=ratio.points_per_coupon,
                    effective_time=to_timestamp(ratio.effective_time),
                ),
                ratio.effective_time,
            )
    return None
