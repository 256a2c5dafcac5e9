"""What reaches the logs: one request id across both services, and no secrets at all."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator

import grpc
import pytest

from cardpoints.entrypoints.server import Settings as CardpointsSettings
from cardpoints.entrypoints.server import start as start_cardpoints
from ecommerce.entrypoints.server import Settings, start
from pointsbridge.cardpoints.v1 import cardpoints_pb2 as cp
from pointsbridge.cardpoints.v1 import cardpoints_pb2_grpc as cp_grpc
from pointsbridge.ecommerce.v1 import ecommerce_pb2 as ec
from pointsbridge.ecommerce.v1 import ecommerce_pb2_grpc as ec_grpc
from servicekit.devtools.credentials import bearer
from servicekit.observability import JsonFormatter
from tests.auth import Callers

CARD_NUMBER = "6222020200112233445"  # a full card account number as the account id


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("test"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_flows_leave_no_card_number_token_or_code_in_the_logs(
    captured: io.StringIO, make_db_url: Callable[[str], str], auth: Callers
) -> None:
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
    customer_token = auth.token("alice", "customer")
    secrets_seen: list[str] = [CARD_NUMBER, customer_token, auth.superuser]
    try:
        async with (
            auth.channel(f"127.0.0.1:{bank.port}") as to_bank,
            auth.channel(f"127.0.0.1:{shop.port}") as to_shop,
        ):
            admin = cp_grpc.CardPointsAdminServiceStub(to_bank)
            await admin.OpenAccount(
                cp.OpenAccountRequest(account_id=CARD_NUMBER, holder_name="Alice"), timeout=10
            )
            await admin.CreditPoints(
                cp.CreditPointsRequest(request_id="seed", account_id=CARD_NUMBER, points=9000),
                timeout=10,
            )
            shop_admin = ec_grpc.EcommerceAdminServiceStub(to_shop)
            await shop_admin.CreateCouponProduct(
                ec.CreateCouponProductRequest(
                    product_id="c10",
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
                ec.LinkCardAccountRequest(customer_id="alice", card_account_id=CARD_NUMBER),
                timeout=10,
            )
        async with grpc.aio.insecure_channel(f"127.0.0.1:{shop.port}") as plain:
            stub = ec_grpc.RedemptionServiceStub(plain)
            as_alice = (*bearer(customer_token), ("x-request-id", "trace-redeem-1"))
            redeemed = await stub.RedeemPoints(
                ec.RedeemPointsRequest(
                    request_id="r-1", customer_id="alice", product_id="c10", quantity=3
                ),
                timeout=10,
                metadata=as_alice,
            )
            codes = [c.code for c in redeemed.redemption.coupons]
            secrets_seen += codes + [c.replace("-", "") for c in codes]
            await stub.UseCoupon(
                ec.UseCouponRequest(customer_id="alice", code=codes[0], order_id="o-1"),
                timeout=10,
                metadata=bearer(customer_token),
            )
            for bad in (
                ec.UseCouponRequest(customer_id="alice", code=codes[0], order_id="o-2"),
                ec.UseCouponRequest(
                    customer_id="alice",
                    code=codes[1][:-1] + ("Z" if codes[1][-1] != "Z" else "Y"),  # a typo
                    order_id="x",
                ),
            ):
                with pytest.raises(grpc.aio.AioRpcError):
                    await stub.UseCoupon(bad, timeout=10, metadata=bearer(customer_token))
            await stub.RefundCoupons(
                ec.RefundCouponsRequest(
                    request_id="f-1",
                    customer_id="alice",
                    redemption_id=redeemed.redemption.redemption_id,
                    codes=[codes[2]],
                ),
                timeout=10,
                metadata=bearer(customer_token),
            )
            with pytest.raises(grpc.aio.AioRpcError):  # a forged token is logged as a refusal
                await stub.ListCoupons(
                    ec.ListCouponsRequest(customer_id="alice"),
                    timeout=10,
                    metadata=bearer(customer_token[:-4] + "AAAA"),
                )
            secrets_seen.append(customer_token[:-4] + "AAAA")
    finally:
        await shop.stop(1)
        await bank.stop(1)

    text = captured.getvalue()
    lines = [json.loads(line) for line in text.splitlines()]
    assert len(lines) > 10, "the flows should have logged their calls"
    for secret in secrets_seen:
        assert secret not in text, f"{secret[:12]}... leaked into the logs"

    # One redemption, followed across both services by its request id.
    traced = [line for line in lines if line.get("request_id") == "trace-redeem-1"]
    assert {line.get("rpc") for line in traced} >= {"RedeemPoints", "DeductPoints"}


def test_the_formatters_mask_whatever_code_logs_by_mistake(
    captured: io.StringIO, auth: Callers
) -> None:
    code = "BMRP-NAP3-M4EE-GVQH-YX"
    jwt = auth.token("alice", "customer")
    logging.getLogger("careless").warning(
        "card %s used %s with %s", CARD_NUMBER, code, jwt, extra={"detail": code.replace("-", "")}
    )
    line = json.loads(captured.getvalue().splitlines()[-1])
    assert line["message"] == "card [card ..3445] used [coupon ..YX] with [token]"
    assert line["detail"] == "[coupon ..YX]"
