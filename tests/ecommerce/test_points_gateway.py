"""The points gateway against a scripted cardpoints on 127.0.0.1: retries, deadlines, reasons."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest

from ecommerce.adapters.points_gateway import GrpcPointsGateway
from ecommerce.domain.card_points import Deduction, DeductionOrder
from ecommerce.domain.errors import DomainError, PointsSystemUnavailable
from pointsbridge.cardpoints.v1 import cardpoints_pb2 as cpb
from servicekit.status import status_for

Context = grpc.aio.ServicerContext[Any, Any]
Step = Callable[[Context], Awaitable[cpb.DeductPointsResponse]]

ORDER = DeductionOrder(
    request_id="redemption:rd_1",
    account_id="card-1",
    points=3000,
    coupon_quantity=3,
    points_per_coupon=1000,
    merchant_id="shop",
)


def fail(code: grpc.StatusCode, reason: str) -> Step:
    async def step(context: Context) -> cpb.DeductPointsResponse:
        await context.abort_with_status(status_for(code, reason, f"scripted {reason}"))
        raise AssertionError("unreachable")

    return step


async def succeed(context: Context) -> cpb.DeductPointsResponse:
    return cpb.DeductPointsResponse(
        deduction=cpb.Deduction(
            deduction_id="ded-1",
            request_id=ORDER.request_id,
            account_id=ORDER.account_id,
            points=ORDER.points,
            balance_after=7000,
        )
    )


async def hang(context: Context) -> cpb.DeductPointsResponse:
    await asyncio.sleep(5)
    return await succeed(context)


class ScriptedCardpoints:
    """Answers each DeductPoints with the next scripted step, and remembers what it was sent."""

    def __init__(self) -> None:
        self.script: list[Step] = []
        self.seen: list[cpb.DeductPointsRequest] = []

    async def DeductPoints(
        self, request: cpb.DeductPointsRequest, context: Context
    ) -> cpb.DeductPointsResponse:
        self.seen.append(request)
        return await self.script.pop(0)(context)


@pytest.fixture
async def cardpoints() -> AsyncIterator[tuple[ScriptedCardpoints, int]]:
    servicer = ScriptedCardpoints()
    server = grpc.aio.server()
    # Only DeductPoints is served: any other call the gateway made would be UNIMPLEMENTED.
    handler = grpc.unary_unary_rpc_method_handler(
        servicer.DeductPoints,
        request_deserializer=cpb.DeductPointsRequest.FromString,
        response_serializer=cpb.DeductPointsResponse.SerializeToString,
    )
    service = cpb.DESCRIPTOR.services_by_name["CardPointsService"].full_name
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service, {"DeductPoints": handler}),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield servicer, port
    finally:
        await server.stop(0)


async def deduct(port: int, timeout: float = 5.0) -> Deduction:
    gateway = GrpcPointsGateway.connect(f"127.0.0.1:{port}", timeout=timeout)
    try:
        return await gateway.deduct_points(ORDER)
    finally:
        await gateway.close()


async def test_unavailable_is_resent_unchanged_until_it_succeeds(
    cardpoints: tuple[ScriptedCardpoints, int],
) -> None:
    servicer, port = cardpoints
    unavailable = fail(grpc.StatusCode.UNAVAILABLE, "UNAVAILABLE")
    servicer.script = [unavailable, unavailable, succeed]

    deduction = await deduct(port)

    assert (deduction.deduction_id, deduction.points, deduction.balance_after) == (
        "ded-1",
        3000,
        7000,
    )
    assert len(servicer.seen) == 3
    assert all(request == servicer.seen[0] for request in servicer.seen)
    assert servicer.seen[0] == cpb.DeductPointsRequest(
        request_id="redemption:rd_1",
        account_id="card-1",
        points=3000,
        coupon_quantity=3,
        points_per_coupon=1000,
        merchant_id="shop",
    )


async def test_unavailable_to_the_end_is_an_unknown_outcome_after_bounded_attempts(
    cardpoints: tuple[ScriptedCardpoints, int],
) -> None:
    servicer, port = cardpoints
    servicer.script = [fail(grpc.StatusCode.UNAVAILABLE, "UNAVAILABLE")] * 5
    with pytest.raises(PointsSystemUnavailable):
        await deduct(port)
    assert len(servicer.seen) == 3


async def test_a_missed_deadline_is_an_unknown_outcome(
    cardpoints: tuple[ScriptedCardpoints, int],
) -> None:
    servicer, port = cardpoints
    servicer.script = [hang]
    with pytest.raises(PointsSystemUnavailable):
        await deduct(port, timeout=0.2)
    assert len(servicer.seen) == 1


@pytest.mark.parametrize(
    "reason",
    [
        "INSUFFICIENT_POINTS",
        "ACCOUNT_FROZEN",
        "ACCOUNT_CLOSED",
        "ACCOUNT_NOT_FOUND",
        "POINTS_MISMATCH",
    ],
)
async def test_refusals_keep_their_reason_and_are_not_resent(
    cardpoints: tuple[ScriptedCardpoints, int], reason: str
) -> None:
    servicer, port = cardpoints
    code = (
        grpc.StatusCode.NOT_FOUND
        if reason == "ACCOUNT_NOT_FOUND"
        else grpc.StatusCode.INVALID_ARGUMENT
        if reason == "POINTS_MISMATCH"
        else grpc.StatusCode.FAILED_PRECONDITION
    )
    servicer.script = [fail(code, reason)]
    with pytest.raises(DomainError) as excinfo:
        await deduct(port)
    assert excinfo.value.reason == reason
    assert not isinstance(excinfo.value, PointsSystemUnavailable)
    assert len(servicer.seen) == 1


@pytest.mark.parametrize(
    ("code", "reason"),
    [(grpc.StatusCode.INTERNAL, "INTERNAL"), (grpc.StatusCode.ALREADY_EXISTS, "REQUEST_ID_REUSED")],
)
async def test_answers_that_prove_nothing_are_unknown_outcomes(
    cardpoints: tuple[ScriptedCardpoints, int], code: grpc.StatusCode, reason: str
) -> None:
    servicer, port = cardpoints
    servicer.script = [fail(code, reason)]
    with pytest.raises(PointsSystemUnavailable):
        await deduct(port)
    assert len(servicer.seen) == 1
