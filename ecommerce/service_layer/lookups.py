"""Service layer room: reads that several use cases make the same way."""

from __future__ import annotations

import dataclasses
from datetime import datetime

from ecommerce.domain.errors import CouponNotFound, NotOwner, ProductNotFound, RedemptionNotFound
from ecommerce.domain.model import Coupon, CouponProduct, Redemption
from ecommerce.service_layer.ports import UnitOfWork


def require_product(uow: UnitOfWork, product_id: str) -> CouponProduct:
    product = uow.products.get(product_id)
    if product is None:
        raise ProductNotFound(
            f"no coupon product {product_id!r}", metadata={"product_id": product_id}
        )
    return product


def with_coupons(uow: UnitOfWork, redemption: Redemption, now: datetime) -> Redemption:
    """The redemption with its coupons, each as a reader sees it at `now`."""
    coupons = uow.coupons.of_redemptions([redemption.redemption_id])[redemption.redemption_id]
    return dataclasses.replace(redemption, coupons=tuple(c.as_seen(now) for c in coupons))


def customers_coupon(uow: UnitOfWork, customer_id: str, code: str) -> Coupon:
    """The coupon, if it is the customer's; another's reads as not found to them."""
    coupon = uow.coupons.get(code)
    missing = CouponNotFound(f"there is no coupon {code}", metadata={"code": code})
    if coupon is None:
        raise missing
    if coupon.customer_id != customer_id:
        raise NotOwner(
            f"coupon {code} belongs to another customer than {customer_id!r}",
            concealed=missing,
            metadata={"code": code},
        )
    return coupon


def customers_redemption(uow: UnitOfWork, customer_id: str, redemption_id: str) -> Redemption:
    """The redemption, if it is the customer's; another's reads as not found to them."""
    redemption = uow.redemptions.get(redemption_id)
    missing = RedemptionNotFound(
        f"there is no redemption {redemption_id!r}", metadata={"redemption_id": redemption_id}
    )
    if redemption is None:
        raise missing
    if redemption.customer_id != customer_id:
        raise NotOwner(
            f"redemption {redemption_id!r} belongs to another customer than {customer_id!r}",
            concealed=missing,
            metadata={"redemption_id": redemption_id},
        )
    return redemption
