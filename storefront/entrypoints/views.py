"""Entrypoints room: how the service's answers read on a page: views of quotes and coupons,
and each refusal, in the customer's words, next to the field it concerns."""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import grpc

from pointsbridge.ecommerce.v1 import ecommerce_pb2 as pb
from storefront.adapters.redemption_client import ServiceRefusal, available_points, card_linked
from storefront.entrypoints import i18n

# The idempotency keys RedemptionService accepts; a form's key is minted as one.
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_WHOLE_NUMBER = re.compile(r"^[0-9]{1,9}$")

COUPON_FILTERS: Mapping[str, pb.CouponState] = {
    "all": pb.COUPON_STATE_UNSPECIFIED,
    "issued": pb.COUPON_STATE_ISSUED,
    "used": pb.COUPON_STATE_USED,
    "void": pb.COUPON_STATE_VOID,
    "expired": pb.COUPON_STATE_EXPIRED,
}
COUPON_STATES: Mapping[int, str] = {
    pb.COUPON_STATE_ISSUED: "issued",
    pb.COUPON_STATE_USED: "used",
    pb.COUPON_STATE_VOID: "void",
    pb.COUPON_STATE_EXPIRED: "expired",
}
REDEMPTION_STATES: Mapping[int, str] = {
    pb.REDEMPTION_STATE_PENDING: "pending",
    pb.REDEMPTION_STATE_COMPLETED: "completed",
    pb.REDEMPTION_STATE_FAILED: "failed",
}
PRESETS = (1, 2, 5, 10)

# Where each refusal a customer can meet is said: the part of the form it concerns.
REFUSAL_PLACES: Mapping[str, str] = {
    "INSUFFICIENT_POINTS": "quantity",
    "QUANTITY_LIMIT_EXCEEDED": "quantity",
    "PRODUCT_INACTIVE": "product",
    "PRODUCT_NOT_FOUND": "product",
    "CARD_NOT_LINKED": "card",
    "ACCOUNT_FROZEN": "card",
    "ACCOUNT_CLOSED": "card",
    "ACCOUNT_NOT_FOUND": "card",
    "RATE_CHANGED": "quote",
    "POINTS_MISMATCH": "quote",
    "RATE_LIMITED": "form",
    "REQUEST_ID_REUSED": "form",
    "POINTS_SYSTEM_UNAVAILABLE": "form",
    "REVERSAL_EXCEEDS_DEDUCTION": "form",
    "COUPON_ALREADY_USED": "coupon",
    "COUPON_VOID": "coupon",
    "COUPON_EXPIRED": "coupon",
    "COUPON_NOT_FOUND": "coupon",
}
# HTTP status of a page that shows a refusal instead of doing what was asked.
REFUSAL_STATUS: Mapping[grpc.StatusCode, int] = {
    grpc.StatusCode.INVALID_ARGUMENT: 422,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
}


def mint_request_id(kind: str) -> str:
    """A form's idempotency key, chosen when the page is rendered."""
    return f"sf-{kind}-{secrets.token_urlsafe(18)}"


def whole_number(text: str) -> int | None:
    """A typed count as an int, or None when it is not digits (the range is ecommerce's)."""
    text = text.strip()
    return int(text) if _WHOLE_NUMBER.match(text) else None


@dataclass(frozen=True)
class Placed:
    """A refusal, worded, and the part of the form it goes next to."""

    place: str
    text: str
    status: int


def place_refusal(
    t: i18n.Translator,
    refusal: ServiceRefusal,
    *,
    product: pb.CouponProduct | None = None,
    quote: pb.Quote | None = None,
) -> Placed | None:
    """Words for a refusal a customer can meet, or None for one they should never see."""
    status = REFUSAL_STATUS.get(refusal.code, 500)
    reason = refusal.reason
    limit = product.max_quantity_per_redemption if product is not None else 0
    if reason == "INVALID_FIELD":
        if any(f == "quantity" for f in refusal.fields):
            return Placed("quantity", t("refusal.QUANTITY_INVALID", max=limit), status)
        if any(f.startswith("codes") for f in refusal.fields):
            return Placed("codes", t("refusal.NO_CODES"), status)
        return None
    place = REFUSAL_PLACES.get(reason)
    if place is None:
        return None
    if reason == "QUANTITY_LIMIT_EXCEEDED":
        return Placed(place, t("refusal.QUANTITY_LIMIT_EXCEEDED", max=limit), status)
    balance = None if quote is None else available_points(quote)
    if reason == "INSUFFICIENT_POINTS" and quote is not None and balance is not None:
        text = t(
            "refusal.INSUFFICIENT_POINTS.figures",
            required=t.points(quote.points_required),
            available=t.points(balance),
        )
        return Placed(place, text, status)
    if place == "coupon" and refusal.metadata.get("code"):
        place = f"coupon:{refusal.metadata['code']}"
    return Placed(place, t(f"refusal.{reason}"), status)


def quote_view(t: i18n.Translator, quote: pb.Quote) -> dict[str, Any]:
    """What the page shows of a quote; the arithmetic is a subtraction of two integers."""
    view: dict[str, Any] = {
        "ok": True,
        "quantity": quote.quantity,
        "expected_points": quote.points_required,
        "points_required": t.points(quote.points_required),
        "face_value_total": t.money(quote.face_value_total_minor, quote.currency),
        "ratio": t(
            "redeem.ratio", points=t.points(quote.points_per_coupon), version=quote.ratio_version
        ),
        "card_linked": card_linked(quote),
        "available": None,
        "points_after": None,
        "short": None,
    }
    balance = available_points(quote)
    if balance is not None:
        after = balance - quote.points_required
        view["available"] = t.points(balance)
        if after >= 0:
            view["points_after"] = t.points(after)
        else:
            view["short"] = t("redeem.short_by", points=t.points(-after))
    return view


def coupon_view(t: i18n.Translator, coupon: pb.Coupon, names: Mapping[str, str]) -> dict[str, Any]:
    state = COUPON_STATES.get(coupon.state, "issued")
    return {
        "code": coupon.code,
        "product": names.get(coupon.product_id, coupon.product_id),
        "face_value": t.money(coupon.face_value_minor, coupon.currency),
        "state": state,
        "state_text": t(f"state.{state}"),
        "expires": i18n.day(coupon.expire_time),
        "refundable": coupon.state == pb.COUPON_STATE_ISSUED,
        "redemption_id": coupon.redemption_id,
    }
