"""Domain room: the commands of the e-commerce use cases, one frozen dataclass each.

The fields are named as the proto names them; each use case checks its command's
fields before it reads or writes anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class CreateCouponProduct:
    product_id: str
    display_name: str
    face_value_minor: int
    currency: str
    points_per_coupon: int
    validity_days: int
    max_quantity_per_redemption: int


@dataclass(frozen=True)
class SetExchangeRatio:
    product_id: str
    points_per_coupon: int


@dataclass(frozen=True)
class ListExchangeRatios:
    product_id: str
    page_size: int = 0
    page_token: str = ""


@dataclass(frozen=True)
class SetCouponProductActive:
    product_id: str
    active: bool


@dataclass(frozen=True)
class LinkCardAccount:
    customer_id: str
    card_account_id: str


@dataclass(frozen=True)
class ListCouponProducts:
    page_size: int = 0
    page_token: str = ""
    include_inactive: bool = False


@dataclass(frozen=True)
class QuoteRedemption:
    customer_id: str
    product_id: str
    quantity: int


@dataclass(frozen=True)
class RedeemPoints:
    request_id: str
    customer_id: str
    product_id: str
    quantity: int
    expected_points: int | None = None


@dataclass(frozen=True)
class GetRedemption:
    customer_id: str
    redemption_id: str


@dataclass(frozen=True)
class ListRedemptions:
    customer_id: str | None  # None: every customer's
    page_size: int = 0
    page_token: str = ""
    state: str = ""


@dataclass(frozen=True)
class ListCoupons:
    customer_id: str
    state: str = ""
    page_size: int = 0
    page_token: str = ""


@dataclass(frozen=True)
class UseCoupon:
    customer_id: str
    code: str
    order_id: str


@dataclass(frozen=True)
class RefundCoupons:
    request_id: str
    customer_id: str
    redemption_id: str
    codes: Sequence[str]


@dataclass(frozen=True)
class ListUnsettled:
    review_after: timedelta
    limit: int


@dataclass(frozen=True)
class ExportRedemptions:
    start: datetime | None
    end: datetime | None
    page_size: int = 0
    page_token: str = ""
