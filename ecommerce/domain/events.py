"""Domain room: facts the e-commerce use cases record, published once their step commits."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RedemptionCompleted:
    points: int
    coupons: int


@dataclass(frozen=True)
class RedemptionFailed:
    reason: str


@dataclass(frozen=True)
class CouponUsed:
    code: str


@dataclass(frozen=True)
class CouponsVoided:
    count: int


@dataclass(frozen=True)
class CouponsRestored:
    """A refund the card-points system refused: its coupons are ISSUED again."""

    count: int


@dataclass(frozen=True)
class PointsRefunded:
    points: int
