"""Domain room: facts the e-commerce use cases record, published once their step commits."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the aggregates return these events, so they are imported for typing only
    from ecommerce.domain.model import Coupon, CouponProduct, ExchangeRatio, Redemption, Refund


class ProductChange(enum.StrEnum):
    CREATED = "CREATED"
    ACTIVATED = "ACTIVATED"
    DEACTIVATED = "DEACTIVATED"


@dataclass(frozen=True)
class CouponProductChanged:
    product: CouponProduct  # as it is after the change
    change: ProductChange
    time: datetime


@dataclass(frozen=True)
class ExchangeRatioChanged:
    ratio: ExchangeRatio


@dataclass(frozen=True)
class RedemptionCompleted:
    points: int
    coupons: int
    redemption: Redemption  # COMPLETED, with its coupons


@dataclass(frozen=True)
class RedemptionFailed:
    reason: str
    redemption: Redemption  # FAILED


@dataclass(frozen=True)
class CouponUsed:
    code: str
    coupon: Coupon  # USED


@dataclass(frozen=True)
class CouponsVoided:
    """A refund started: its coupons are VOID, its points not yet given back."""

    count: int
    refund: Refund


@dataclass(frozen=True)
class CouponsRestored:
    """A refund the card-points system refused: its coupons are ISSUED again."""

    count: int
    refund: Refund
    reason: str
    time: datetime


@dataclass(frozen=True)
class PointsRefunded:
    points: int
    refund: Refund  # COMPLETED
