"""The smallest shop a test needs: a funded card linked to a customer, and one product."""

from __future__ import annotations

import grpc

from ecommerce.domain import commands
from ecommerce.service_layer import products
from ecommerce.service_layer.ports import EcommerceSteps
from pointsbridge.cardpoints.v1 import cardpoints_pb2 as cpb
from pointsbridge.cardpoints.v1 import cardpoints_pb2_grpc as cpb_grpc
from pointsbridge.ecommerce.v1 import ecommerce_pb2 as pb
from pointsbridge.ecommerce.v1 import ecommerce_pb2_grpc as pb_grpc
from tests.ecommerce.fakes import FakePointsGateway

TIMEOUT = 10.0


async def seed_over_grpc(
    to_bank: grpc.aio.Channel,
    to_shop: grpc.aio.Channel,
    *,
    points: int = 10_000,
    points_per_coupon: int = 1000,
    account_id: str = "card-a",
    product_id: str = "c10",
    customer_id: str = "alice",
) -> None:
    """Through real servers, as an operator: channels that carry an admin token."""
    bank = cpb_grpc.CardPointsAdminServiceStub(to_bank)
    await bank.OpenAccount(
        cpb.OpenAccountRequest(account_id=account_id, holder_name="A"), timeout=TIMEOUT
    )
    await bank.CreditPoints(
        cpb.CreditPointsRequest(request_id="seed", account_id=account_id, points=points),
        timeout=TIMEOUT,
    )
    admin = pb_grpc.EcommerceAdminServiceStub(to_shop)
    await admin.CreateCouponProduct(
        pb.CreateCouponProductRequest(
            product_id=product_id,
            display_name="a coupon",
            face_value_minor=1000,
            currency="CNY",
            points_per_coupon=points_per_coupon,
            validity_days=30,
            max_quantity_per_redemption=10,
        ),
        timeout=TIMEOUT,
    )
    await admin.LinkCardAccount(
        pb.LinkCardAccountRequest(customer_id=customer_id, card_account_id=account_id),
        timeout=TIMEOUT,
    )


async def seed_use_cases(
    steps: EcommerceSteps,
    bank: FakePointsGateway,
    *,
    points: int = 10_000,
    account_id: str = "card-alice",
    product_id: str = "coupon-10",
    customer_id: str = "alice",
) -> None:
    """Through the use cases, with a fake cardpoints: 1000 points a coupon."""
    await steps.write(
        products.create_coupon_product,
        commands.CreateCouponProduct(
            product_id=product_id,
            display_name="10 off",
            face_value_minor=1000,
            currency="CNY",
            points_per_coupon=1000,
            validity_days=30,
            max_quantity_per_redemption=20,
        ),
    )
    bank.open(account_id, points)
    await products.link_card_account(
        steps, bank, commands.LinkCardAccount(customer_id=customer_id, card_account_id=account_id)
    )
