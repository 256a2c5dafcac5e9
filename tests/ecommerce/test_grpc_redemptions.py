"""Both real servers on 127.0.0.1 port 0, on SQLite and PostgreSQL: redemptions end to end."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest

from ecommerce.adapters.points_gateway import GrpcPointsGateway
from ecommerce.domain.card_points import DeductionOrder, ReversalOrder
from ecommerce.domain.errors import DeductionNotFound, PointsSystemUnavailable
from pointsbridge.cardpoints.v1 import cardpoints_pb2 as cpb
from pointsbridge.ecommerce.v1 import ecommerce_pb2 as pb
from servicekit.status import remote_error
from tests.auth import Callers
from tests.ecommerce.grpc_system import FAILED_PRECONDITION, TIMEOUT, System, refused


async def test_happy_path_deducts_quantity_times_ratio_and_issues_that_many_coupons(
    system: System,
) -> None:
    account = await system.customer("alice", 100_000)
    await system.product()
    quote = (
        await system.redemption.QuoteRedemption(
            pb.QuoteRedemptionRequest(customer_id="alice", product_id="coupon-10", quantity=3),
            timeout=TIMEOUT,
        )
    ).quote
    assert (quote.points_required, quote.ratio_version, quote.face_value_total_minor) == (
        3000,
        1,
        3000,
    )
    assert quote.HasField("available_points") and quote.available_points == 100_000
    assert quote.card_linked
    unlinked = await system.redemption.QuoteRedemption(
        pb.QuoteRedemptionRequest(customer_id="nobody", product_id="coupon-10", quantity=1),
        timeout=TIMEOUT,
    )
    assert not unlinked.quote.card_linked and not unlinked.quote.HasField("available_points")

    redemption = await system.redeem("r-1", expected_points=quote.points_required)

    assert redemption.state == pb.REDEMPTION_STATE_COMPLETED
    assert (redemption.points, redemption.ratio_version, redemption.quantity) == (3000, 1, 3)
    codes = {c.code for c in redemption.coupons}
    assert len(codes) == 3
    assert await system.balance(account) == 97_000
    deductions = [e for e in await system.ledger(account) if e.type == cpb.ENTRY_TYPE_DEDUCTION]
    assert [(e.amount, e.request_id) for e in deductions] == [
        (-3000, f"redemption:{redemption.redemption_id}")
    ]
    deduction = (
        await system.points.GetDeduction(
            cpb.GetDeductionRequest(request_id=f"redemption:{redemption.redemption_id}"),
            timeout=TIMEOUT,
        )
    ).deduction
    assert (deduction.deduction_id, deduction.points, deduction.coupon_quantity) == (
        redemption.deduction_id,
        3000,
        3,
    )
    listed = await system.coupons("alice", pb.COUPON_STATE_ISSUED)
    assert {c.code for c in listed} == codes
    replay = await system.redeem("r-1", expected_points=3000)
    assert replay == redemption
    fetched = await system.redemption.GetRedemption(
        pb.GetRedemptionRequest(customer_id="alice", redemption_id=redemption.redemption_id),
        timeout=TIMEOUT,
    )
    assert fetched.redemption == redemption
    assert await system.balance(account) == 97_000


async def test_insufficient_points_fails_without_coupons_and_replays_the_refusal(
    system: System,
) -> None:
    account = await system.customer("alice", 2500)
    await system.product()

    first = await refused(system.redeem("r-1", quantity=3))
    assert (first.code, first.reason) == (FAILED_PRECONDITION, "INSUFFICIENT_POINTS")
    redemption_id = first.metadata["redemption_id"]
    stored = (
        await system.redemption.GetRedemption(
            pb.GetRedemptionRequest(customer_id="alice", redemption_id=redemption_id),
            timeout=TIMEOUT,
        )
    ).redemption
    assert (stored.state, stored.failure_reason, len(stored.coupons)) == (
        pb.REDEMPTION_STATE_FAILED,
        "INSUFFICIENT_POINTS",
        0,
    )
    assert await system.coupons("alice") == []
    assert await system.balance(account) == 2500

    replay = await refused(system.redeem("r-1", quantity=3))
    assert replay == first
    assert [e.type for e in await system.ledger(account)] == [cpb.ENTRY_TYPE_CREDIT]


async def test_cardpoints_down_leaves_pending_and_a_retry_completes_with_one_deduction(
    system: System,
) -> None:
    account = await system.customer("alice", 10_000)
    await system.product()
    port = await system.stop_cardpoints()

    quote = (
        await system.redemption.QuoteRedemption(
            pb.QuoteRedemptionRequest(customer_id="alice", product_id="coupon-10", quantity=2),
            timeout=TIMEOUT,
        )
    ).quote
    assert quote.points_required == 2000
    assert not quote.HasField("available_points")

    down = await refused(system.redeem("r-1", quantity=2))
    assert (down.code, down.reason) == (grpc.StatusCode.UNAVAILABLE, "POINTS_SYSTEM_UNAVAILABLE")
    assert down.metadata["request_id"] == "r-1"
    redemption_id = down.metadata["redemption_id"]
    pending = (
        await system.redemption.GetRedemption(
            pb.GetRedemptionRequest(customer_id="alice", redemption_id=redemption_id),
            timeout=TIMEOUT,
        )
    ).redemption
    assert (pending.state, len(pending.coupons)) == (pb.REDEMPTION_STATE_PENDING, 0)

    await system.restart_cardpoints(port)
    deadline = time.monotonic() + 15
    while True:
        try:
            done = await system.redeem("r-1", quantity=2)
            break
        except grpc.aio.AioRpcError as error:
            # gRPC may still be backing off its reconnect; the client's retry is the same request.
            assert remote_error(error).reason == "POINTS_SYSTEM_UNAVAILABLE"
            assert time.monotonic() < deadline, "cardpoints never came back"
            await asyncio.sleep(0.2)

    assert (done.redemption_id, done.state) == (redemption_id, pb.REDEMPTION_STATE_COMPLETED)
    assert len({c.code for c in done.coupons}) == 2
    assert await system.balance(account) == 8000
    deductions = [e for e in await system.ledger(account) if e.type == cpb.ENTRY_TYPE_DEDUCTION]
    assert [e.request_id for e in deductions] == [f"redemption:{redemption_id}"]
    deduction = (
        await system.points.GetDeduction(
            cpb.GetDeductionRequest(request_id=f"redemption:{redemption_id}"), timeout=TIMEOUT
        )
    ).deduction
    assert (deduction.deduction_id, deduction.points) == (done.deduction_id, 2000)
    assert await system.redeem("r-1", quantity=2) == done


async def test_ratio_changed_between_quote_and_redeem_deducts_nothing(system: System) -> None:
    account = await system.customer("alice", 10_000)
    await system.product()
    quote = (
        await system.redemption.QuoteRedemption(
            pb.QuoteRedemptionRequest(customer_id="alice", product_id="coupon-10", quantity=2),
            timeout=TIMEOUT,
        )
    ).quote
    changed = await system.admin.SetExchangeRatio(
        pb.SetExchangeRatioRequest(product_id="coupon-10", points_per_coupon=1500),
        timeout=TIMEOUT,
    )
    assert (changed.ratio.version, changed.product.points_per_coupon) == (2, 1500)

    error = await refused(system.redeem("r-1", quantity=2, expected_points=quote.points_required))
    assert (error.code, error.reason) == (FAILED_PRECONDITION, "RATE_CHANGED")
    assert error.metadata["points_required"] == "3000"
    assert await system.balance(account) == 10_000
    assert [e.type for e in await system.ledger(account)] == [cpb.ENTRY_TYPE_CREDIT]
    listed = await system.redemption.ListRedemptions(
        pb.ListRedemptionsRequest(customer_id="alice"), timeout=TIMEOUT
    )
    assert list(listed.redemptions) == []
    history = await system.admin.ListExchangeRatios(
        pb.ListExchangeRatiosRequest(product_id="coupon-10"), timeout=TIMEOUT
    )
    assert [(r.version, r.points_per_coupon) for r in history.ratios] == [(2, 1500), (1, 1000)]


async def test_the_gateway_maps_cardpoints_answers(system: System, auth: Callers) -> None:
    account = await system.customer("alice", 10_000)
    await system.product()
    redemption = await system.redeem("r-1", quantity=2)
    gateway = GrpcPointsGateway.connect(
        f"127.0.0.1:{system.cardpoints.port}", timeout=TIMEOUT, token=auth.service
    )
    try:
        # Resent, the redemption's DeductPoints answers with the deduction it made.
        order = DeductionOrder(
            request_id=f"redemption:{redemption.redemption_id}",
            account_id=account,
            points=redemption.points,
            coupon_quantity=redemption.quantity,
            points_per_coupon=redemption.points_per_coupon,
            merchant_id=gateway.merchant_id,
        )
        deduction = await gateway.deduct_points(order)
        assert (deduction.deduction_id, deduction.points, deduction.account_id) == (
            redemption.deduction_id,
            2000,
            account,
        )
        with pytest.raises(DeductionNotFound):
            await gateway.reverse_deduction(
                ReversalOrder("refund:nothing", "redemption:nothing", 1, "")
            )
    finally:
        await gateway.close()

    port = await system.stop_cardpoints()
    unreachable = GrpcPointsGateway.connect(f"127.0.0.1:{port}", timeout=1.0, token=auth.service)
    try:
        with pytest.raises(PointsSystemUnavailable):
            await unreachable.get_account(account)
    finally:
        await unreachable.close()
