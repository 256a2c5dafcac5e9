"""The world the service-layer tests run in: the fakes, and helpers that build a shop in it."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from ecommerce.domain import commands
from ecommerce.domain.errors import DomainError
from ecommerce.domain.model import (
    Coupon,
    CouponProduct,
    Redemption,
    Refund,
)
from ecommerce.service_layer import products, redemptions, refunds
from ecommerce.service_layer.ports import EcommerceSteps
from tests.ecommerce.fakes import (
    FakeClock,
    FakeDatabase,
    FakePointsGateway,
)


@dataclass
class World:
    steps: EcommerceSteps
    database: FakeDatabase
    points: FakePointsGateway
    clock: FakeClock


# ---------------------------------------------------------------- helpers


async def add_product(
    w: World,
    product_id: str = "coupon-10",
    *,
    points_per_coupon: int = 1000,
    face_value_minor: int = 1000,
    validity_days: int = 30,
    max_quantity: int = 20,
) -> CouponProduct:
    return await w.steps.write(
        products.create_coupon_product,
        commands.CreateCouponProduct(
            product_id=product_id,
            display_name="10 CNY off",
            face_value_minor=face_value_minor,
            currency="CNY",
            points_per_coupon=points_per_coupon,
            validity_days=validity_days,
            max_quantity_per_redemption=max_quantity,
        ),
    )


async def add_customer(w: World, customer_id: str = "alice", balance: int = 10_000) -> None:
    w.points.open(f"card-{customer_id}", balance)
    await products.link_card_account(
        w.steps,
        w.points,
        commands.LinkCardAccount(customer_id=customer_id, card_account_id=f"card-{customer_id}"),
    )


async def redeem(
    w: World,
    request_id: str = "req-1",
    *,
    customer_id: str = "alice",
    product_id: str = "coupon-10",
    quantity: int = 3,
    expected_points: int | None = None,
) -> Redemption:
    return await redemptions.redeem_points(
        w.steps,
        w.points,
        commands.RedeemPoints(
            request_id=request_id,
            customer_id=customer_id,
            product_id=product_id,
            quantity=quantity,
            expected_points=expected_points,
        ),
    )


async def refund_coupons(
    w: World,
    redemption_id: str,
    codes: list[str],
    request_id: str = "rf-1",
    *,
    customer_id: str = "alice",
) -> Refund:
    return await refunds.refund_coupons(
        w.steps,
        w.points,
        commands.RefundCoupons(
            request_id=request_id,
            customer_id=customer_id,
            redemption_id=redemption_id,
            codes=codes,
        ),
    )


def stored_redemptions(w: World) -> list[Redemption]:
    return [r for _, r in w.database.state.redemptions.values()]


def stored_coupons(w: World) -> list[Coupon]:
    return [c for _, c, _ in w.database.state.coupons.values()]


def balance(w: World, customer_id: str = "alice") -> int:
    return w.points.accounts[f"card-{customer_id}"].balance


def refused(excinfo: pytest.ExceptionInfo[DomainError]) -> tuple[str, dict[str, str]]:
    return excinfo.value.reason, excinfo.value.metadata
