"""What the access tests share: a request and a rule per RPC, and a client for the pair."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import Message
from sqlalchemy import create_engine, func, inspect, select, table

from pointsbridge.cardpoints.v1 import cardpoints_pb2 as cp
from pointsbridge.ecommerce.v1 import ecommerce_pb2 as ec
from servicekit.db import normalize_url
from servicekit.status import remote_error

# A request per RPC, naming customer "bob" wherever a customer id goes.
REQUESTS: dict[str, Callable[[], Message]] = {
    "GetAccount": lambda: cp.GetAccountRequest(account_id="card-bob"),
    "DeductPoints": lambda: cp.DeductPointsRequest(
        request_id="d-1",
        account_id="card-bob",
        points=100,
        coupon_quantity=1,
        points_per_coupon=100,
        merchant_id="shop",
    ),
    "GetDeduction": lambda: cp.GetDeductionRequest(request_id="d-1"),
    "ReverseDeduction": lambda: cp.ReverseDeductionRequest(
        request_id="r-1", deduction_request_id="d-1", points=1
    ),
    "ListTransactions": lambda: cp.ListTransactionsRequest(account_id="card-bob"),
    "ListDeductions": lambda: cp.ListDeductionsRequest(),
    "OpenAccount": lambda: cp.OpenAccountRequest(account_id="card-new", holder_name="N"),
    "CreditPoints": lambda: cp.CreditPointsRequest(
        request_id="c-1", account_id="card-bob", points=5
    ),
    "SetAccountState": lambda: cp.SetAccountStateRequest(
        account_id="card-bob", state=cp.ACCOUNT_STATE_FROZEN
    ),
    "ListAccounts": lambda: cp.ListAccountsRequest(),
    "ListCouponProducts": lambda: ec.ListCouponProductsRequest(),
    "QuoteRedemption": lambda: ec.QuoteRedemptionRequest(
        customer_id="bob", product_id="c10", quantity=1
    ),
    "RedeemPoints": lambda: ec.RedeemPointsRequest(
        request_id="rd-1", customer_id="bob", product_id="c10", quantity=1
    ),
    "GetRedemption": lambda: ec.GetRedemptionRequest(customer_id="bob", redemption_id="rd_x"),
    "ListRedemptions": lambda: ec.ListRedemptionsRequest(customer_id="bob"),
    "ListCoupons": lambda: ec.ListCouponsRequest(customer_id="bob"),
    "UseCoupon": lambda: ec.UseCouponRequest(
        customer_id="bob", code="2222-2222-2222-2222-22", order_id="o-1"
    ),
    "RefundCoupons": lambda: ec.RefundCouponsRequest(
        request_id="f-1", customer_id="bob", redemption_id="rd_x", codes=["x"]
    ),
    "CreateCouponProduct": lambda: ec.CreateCouponProductRequest(
        product_id="c20",
        display_name="20 off",
        face_value_minor=2000,
        currency="CNY",
        points_per_coupon=2000,
        validity_days=30,
        max_quantity_per_redemption=5,
    ),
    "SetExchangeRatio": lambda: ec.SetExchangeRatioRequest(product_id="c10", points_per_coupon=1),
    "ListExchangeRatios": lambda: ec.ListExchangeRatiosRequest(product_id="c10"),
    "SetCouponProductActive": lambda: ec.SetCouponProductActiveRequest(product_id="c10"),
    "LinkCardAccount": lambda: ec.LinkCardAccountRequest(
        customer_id="bob", card_account_id="card-new"
    ),
    "ExportRedemptions": lambda: ec.ExportRedemptionsRequest(),
    "ListUnsettled": lambda: ec.ListUnsettledRequest(),
}

ADMIN_ONLY = {
    "OpenAccount",
    "CreditPoints",
    "SetAccountState",
    "ListAccounts",
    "CreateCouponProduct",
    "SetExchangeRatio",
    "ListExchangeRatios",
    "SetCouponProductActive",
    "LinkCardAccount",
    "ExportRedemptions",
    "ListUnsettled",
}
SERVICE_ONLY = {"DeductPoints", "GetDeduction", "ReverseDeduction"}
SERVICE_OR_ADMIN = {"GetAccount", "ListTransactions", "ListDeductions"}
CUSTOMER_OWNED = {
    "QuoteRedemption",
    "RedeemPoints",
    "GetRedemption",
    "ListRedemptions",
    "ListCoupons",
    "UseCoupon",
    "RefundCoupons",
}


def all_methods() -> list[tuple[str, str, Any]]:
    """(service full name, method, descriptor) for every RPC of both services."""
    found = []
    for module in (cp, ec):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                found.append((service.full_name, method.name, method))
    return found


CARDPOINTS_SERVICES = ("CardPointsService", "CardPointsAdminService")
ECOMMERCE_SERVICES = ("RedemptionService", "EcommerceAdminService")


@dataclass
class Pair:
    cardpoints: str
    ecommerce: str
    urls: tuple[str, str]

    def address(self, service: str) -> str:
        return self.cardpoints if "cardpoints" in service else self.ecommerce


def snapshot(urls: tuple[str, str]) -> dict[str, int]:
    """Row counts of every table of both databases."""
    counts = {}
    for url in urls:
        engine = create_engine(normalize_url(url))
        try:
            with engine.connect() as conn:
                for name in inspect(engine).get_table_names():
                    counts[f"{url}:{name}"] = conn.execute(
                        select(func.count()).select_from(table(name))
                    ).scalar_one()
        finally:
            engine.dispose()
    return counts


async def call(
    pair: Pair, service: str, method: Any, metadata: tuple[tuple[str, str], ...]
) -> tuple[grpc.StatusCode, str]:
    request = REQUESTS[method.name]()
    async with grpc.aio.insecure_channel(pair.address(service)) as channel:
        stub = channel.unary_unary(
            f"/{service}/{method.name}",
            request_serializer=type(request).SerializeToString,
            response_deserializer=lambda data: data,
        )
        try:
            await stub(request, timeout=10, metadata=metadata)
        except grpc.aio.AioRpcError as error:
            failure = remote_error(error)
            return failure.code, failure.reason
    return grpc.StatusCode.OK, ""
