"""Adapters room: the SQL repositories, one module per aggregate."""

from ecommerce.adapters.repository.coupons import SqlCouponRepository
from ecommerce.adapters.repository.products import (
    SqlLinkRepository,
    SqlProductRepository,
    SqlRatioRepository,
)
from ecommerce.adapters.repository.redemptions import SqlRedemptionRepository
from ecommerce.adapters.repository.refunds import SqlRefundRepository

__all__ = [
    "SqlCouponRepository",
    "SqlLinkRepository",
    "SqlProductRepository",
    "SqlRatioRepository",
    "SqlRedemptionRepository",
    "SqlRefundRepository",
]
