"""Who may call what, across both services: one customer never reaches another's data."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.protobuf.message import Message

from ecommerce.domain import coupon_codes
from pointsbridge.cardpoints.v1 import cardpoints_pb2 as cp
from pointsbridge.cardpoints.v1 import cardpoints_pb2_grpc as cp_grpc
from pointsbridge.ecommerce.v1 import ecommerce_pb2 as ec
from pointsbridge.ecommerce.v1 import ecommerce_pb2_grpc as ec_grpc
from servicekit.devtools.credentials import bearer
from servicekit.status import remote_error
from tests.auth import Callers
from tests.security.access import REQUESTS, Pair


def mistype(code: str) -> str:
    """The code with its first symbol changed: the check symbol no longer matches."""
    return ("2" if code[0] != "2" else "3") + code[1:]


async def redemptions_of_alice_and_bob(
    pair: Pair, auth: Callers
) -> tuple[ec.Redemption, ec.Redemption]:
    """Alice and bob, each with a linked card and one coupon redeemed by themself."""
    async with auth.channel(pair.cardpoints) as bank, auth.channel(pair.ecommerce) as shop:
        for who in ("alice", "bob"):
            await cp_grpc.CardPointsAdminServiceStub(bank).OpenAccount(
                cp.OpenAccountRequest(account_id=f"card-{who}", holder_name=who), timeout=10
            )
            await cp_grpc.CardPointsAdminServiceStub(bank).CreditPoints(
                cp.CreditPointsRequest(
                    request_id=f"s-{who}", account_id=f"card-{who}", points=5000
                ),
                timeout=10,
            )
            await ec_grpc.EcommerceAdminServiceStub(shop).LinkCardAccount(
                ec.LinkCardAccountRequest(customer_id=who, card_account_id=f"card-{who}"),
                timeout=10,
            )
        product = REQUESTS["CreateCouponProduct"]()
        assert isinstance(product, ec.CreateCouponProductRequest)
        await ec_grpc.EcommerceAdminServiceStub(shop).CreateCouponProduct(product, timeout=10)
    redeemed = []
    async with grpc.aio.insecure_channel(pair.ecommerce) as channel:
        for who in ("alice", "bob"):
            answer = await ec_grpc.RedemptionServiceStub(channel).RedeemPoints(
                ec.RedeemPointsRequest(
                    request_id=f"{who}-1", customer_id=who, product_id="c20", quantity=1
                ),
                timeout=10,
                metadata=bearer(auth.token(who, "customer")),
            )
            redeemed.append(answer.redemption)
    return redeemed[0], redeemed[1]


async def test_only_an_operator_lists_every_customers_redemptions(
    pair: Pair, auth: Callers
) -> None:
    alices, bobs = await redemptions_of_alice_and_bob(pair, auth=auth)
    async with grpc.aio.insecure_channel(pair.ecommerce) as channel:
        stub = ec_grpc.RedemptionServiceStub(channel)
        everyone = await stub.ListRedemptions(
            ec.ListRedemptionsRequest(), timeout=10, metadata=bearer(auth.admin)
        )
        assert [r.redemption_id for r in everyone.redemptions] == [
            bobs.redemption_id,
            alices.redemption_id,
        ]
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.ListRedemptions(
                ec.ListRedemptionsRequest(),
                timeout=10,
                metadata=bearer(auth.token("alice", "customer")),
            )
        failure = remote_error(refused.value)
        assert (failure.code, failure.reason) == (grpc.StatusCode.PERMISSION_DENIED, "NOT_OWNER")


async def test_another_customers_coupon_looks_like_one_that_does_not_exist(
    pair: Pair, auth: Callers
) -> None:
    alices, bobs = await redemptions_of_alice_and_bob(pair, auth=auth)
    async with grpc.aio.insecure_channel(pair.ecommerce) as channel:
        stub = ec_grpc.RedemptionServiceStub(channel)
        alices_code = alices.coupons[0].code
        made_up_code, made_up_id = coupon_codes.new_code(), "rd_0000000000000000"

        async def answer(
            caller: str, rpc: str, code: str, redemption_id: str
        ) -> tuple[grpc.StatusCode, str, str, dict[str, str], tuple[Any, ...]]:
            """What bob's request gets, with the code and id it named written as X and R."""
            request: Message
            if rpc == "UseCoupon":
                request = ec.UseCouponRequest(customer_id="bob", code=code, order_id="o-1")
            elif rpc == "GetRedemption":
                request = ec.GetRedemptionRequest(customer_id="bob", redemption_id=redemption_id)
            else:
                request = ec.RefundCouponsRequest(
                    request_id=f"bob-{rpc}-{code}-{redemption_id}",
                    customer_id="bob",
                    redemption_id=redemption_id,
                    codes=[code],
                )
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await getattr(stub, rpc.partition(":")[0])(
                    request, timeout=10, metadata=bearer(caller)
                )
            failure = remote_error(refused.value)

            def anonymous(text: str) -> str:
                for named, stand_in in ((code, "X"), (redemption_id, "R")):
                    text = text.replace(named, stand_in) if named else text
                return text

            return (
                failure.code,
                failure.reason,
                anonymous(failure.message),
                {k: anonymous(v) for k, v in failure.metadata.items()},
                failure.violations,
            )

        bob = auth.token("bob", "customer")
        cases = [
            # (rpc, alice's code or id, a made-up one), bob being the caller each time
            ("UseCoupon", (alices_code, ""), (made_up_code, "")),
            ("GetRedemption", ("", alices.redemption_id), ("", made_up_id)),
            ("RefundCoupons", (alices_code, alices.redemption_id), (made_up_code, made_up_id)),
            # alice's code in bob's own redemption
            (
                "RefundCoupons:own",
                (alices_code, bobs.redemption_id),
                (made_up_code, bobs.redemption_id),
            ),
        ]
        for rpc, foreign, made_up in cases:
            seen = await answer(bob, rpc, *foreign)
            assert seen == await answer(bob, rpc, *made_up), rpc
            assert seen[0] == grpc.StatusCode.NOT_FOUND, (rpc, seen)
            if foreign[0]:
                # A typo is caught the same way in a real code and in a made-up one.
                typo = await answer(bob, rpc, mistype(foreign[0]), foreign[1])
                assert typo == await answer(bob, rpc, mistype(made_up[0]), made_up[1]), rpc
                assert typo[:2] == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD")
            # An operator acting for bob is told the truth.
            truth = await answer(auth.admin, rpc, *foreign)
            assert truth[:2] == (grpc.StatusCode.PERMISSION_DENIED, "NOT_OWNER"), rpc

        async with auth.channel(pair.ecommerce) as shop:
            mine = await ec_grpc.RedemptionServiceStub(shop).ListCoupons(
                ec.ListCouponsRequest(customer_id="alice"), timeout=10
            )
        assert [c.state for c in mine.coupons] == [ec.COUPON_STATE_ISSUED]
