"""Entrypoints room: e-commerce domain objects as protobuf messages, and list filters back."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp

from ecommerce.domain.model import (
    CardLink,
    Coupon,
    CouponProduct,
    CouponState,
    ExchangeRatio,
    Quote,
    Redemption,
    RedemptionState,
    Refund,
    RefundState,
    UnsettledKind,
    UnsettledOperation,
)
from pointsbridge.ecommerce.v1 import ecommerce_pb2 as pb
from servicekit.timestamps import to_timestamp

REDEMPTION_STATES: Mapping[RedemptionState, pb.RedemptionState] = {
    RedemptionState.PENDING: pb.REDEMPTION_STATE_PENDING,
    RedemptionState.COMPLETED: pb.REDEMPTION_STATE_COMPLETED,
    RedemptionState.FAILED: pb.REDEMPTION_STATE_FAILED,
}
COUPON_STATES: Mapping[CouponState, pb.CouponState] = {
    CouponState.ISSUED: pb.COUPON_STATE_ISSUED,
    CouponState.USED: pb.COUPON_STATE_USED,
    CouponState.VOID: pb.COUPON_STATE_VOID,
    CouponState.EXPIRED: pb.COUPON_STATE_EXPIRED,
}
UNSETTLED_KINDS: Mapping[UnsettledKind, pb.UnsettledKind] = {
    UnsettledKind.REDEMPTION: pb.UNSETTLED_KIND_REDEMPTION,
    UnsettledKind.REFUND: pb.UNSETTLED_KIND_REFUND,
}
REFUND_STATES: Mapping[RefundState, pb.RefundState] = {
    RefundState.PENDING: pb.REFUND_STATE_PENDING,
    RefundState.COMPLETED: pb.REFUND_STATE_COMPLETED,
}


def product_pb(product: CouponProduct) -> pb.CouponProduct:
    return pb.CouponProduct(
        product_id=product.product_id,
        display_name=product.display_name,
        face_value_minor=product.face_value_minor,
        currency=product.currency,
        points_per_coupon=product.points_per_coupon,
        ratio_version=product.ratio_version,
        validity_days=product.validity_days,
        max_quantity_per_redemption=product.max_quantity_per_redemption,
        active=product.active,
        create_time=to_timestamp(product.create_time),
    )


def ratio_pb(ratio: ExchangeRatio) -> pb.ExchangeRatio:
    return pb.ExchangeRatio(
        product_id=ratio.product_id,
        version=ratio.version,
        points_per_coupon=ratio.points_per_coupon,
        effective_time=to_timestamp(ratio.effective_time),
    )


def link_pb(link: CardLink) -> pb.CardLink:
    return pb.CardLink(
        customer_id=link.customer_id,
        card_account_id=link.card_account_id,
        link_time=to_timestamp(link.link_time),
    )


def quote_pb(quote: Quote) -> pb.Quote:
    message = pb.Quote(
        product_id=quote.product_id,
        quantity=quote.quantity,
        points_required=quote.points_required,
        points_per_coupon=quote.points_per_coupon,
        ratio_version=quote.ratio_version,
        face_value_total_minor=quote.face_value_total_minor,
        currency=quote.currency,
        card_linked=quote.card_linked,
    )
    if quote.available_points is not None:
        message.available_points = quote.available_points
    return message


def coupon_pb(coupon: Coupon) -> pb.Coupon:
    return _coupon_pb(coupon, to_timestamp)


def _coupon_pb(coupon: Coupon, stamp: Callable[[datetime | None], Timestamp | None]) -> pb.Coupon:
    return pb.Coupon(
        code=coupon.code,
        product_id=coupon.product_id,
        redemption_id=coupon.redemption_id,
        face_value_minor=coupon.face_value_minor,
        currency=coupon.currency,
        state=COUPON_STATES[coupon.state],
        expire_time=stamp(coupon.expire_time),
        used_order_id=coupon.used_order_id,
        customer_id=coupon.customer_id,
        issue_time=stamp(coupon.issue_time),
        use_time=stamp(coupon.use_time),
    )


def _stamps() -> Callable[[datetime | None], Timestamp | None]:
    """to_timestamp, converting each moment once: a redemption's coupons share theirs."""
    made: dict[datetime, Timestamp | None] = {}

    def stamp(moment: datetime | None) -> Timestamp | None:
        if moment is None:
            return None
        found = made.get(moment)
        if found is None:
            found = made[moment] = to_timestamp(moment)
        return found

    return stamp


def redemption_pb(redemption: Redemption) -> pb.Redemption:
    stamp = _stamps()
    return pb.Redemption(
        redemption_id=redemption.redemption_id,
        request_id=redemption.request_id,
        customer_id=redemption.customer_id,
        product_id=redemption.product_id,
        quantity=redemption.quantity,
        points=redemption.points,
        ratio_version=redemption.ratio_version,
        state=REDEMPTION_STATES[redemption.state],
        failure_reason=redemption.failure_reason,
        deduction_id=redemption.deduction_id,
        coupons=[_coupon_pb(c, stamp) for c in redemption.coupons],
        points_per_coupon=redemption.points_per_coupon,
        card_account_id=redemption.card_account_id,
        refunded_points=redemption.refunded_points,
        create_time=stamp(redemption.create_time),
        update_time=stamp(redemption.update_time),
    )


def refund_pb(refund: Refund) -> pb.Refund:
    return pb.Refund(
        refund_id=refund.refund_id,
        request_id=refund.request_id,
        redemption_id=refund.redemption_id,
        codes=refund.codes,
        points=refund.points,
        state=REFUND_STATES[refund.state],
        reversal_id=refund.reversal_id,
        create_time=to_timestamp(refund.create_time),
    )


def unsettled_pb(operation: UnsettledOperation) -> pb.UnsettledOperation:
    return pb.UnsettledOperation(
        kind=UNSETTLED_KINDS[operation.kind],
        id=operation.id,
        request_id=operation.request_id,
        customer_id=operation.customer_id,
        points=operation.points,
        create_time=to_timestamp(operation.create_time),
        needs_review=operation.needs_review,
    )
