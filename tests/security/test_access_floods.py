"""Who may call what, across both services: floods and garbage from strangers."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest

from cardpoints.entrypoints.server import Settings as CardpointsSettings
from cardpoints.entrypoints.server import start as start_cardpoints
from ecommerce.entrypoints.server import Settings, start
from pointsbridge.ecommerce.v1 import ecommerce_pb2 as ec
from pointsbridge.ecommerce.v1 import ecommerce_pb2_grpc as ec_grpc
from servicekit.devtools.credentials import bearer
from servicekit.status import remote_error
from tests.auth import Callers
from tests.security.access import Pair


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
