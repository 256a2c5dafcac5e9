"""Who may call what, across both services: bad credentials, roles, the open services."""

from __future__ import annotations

import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

from pointsbridge.cardpoints.v1 import cardpoints_pb2 as cp
from pointsbridge.ecommerce.v1 import ecommerce_pb2 as ec
from pointsbridge.ecommerce.v1 import ecommerce_pb2_grpc as ec_grpc
from servicekit.auth import TokenIssuer, generate_signing_key
from servicekit.devtools.credentials import bearer
from tests.auth import Callers
from tests.security.access import (
    ADMIN_ONLY,
    CARDPOINTS_SERVICES,
    CUSTOMER_OWNED,
    ECOMMERCE_SERVICES,
    REQUESTS,
    SERVICE_ONLY,
    SERVICE_OR_ADMIN,
    Pair,
    all_methods,
    call,
    snapshot,
)


def test_every_rpc_has_a_request_and_a_rule_here() -> None:
    names = {name for _, name, _ in all_methods()}
    assert names == set(REQUESTS)
    assert names == ADMIN_ONLY | SERVICE_ONLY | SERVICE_OR_ADMIN | CUSTOMER_OWNED | {
        "ListCouponProducts"
    }


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
