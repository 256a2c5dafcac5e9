"""The demo on a running development system: its data, and `make demo`'s redemption."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import grpc

from pointsbridge.cardpoints.v1 import cardpoints_pb2 as cp
from pointsbridge.cardpoints.v1 import cardpoints_pb2_grpc as cp_grpc
from pointsbridge.ecommerce.v1 import ecommerce_pb2 as ec
from pointsbridge.ecommerce.v1 import ecommerce_pb2_grpc as ec_grpc
from servicekit.auth import ROLE_ADMIN, ROLE_CUSTOMER
from servicekit.devtools.credentials import Credentials
from servicekit.status import remote_error

DEMO_CARD = "demo-card"
DEMO_CUSTOMER = "demo-customer"
DEMO_PRODUCT = "coupon-10"
DEMO_POINTS = 100_000
OPERATOR = "devstack"
TIMEOUT = 10.0

START_FIRST = "start `make run` first (in another terminal), then run `make demo` again"


def seed(cardpoints: str, ecommerce: str, keys: Credentials) -> None:
    """Demo data, created once: every step is idempotent, so a restart changes nothing."""
    operator = keys.bearer(OPERATOR, ROLE_ADMIN)
    with grpc.insecure_channel(cardpoints) as channel:
        admin = cp_grpc.CardPointsAdminServiceStub(channel)
        admin.OpenAccount(
            cp.OpenAccountRequest(account_id=DEMO_CARD, holder_name="Demo Customer"),
            timeout=TIMEOUT,
            metadata=operator,
        )
        admin.CreditPoints(
            cp.CreditPointsRequest(
                request_id="demo-seed-credit",
                account_id=DEMO_CARD,
                points=DEMO_POINTS,
                reason="demo data",
            ),
            timeout=TIMEOUT,
            metadata=operator,
        )
    with grpc.insecure_channel(ecommerce) as channel:
        shop = ec_grpc.EcommerceAdminServiceStub(channel)
        try:
            shop.CreateCouponProduct(
                ec.CreateCouponProductRequest(
                    product_id=DEMO_PRODUCT,
                    display_name="10 CNY e-coupon",
                    face_value_minor=1000,
                    currency="CNY",
                    points_per_coupon=1000,
                    validity_days=30,
                    max_quantity_per_redemption=20,
                ),
                timeout=TIMEOUT,
                metadata=operator,
            )
        except grpc.RpcError as error:
            if remote_error(error).reason != "PRODUCT_ALREADY_EXISTS":
                raise
        shop.LinkCardAccount(
            ec.LinkCardAccountRequest(customer_id=DEMO_CUSTOMER, card_account_id=DEMO_CARD),
            timeout=TIMEOUT,
            metadata=operator,
        )


def demo(args: argparse.Namespace) -> int:
    """Redeem three demo coupons and show what moved."""
    cardpoints, ecommerce = args.cardpoints, args.ecommerce
    keys = Credentials(Path(args.var) / "dev-keys")
    if not keys.signing_key.exists():
        missing = f"no system has run here yet ({keys.signing_key} is missing)"
        print(f"error: {missing}; {START_FIRST}", file=sys.stderr)
        return 1
    operator = keys.bearer(OPERATOR, ROLE_ADMIN)
    customer = keys.bearer(DEMO_CUSTOMER, ROLE_CUSTOMER)
    with (
        grpc.insecure_channel(cardpoints) as cp_channel,
        grpc.insecure_channel(ecommerce) as ec_channel,
    ):
        bank = cp_grpc.CardPointsServiceStub(cp_channel)
        shop = ec_grpc.RedemptionServiceStub(ec_channel)

        def balance() -> int:
            account = bank.GetAccount(
                cp.GetAccountRequest(account_id=DEMO_CARD), timeout=TIMEOUT, metadata=operator
            )
            return account.account.balance

        before = balance()
        quote = shop.QuoteRedemption(
            ec.QuoteRedemptionRequest(
                customer_id=DEMO_CUSTOMER, product_id=DEMO_PRODUCT, quantity=3
            ),
            timeout=TIMEOUT,
            metadata=customer,
        ).quote
        redemption = shop.RedeemPoints(
            ec.RedeemPointsRequest(
                request_id=f"demo-{os.getpid()}-{time.time_ns()}",
                customer_id=DEMO_CUSTOMER,
                product_id=DEMO_PRODUCT,
                quantity=3,
                expected_points=quote.points_required,
            ),
            timeout=30,
            metadata=customer,
        ).redemption
        after = balance()
    print(
        f"quote:    3 x {DEMO_PRODUCT} = {quote.points_required} points"
        f" (ratio v{quote.ratio_version})"
    )
    print(f"balance:  {before} -> {after} points on {DEMO_CARD}")
    print(f"redeemed: {redemption.redemption_id} ({ec.RedemptionState.Name(redemption.state)})")
    for coupon in redemption.coupons:
        print(f"coupon:   {coupon.code}")
    return 0 if before - after == quote.points_required else 1
