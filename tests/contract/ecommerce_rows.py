"""E-commerce domain objects for the storage contract, and a walk over keyset pages."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from ecommerce.domain.model import (
    Coupon,
    CouponProduct,
    CouponState,
    Redemption,
    RedemptionState,
    Refund,
    RefundState,
)
from servicekit.paging import Page, decode_token
from servicekit.validation import Validator
from tests.contract.conftest import EcommerceStore

T = TypeVar("T")

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
LATER = T0 + timedelta(minutes=5)


def product(product_id: str = "tea", **changes: object) -> CouponProduct:
    fields: dict[str, object] = {
        "product_id": product_id,
        "display_name": "Tea voucher",
        "face_value_minor": 5000,
        "currency": "CNY",
        "points_per_coupon": 1000,
        "ratio_version": 1,
        "validity_days": 30,
        "max_quantity_per_redemption": 10,
        "active": True,
        "create_time": T0,
        **changes,
    }
    return CouponProduct(**fields)  # type: ignore[arg-type]


def redemption(redemption_id: str = "red-1", **changes: object) -> Redemption:
    fields: dict[str, object] = {
        "redemption_id": redemption_id,
        "request_id": f"req-{redemption_id}",
        "customer_id": "alice",
        "product_id": "tea",
        "quantity": 3,
        "points": 3000,
        "points_per_coupon": 1000,
        "ratio_version": 1,
        "card_account_id": "card-alice",
        "state": RedemptionState.PENDING,
        "create_time": T0,
        "update_time": T0,
        **changes,
    }
    return Redemption(**fields)  # type: ignore[arg-type]


def coupon(code: str, redemption_id: str = "red-1", **changes: object) -> Coupon:
    fields: dict[str, object] = {
        "code": code,
        "customer_id": "alice",
        "product_id": "tea",
        "redemption_id": redemption_id,
        "face_value_minor": 5000,
        "currency": "CNY",
        "state": CouponState.ISSUED,
        "issue_time": T0,
        "expire_time": T0 + timedelta(days=30),
        **changes,
    }
    return Coupon(**fields)  # type: ignore[arg-type]


def refund(refund_id: str = "ref-1", redemption_id: str = "red-1", **changes: object) -> Refund:
    fields: dict[str, object] = {
        "refund_id": refund_id,
        "request_id": f"req-{refund_id}",
        "customer_id": "alice",
        "redemption_id": redemption_id,
        "codes": ("CODE-A", "CODE-B"),
        "points": 2000,
        "state": RefundState.PENDING,
        "create_time": T0,
        "update_time": T0,
        **changes,
    }
    return Refund(**fields)  # type: ignore[arg-type]


def walk(page: Callable[[int | None], Page[T]]) -> list[list[T]]:
    """Every page of a listing, following its tokens from the first page (bounded)."""
    pages: list[list[T]] = []
    cursor = None
    for _ in range(50):
        found = page(cursor)
        pages.append(found.items)
        if not found.next_page_token:
            return pages
        v = Validator()
        cursor = decode_token(v, "page_token", found.next_page_token)
        v.done()
    raise AssertionError("paging did not end")


def with_redemptions(store: EcommerceStore, *redemptions: Redemption) -> None:
    with store.uow() as uow:
        for one in redemptions or (redemption(),):
            uow.redemptions.add(one)
        uow.commit()
