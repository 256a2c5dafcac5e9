"""Card-points metrics and request ids, read the way operators read them."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from pointsbridge.cardpoints.v1 import cardpoints_pb2 as pb
from pointsbridge.cardpoints.v1 import cardpoints_pb2_grpc as pb_grpc
from servicekit.observability import serve_metrics
from tests.metrics_scrape import scrape, value


@pytest.fixture(scope="module")
def metrics_port() -> int:
    return serve_metrics("127.0.0.1:0")


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_metrics_move_by_exactly_what_happened(
    cardpoints_channel: grpc.aio.Channel, metrics_port: int
) -> None:
    points = pb_grpc.CardPointsServiceStub(cardpoints_channel)
    admin = pb_grpc.CardPointsAdminServiceStub(cardpoints_channel)
    await admin.OpenAccount(pb.OpenAccountRequest(account_id="m-1", holder_name="M"), timeout=10)
    before = await asyncio.to_thread(scrape, metrics_port)

    await admin.CreditPoints(
        pb.CreditPointsRequest(request_id="m-c", account_id="m-1", points=500), timeout=10
    )
    deduct = pb.DeductPointsRequest(
        request_id="m-d",
        account_id="m-1",
        points=300,
        coupon_quantity=3,
        points_per_coupon=100,
        merchant_id="shop",
    )
    await points.DeductPoints(deduct, timeout=10)
    await points.DeductPoints(deduct, timeout=10)  # a replay moves nothing
    deduct.request_id, deduct.points, deduct.coupon_quantity = "m-d2", 1000, 10
    with pytest.raises(grpc.aio.AioRpcError):
        await points.DeductPoints(deduct, timeout=10)
    await points.ReverseDeduction(
        pb.ReverseDeductionRequest(request_id="m-r", deduction_request_id="m-d", points=100),
        timeout=10,
    )
    after = await asyncio.to_thread(scrape, metrics_port)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("cardpoints_points_total", movement="credited") == 500
    assert moved("cardpoints_points_total", movement="deducted") == 300
    assert moved("cardpoints_points_total", movement="reversed") == 100
    assert moved("cardpoints_deductions_total", outcome="OK") == 1
    assert moved("cardpoints_deductions_total", outcome="INSUFFICIENT_POINTS") == 1
    service = "pointsbridge.cardpoints.v1.CardPointsService"
    requests = "pointsbridge_rpc_requests_total"
    assert moved(requests, service=service, method="DeductPoints", code="OK") == 2
    assert moved(requests, service=service, method="DeductPoints", code="FAILED_PRECONDITION") == 1
    assert (
        moved("pointsbridge_rpc_latency_seconds_count", service=service, method="DeductPoints") == 3
    )


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_request_id_is_echoed_or_made(cardpoints_channel: grpc.aio.Channel) -> None:
    points = pb_grpc.CardPointsServiceStub(cardpoints_channel)
    call = points.GetAccount(
        pb.GetAccountRequest(account_id="nobody"),
        timeout=10,
        metadata=(("x-request-id", "trace-abc-123"),),
    )
    with pytest.raises(grpc.aio.AioRpcError):
        await call
    assert ("x-request-id", "trace-abc-123") in list(await call.initial_metadata())

    hostile = points.GetAccount(
        pb.GetAccountRequest(account_id="nobody"),
        timeout=10,
        metadata=(("x-request-id", "evil <script> id"),),
    )
    with pytest.raises(grpc.aio.AioRpcError):
        await hostile
    echoed = dict(await hostile.initial_metadata())["x-request-id"]
    assert echoed != "evil <script> id"
    assert len(echoed) == 16
