"""Who may call what: every RPC of both services against every kind of bad credential."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc
from sqlalchemy import create_engine, func, inspect, select, table

from cardpoints.entrypoints.server import Settings as CardpointsSettings
from cardpoints.entrypoints.server import start as start_cardpoints
from ecommerce.domain import coupon_codes
from ecommerce.entrypoints.server import Settings, start
from pointsbridge.cardpoints.v1 import cardpoints_pb2 as cp
from pointsbridge.cardpoints.v1 import cardpoints_pb2_grpc as cp_grpc
from pointsbridge.ecommerce.v1 import ecommerce_pb2 as ec
from pointsbridge.ecommerce.v1 import ecommerce_pb2_grpc as ec_grpc
from servicekit.auth import TokenIssuer, generate_signing_key
from servicekit.db import normalize_url
from servicekit.devtools.credentials import bearer
from servicekit.status import remote_error
from tests.auth import Callers

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


def test_every_rpc_has_a_request_and_a_rule_here() -> None:
    names = {name for _, name, _ in all_methods()}
    assert names == set(REQUESTS)
    assert names == ADMIN_ONLY | SERVICE_ONLY | SERVICE_OR_ADMIN | CUSTOMER_OWNED | {
        "ListCouponProducts"
    }


CARDPOINTS_SERVICES = ("CardPointsService", "CardPointsAdminService")
ECOMMERCE_SERVICES = ("RedemptionService", "EcommerceAdminService")


@dataclass
class Pair:
    cardpoints: str
    ecommerce: str
    urls: tuple[str, str]

    def address(self, service: str) -> str:
        return self.cardpoints if "cardpoints" in service else self.ecommerce


@pytest.fixture
async def pair(make_db_url: Callable[[str], str], auth: Callers) -> AsyncIterator[Pair]:
    cardpoints_url, ecommerce_url = make_db_url("cardpoints"), make_db_url("ecommerce")
    cardpoints = await start_cardpoints(
        CardpointsSettings(
            **auth.server_security, address="127.0.0.1:0", database_url=cardpoints_url
        )
    )
    ecommerce = await start(
        Settings(
            **auth.ecommerce_security,
            address="127.0.0.1:0",
            database_url=ecommerce_url,
            cardpoints_address=f"127.0.0.1:{cardpoints.port}",
            recovery_interval=0,
        )
    )
    try:
        yield Pair(
            f"127.0.0.1:{cardpoints.port}",
            f"127.0.0.1:{ecommerce.port}",
            (cardpoints_url, ecommerce_url),
        )
    finally:
        await ecommerce.stop(1)
        await cardpoints.stop(1)


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


def bad_credentials(auth: Callers) -> dict[str, tuple[tuple[tuple[str, str], ...], str]]:
    other_key, _ = generate_signing_key()
    forged = TokenIssuer(other_key).issue("ecommerce", ["admin", "service"], 3600)
    expired = auth.token("ecommerce", "admin", "service", ttl=60, now=time.time() - 3600)
    return {
        "none": ((), "MISSING_CREDENTIALS"),
        "expired": (bearer(expired), "INVALID_CREDENTIALS"),
        "wrong signature": (bearer(forged), "INVALID_CREDENTIALS"),
        "not a token": (bearer("not-a-jwt"), "INVALID_CREDENTIALS"),
        "other scheme": ((("authorization", "Basic YWRtaW46YWRtaW4="),), "INVALID_CREDENTIALS"),
    }


async def test_bad_credentials_are_refused_on_every_rpc_and_change_nothing(
    pair: Pair, auth: Callers
) -> None:
    before = snapshot(pair.urls)
    for service, name, method in all_methods():
        for label, (metadata, reason) in bad_credentials(auth).items():
            code, got = await call(pair, service, method, metadata)
            assert (code, got) == (grpc.StatusCode.UNAUTHENTICATED, reason), (name, label)
    assert snapshot(pair.urls) == before


def expected_denial(name: str, role: str, subject: str) -> str | None:
    """The PERMISSION_DENIED reason a caller gets, or None when the rule lets it through."""
    if name in ADMIN_ONLY:
        return None if role == "admin" else "NOT_ADMIN"
    if name in SERVICE_ONLY:
        return None if role == "service" and subject == "ecommerce" else "NOT_SERVICE"
    if name in SERVICE_OR_ADMIN:
        if role == "admin" or (role == "service" and subject == "ecommerce"):
            return None
        return "NOT_SERVICE"
    if name in CUSTOMER_OWNED:
        if role == "admin" or (role == "customer" and subject == "bob"):
            return None
        return "NOT_OWNER" if role == "customer" else "NOT_ADMIN"
    return None if role in ("customer", "admin") else "NOT_ADMIN"  # ListCouponProducts


CALLERS = [
    ("customer", "alice"),  # someone else's customer_id
    ("customer", "bob"),
    ("admin", "ops-1"),
    ("service", "ecommerce"),
    ("service", "rogue"),  # a service this server does not work for
]


async def test_each_role_reaches_only_its_own_rpcs(pair: Pair, auth: Callers) -> None:
    before = snapshot(pair.urls)
    reached = 0
    for service, name, method in all_methods():
        for role, subject in CALLERS:
            denial = expected_denial(name, role, subject)
            code, reason = await call(pair, service, method, bearer(auth.token(subject, role)))
            if denial is None:
                # Past authorization: whatever the use case says, it is not an access refusal.
                assert code not in (
                    grpc.StatusCode.UNAUTHENTICATED,
                    grpc.StatusCode.PERMISSION_DENIED,
                ), (name, role, subject, code, reason)
                reached += 1
            else:
                assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, denial), (
                    name,
                    role,
                    subject,
                )
    assert reached > 20
    # Refused calls changed nothing; the admitted ones above were shaped to change nothing
    # either (unknown accounts and products), except what the admins may create.
    after = snapshot(pair.urls)
    grown = {k for k in after if after[k] != before.get(k)}
    assert all(
        k.endswith(
            (
                ":accounts",
                ":coupon_products",
                ":exchange_ratios",
                ":card_links",
                ":idempotency_records",
                ":ledger_entries",
                ":cardpoints_alembic_version",
                # The events of those changes, written with them.
                ":outbox_events",
                ":event_sequences",
            )
        )
        for k in grown
    ), grown


async def _reflected_services(channel: grpc.aio.Channel) -> set[str]:
    """The services server reflection lists, asked as grpcurl `list` asks."""
    asked = reflection_pb2.ServerReflectionRequest(list_services="")
    call = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
        iter([asked]), timeout=10
    )
    names: set[str] = set()
    async for answer in call:
        assert not answer.HasField("error_response"), answer.error_response
        names |= {s.name for s in answer.list_services_response.service}
    return names


async def test_health_and_reflection_need_no_credentials(pair: Pair) -> None:
    served = {
        pair.cardpoints: {cp.DESCRIPTOR.services_by_name[n].full_name for n in CARDPOINTS_SERVICES},
        pair.ecommerce: {ec.DESCRIPTOR.services_by_name[n].full_name for n in ECOMMERCE_SERVICES},
    }
    for address, services in served.items():
        async with grpc.aio.insecure_channel(address) as channel:
            check = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=10
            )
            assert check.status == health_pb2.HealthCheckResponse.SERVING
            listed = await _reflected_services(channel)
            assert services | {"grpc.health.v1.Health", reflection.SERVICE_NAME} <= listed
    # The same channel, with the same lack of credentials, is turned away anywhere else.
    async with grpc.aio.insecure_channel(pair.ecommerce) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await ec_grpc.RedemptionServiceStub(channel).ListCouponProducts(
                ec.ListCouponProductsRequest(), timeout=10
            )
    assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED


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


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_a_flooding_customer_is_slowed_without_starving_others(
    make_db_url: Callable[[str], str],
    auth: Callers,
) -> None:
    cardpoints = await start_cardpoints(
        CardpointsSettings(
            **auth.server_security, address="127.0.0.1:0", database_url=make_db_url("cardpoints")
        )
    )
    shop = await start(
        Settings(
            **auth.ecommerce_security,
            address="127.0.0.1:0",
            database_url=make_db_url("ecommerce"),
            cardpoints_address=f"127.0.0.1:{cardpoints.port}",
            recovery_interval=0,
            rate_limit=1.0,
            rate_burst=5,
        )
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{shop.port}") as channel:
            stub = channel.unary_unary(
                "/pointsbridge.ecommerce.v1.RedemptionService/ListCoupons",
                request_serializer=ec.ListCouponsRequest.SerializeToString,
                response_deserializer=ec.ListCouponsResponse.FromString,
            )

            async def list_as(customer: str) -> tuple[grpc.StatusCode, str]:
                try:
                    await stub(
                        ec.ListCouponsRequest(customer_id=customer),
                        timeout=10,
                        metadata=bearer(auth.token(customer, "customer")),
                    )
                except grpc.aio.AioRpcError as error:
                    failure = remote_error(error)
                    return failure.code, failure.reason
                return grpc.StatusCode.OK, ""

            flood = [await list_as("mallory") for _ in range(12)]
            assert flood[:5] == [(grpc.StatusCode.OK, "")] * 5
            assert (grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED") in flood[5:]
            # Another customer, and an operator, are not held back by mallory's flood.
            assert await list_as("alice") == (grpc.StatusCode.OK, "")
            async with auth.channel(f"127.0.0.1:{shop.port}", auth.admin) as operator:
                listed = await ec_grpc.RedemptionServiceStub(operator).ListCoupons(
                    ec.ListCouponsRequest(customer_id="mallory"), timeout=10
                )
                assert list(listed.coupons) == []
    finally:
        await shop.stop(1)
        await cardpoints.stop(1)


async def test_garbage_from_a_stranger_is_unauthenticated_before_it_is_parsed(
    pair: Pair, auth: Callers
) -> None:
    for address, rpc in (
        (pair.cardpoints, "/pointsbridge.cardpoints.v1.CardPointsService/DeductPoints"),
        (pair.ecommerce, "/pointsbridge.ecommerce.v1.RedemptionService/RedeemPoints"),
    ):
        async with grpc.aio.insecure_channel(address) as channel:
            raw: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(rpc)
            for metadata, expected in (
                ((), (grpc.StatusCode.UNAUTHENTICATED, "MISSING_CREDENTIALS")),
                (bearer(auth.superuser), (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD")),
            ):
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await raw(b"\xff\xfe\x00garbage", timeout=10, metadata=metadata)
                failure = remote_error(refused.value)
                assert (failure.code, failure.reason) == expected, rpc
