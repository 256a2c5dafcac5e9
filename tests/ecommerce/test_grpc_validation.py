"""Both real servers on 127.0.0.1 port 0, on SQLite and PostgreSQL: bad input on every RPC."""

from __future__ import annotations

from typing import Any, cast

from google.protobuf.timestamp_pb2 import Timestamp

from pointsbridge.ecommerce.v1 import ecommerce_pb2 as pb
from tests.ecommerce.grpc_system import INVALID, TIMEOUT, System, fields_of, refused


async def test_bad_input_on_every_rpc_is_invalid_argument_naming_the_fields(
    system: System,
) -> None:
    account = await system.customer("alice", 10_000)
    await system.product()
    redemption = await system.redeem("r-1", quantity=1)
    code = redemption.coupons[0].code
    before, ledger_before = system.row_counts(), await system.ledger(account)
    r, a = system.redemption, system.admin
    cases: list[tuple[Any, str, Any, set[str]]] = [
        (
            r,
            "ListCouponProducts",
            pb.ListCouponProductsRequest(page_size=-1, page_token="not-a-token"),
            {"page_size", "page_token"},
        ),
        (
            r,
            "QuoteRedemption",
            pb.QuoteRedemptionRequest(customer_id="", product_id="bad id", quantity=0),
            {"customer_id", "product_id", "quantity"},
        ),
        (
            r,
            "RedeemPoints",
            pb.RedeemPointsRequest(
                request_id="no spaces allowed",
                customer_id="a/b",
                product_id="",
                quantity=-2,
                expected_points=0,
            ),
            {"request_id", "customer_id", "product_id", "quantity", "expected_points"},
        ),
        (
            r,
            "GetRedemption",
            pb.GetRedemptionRequest(customer_id="", redemption_id="rd/1"),
            {"customer_id", "redemption_id"},
        ),
        (
            r,
            "ListRedemptions",
            pb.ListRedemptionsRequest(
                # Empty would list every customer's (operators only); this is no id at all.
                customer_id="not an id",
                page_size=1001,
                page_token="x",
                state=cast(pb.RedemptionState, 9),
            ),
            {"customer_id", "page_size", "page_token", "state"},
        ),
        (
            r,
            "ListCoupons",
            pb.ListCouponsRequest(
                customer_id="a b", state=cast(pb.CouponState, 7), page_size=-1, page_token="?"
            ),
            {"customer_id", "state", "page_size", "page_token"},
        ),
        (
            r,
            "UseCoupon",
            # A different check symbol: always a typo, whatever the real one is.
            pb.UseCouponRequest(
                customer_id="", code=code[:-1] + ("X" if code[-1] != "X" else "Y"), order_id="o/1"
            ),
            {"customer_id", "code", "order_id"},
        ),
        (
            r,
            "RefundCoupons",
            pb.RefundCouponsRequest(request_id="", customer_id="", redemption_id="", codes=[]),
            {"request_id", "customer_id", "redemption_id", "codes"},
        ),
        (
            r,
            "RefundCoupons",
            pb.RefundCouponsRequest(
                request_id="rf-1",
                customer_id="alice",
                redemption_id=redemption.redemption_id,
                codes=[code, "nonsense", code.lower()],
            ),
            {"codes[1]", "codes[2]"},
        ),
        (
            a,
            "CreateCouponProduct",
            pb.CreateCouponProductRequest(product_id="p 1", currency="cny", validity_days=4000),
            {
                "product_id",
                "display_name",
                "face_value_minor",
                "currency",
                "points_per_coupon",
                "validity_days",
                "max_quantity_per_redemption",
            },
        ),
        (
            a,
            "SetExchangeRatio",
            pb.SetExchangeRatioRequest(product_id="", points_per_coupon=-1),
            {"product_id", "points_per_coupon"},
        ),
        (
            a,
            "ListExchangeRatios",
            pb.ListExchangeRatiosRequest(product_id="", page_size=5000, page_token="zz"),
            {"product_id", "page_size", "page_token"},
        ),
        (
            a,
            "SetCouponProductActive",
            pb.SetCouponProductActiveRequest(product_id="bad id", active=True),
            {"product_id"},
        ),
        (
            a,
            "LinkCardAccount",
            pb.LinkCardAccountRequest(customer_id="", card_account_id="bad id"),
            {"customer_id", "card_account_id"},
        ),
        (
            a,
            "ExportRedemptions",
            pb.ExportRedemptionsRequest(
                start_time=Timestamp(seconds=2_000_000_000),
                end_time=Timestamp(seconds=1_000_000_000),
                page_size=-1,
                page_token="zz",
            ),
            {"end_time", "page_size", "page_token"},
        ),
        (a, "ListUnsettled", pb.ListUnsettledRequest(page_size=1001), {"page_size"}),
    ]
    covered = {name for _, name, _, _ in cases}
    assert covered == {m.name for s in pb.DESCRIPTOR.services_by_name.values() for m in s.methods}

    for stub, name, request, expected in cases:
        error = await refused(getattr(stub, name)(request, timeout=TIMEOUT))
        assert (error.code, error.reason) == (INVALID, "INVALID_FIELD"), name
        assert fields_of(error) == expected, (name, error.violations)
        assert all(v.description for v in error.violations)

    assert system.row_counts() == before
    assert await system.ledger(account) == ledger_before
