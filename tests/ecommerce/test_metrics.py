"""Business metrics, scraped from /metrics around a redemption, move by exactly what happened."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import grpc
import pytest

from cardpoints.entrypoints.server import Settings as CardpointsSettings
from cardpoints.entrypoints.server import start as start_cardpoints
from ecommerce.entrypoints.server import Settings, start
from pointsbridge.cardpoints.v1 import cardpoints_pb2 as cp
from pointsbridge.cardpoints.v1 import cardpoints_pb2_grpc as cp_grpc
from pointsbridge.ecommerce.v1 import ecommerce_pb2 as ec
from pointsbridge.ecommerce.v1 import ecommerce_pb2_grpc as ec_grpc
from servicekit.observability import serve_metrics
from servicekit.status import remote_error
from tests.auth import Callers
from tests.metrics_scrape import scrape, value


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_a_redemption_use_and_refund_move_the_metrics_exactly(
    make_db_url: Callable[[str], str],
    auth: Callers,
) -> None:
    port = serve_metrics("127.0.0.1:0")
    bank = await start_cardpoints(
        CardpointsSettings(
            **auth.server_security, address="127.0.0.1:0", database_url=make_db_url("cardpoints")
        )
    )
    shop = await start(
        Settings(
            **auth.ecommerce_security,
            address="127.0.0.1:0",
            database_url=make_db_url("ecommerce"),
            cardpoints_address=f"127.0.0.1:{bank.port}",
            recovery_interval=0,
        )
    )
    try:
        async with (
            auth.channel(f"127.0.0.1:{bank.port}") as to_bank,
            auth.channel(f"127.0.0.1:{shop.port}") as to_shop,
        ):
            admin = cp_grpc.CardPointsAdminServiceStub(to_bank)
            await admin.OpenAccount(
                cp.OpenAccountRequest(account_id="m-card", holder_name="M"), timeout=10
            )
            await admin.CreditPoints(
                cp.CreditPointsRequest(request_id="m-seed", account_id="m-card", points=9000),
                timeout=10,
            )
            shop_admin = ec_grpc.EcommerceAdminServiceStub(to_shop)
            await shop_admin.CreateCouponProduct(
                ec.CreateCouponProductRequest(
                    product_id="m10",
                    display_name="10 off",
                    face_value_minor=1000,
                    currency="CNY",
                    points_per_coupon=1000,
                    validity_days=30,
                    max_quantity_per_redemption=5,
                ),
                timeout=10,
            )
            await shop_admin.LinkCardAccount(
                ec.LinkCardAccountRequest(customer_id="m", card_account_id="m-card"), timeout=10
            )
            before = await asyncio.to_thread(scrape, port)

            stub = ec_grpc.RedemptionServiceStub(to_shop)
            redeem = ec.RedeemPointsRequest(
                request_id="m-1", customer_id="m", product_id="m10", quantity=3
            )
            redeemed = (await stub.RedeemPoints(redeem, timeout=10)).redemption
            await stub.RedeemPoints(redeem, timeout=10)  # a replay counts nothing
            codes = [c.code for c in redeemed.coupons]
            await stub.UseCoupon(
                ec.UseCouponRequest(customer_id="m", code=codes[0], order_id="o-1"), timeout=10
            )
            await stub.RefundCoupons(
                ec.RefundCouponsRequest(
                    request_id="m-refund",
                    customer_id="m",
                    redemption_id=redeemed.redemption_id,
                    codes=[codes[1]],
                ),
                timeout=10,
            )
            too_many = ec.RedeemPointsRequest(
                request_id="m-2", customer_id="m", product_id="m10", quantity=5
            )
            await stub.RedeemPoints(too_many, timeout=10)
            poor = ec.RedeemPointsRequest(
                request_id="m-3", customer_id="m", product_id="m10", quantity=5
            )
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.RedeemPoints(poor, timeout=10)
            assert remote_error(refused.value).reason == "INSUFFICIENT_POINTS"
            after = await asyncio.to_thread(scrape, port)
    finally:
        await shop.stop(1)
        await bank.stop(1)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("ecommerce_redemptions_total", state="COMPLETED") == 2
    assert moved("ecommerce_redemptions_total", state="FAILED") == 1
    assert moved("ecommerce_points_total", movement="redeemed") == 8000
    assert moved("ecommerce_points_total", movement="refunded") == 1000
    assert moved("ecommerce_coupons_total", event="issued") == 8
    assert moved("ecommerce_coupons_total", event="used") == 1
    assert moved("ecommerce_coupons_total", event="voided") == 1
    assert moved("cardpoints_points_total", movement="deducted") == 8000
    assert moved("cardpoints_points_total", movement="reversed") == 1000
    assert moved("cardpoints_deductions_total", outcome="INSUFFICIENT_POINTS") == 1
    shop_rpc = "pointsbridge.ecommerce.v1.RedemptionService"
    assert (
        moved("pointsbridge_rpc_requests_total", service=shop_rpc, method="RedeemPoints", code="OK")
        == 3
    )
    assert (
        moved(
            "pointsbridge_rpc_requests_total",
            service=shop_rpc,
            method="RedeemPoints",
            code="FAILED_PRECONDITION",
        )
        == 1
    )
