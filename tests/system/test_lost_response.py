"""Cardpoints commits a deduction, ecommerce never hears back: the redemption still ends
COMPLETED exactly once, whether the recovery loop or the client's retry finishes it.

Both services run as real processes; chaos.proxy sits between them and either cuts the
connection as cardpoints starts answering (CUT) or holds the answer past ecommerce's
deadline (STALL).
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from chaos.proxy import FaultProxy, Mode
from pointsbridge.cardpoints.v1 import cardpoints_pb2 as cp
from pointsbridge.cardpoints.v1 import cardpoints_pb2_grpc as cp_grpc
from pointsbridge.ecommerce.v1 import ecommerce_pb2 as ec
from pointsbridge.ecommerce.v1 import ecommerce_pb2_grpc as ec_grpc
from servicekit.devtools.launch import ServiceProcess, cardpoints_command, ecommerce_command
from tests.auth import Callers
from tests.support import expect_error

ACCOUNT = "lost-card"
CUSTOMER = "lost-customer"
PRODUCT = "lost-coupon"
CREDITED = 10_000
POINTS_PER_COUPON = 250
QUANTITY = 3
POINTS = QUANTITY * POINTS_PER_COUPON
REQUEST_ID = "lost-response-1"
TIMEOUT = 10.0


@dataclass
class Stack:
    proxy: FaultProxy
    bank: cp_grpc.CardPointsServiceAsyncStub
    shop: ec_grpc.RedemptionServiceAsyncStub
    admin: ec_grpc.EcommerceAdminServiceAsyncStub


@asynccontextmanager
async def start_stack(
    make_db_url: Callable[[str], str], logs: Path, *, recovery_interval: float, auth: Callers
) -> AsyncIterator[Stack]:
    """cardpoints <- proxy <- ecommerce, as processes on 127.0.0.1, with seeded data."""
    cardpoints = ServiceProcess(
        "cardpoints",
        cardpoints_command(make_db_url("cardpoints"), *auth.server_flags),
        logs,
        hermetic=True,
        lifeline=signal.SIGKILL,
    )
    proxy: FaultProxy | None = None
    ecommerce: ServiceProcess | None = None
    channels: list[grpc.aio.Channel] = []
    try:
        await cardpoints.serve()
        proxy = await FaultProxy(cardpoints.port).start()
        ecommerce = ServiceProcess(
            "ecommerce",
            ecommerce_command(
                make_db_url("ecommerce"),
                proxy.address,
                "--deduct-timeout",
                "1",
                "--recovery-interval",
                str(recovery_interval),
                "--settle-delay",
                "0.5",
                *auth.ecommerce_flags,
            ),
            logs,
            hermetic=True,
            lifeline=signal.SIGKILL,
        )
        await ecommerce.serve()
        # The e-commerce identity with every role: this test is not about access control.
        channels = [auth.channel(cardpoints.address), auth.channel(ecommerce.address)]
        bank_admin = cp_grpc.CardPointsAdminServiceStub(channels[0])
        await bank_admin.OpenAccount(
            cp.OpenAccountRequest(account_id=ACCOUNT, holder_name="Lost Response"), timeout=TIMEOUT
        )
        await bank_admin.CreditPoints(
            cp.CreditPointsRequest(request_id="lost-credit", account_id=ACCOUNT, points=CREDITED),
            timeout=TIMEOUT,
        )
        admin = ec_grpc.EcommerceAdminServiceStub(channels[1])
        await admin.CreateCouponProduct(
            ec.CreateCouponProductRequest(
                product_id=PRODUCT,
                display_name="Lost response coupon",
                face_value_minor=500,
                currency="CNY",
                points_per_coupon=POINTS_PER_COUPON,
                validity_days=30,
                max_quantity_per_redemption=10,
            ),
            timeout=TIMEOUT,
        )
        await admin.LinkCardAccount(
            ec.LinkCardAccountRequest(customer_id=CUSTOMER, card_account_id=ACCOUNT),
            timeout=TIMEOUT,
        )
        yield Stack(
            proxy,
            cp_grpc.CardPointsServiceStub(channels[0]),
            ec_grpc.RedemptionServiceStub(channels[1]),
            admin,
        )
    finally:
        for channel in channels:
            await channel.close()
        if proxy is not None:
            await proxy.close()
        if ecommerce is not None:
            ecommerce.stop()
        cardpoints.stop()


def redeem_request() -> ec.RedeemPointsRequest:
    return ec.RedeemPointsRequest(
        request_id=REQUEST_ID,
        customer_id=CUSTOMER,
        product_id=PRODUCT,
        quantity=QUANTITY,
        expected_points=POINTS,
    )


async def lose_the_response(stack: Stack, fault: Mode) -> str:
    """Redeem while the proxy loses cardpoints' answers; returns the PENDING redemption's id."""
    stack.proxy.set_mode(fault)
    error = await expect_error(stack.shop.RedeemPoints(redeem_request(), timeout=TIMEOUT))
    assert (error.code, error.reason) == (grpc.StatusCode.UNAVAILABLE, "POINTS_SYSTEM_UNAVAILABLE")
    redemption_id = error.metadata["redemption_id"]
    # Cardpoints did the work: the deduction is committed and the balance is down...
    deduction = (
        await stack.bank.GetDeduction(
            cp.GetDeductionRequest(request_id=f"redemption:{redemption_id}"), timeout=TIMEOUT
        )
    ).deduction
    assert deduction.points == POINTS
    assert await balance(stack) == CREDITED - POINTS
    # ...while ecommerce does not know: PENDING, no coupons, listed as unsettled.
    pending = await get_redemption(stack, redemption_id)
    assert pending.state == ec.REDEMPTION_STATE_PENDING
    assert not pending.coupons
    unsettled = await stack.admin.ListUnsettled(ec.ListUnsettledRequest(), timeout=TIMEOUT)
    assert [op.id for op in unsettled.operations] == [redemption_id]
    if fault is Mode.CUT:
        assert stack.proxy.stats.cut >= 1
    stack.proxy.set_mode(Mode.FORWARD)
    return redemption_id


async def retry_redeem(stack: Stack) -> ec.Redemption:
    """What a client does after UNAVAILABLE: resend the same request, a bounded number of
    times (ecommerce's channel to cardpoints may still be reconnecting after the cut)."""
    for _ in range(40):
        try:
            return (await stack.shop.RedeemPoints(redeem_request(), timeout=TIMEOUT)).redemption
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.UNAVAILABLE:
                raise
        await asyncio.sleep(0.25)
    raise AssertionError("RedeemPoints stayed UNAVAILABLE with the proxy forwarding")


async def balance(stack: Stack) -> int:
    answer = await stack.bank.GetAccount(cp.GetAccountRequest(account_id=ACCOUNT), timeout=TIMEOUT)
    return answer.account.balance


async def get_redemption(stack: Stack, redemption_id: str) -> ec.Redemption:
    answer = await stack.shop.GetRedemption(
        ec.GetRedemptionRequest(customer_id=CUSTOMER, redemption_id=redemption_id),
        timeout=TIMEOUT,
    )
    return answer.redemption


async def assert_completed_exactly_once(stack: Stack, redemption: ec.Redemption) -> None:
    assert redemption.state == ec.REDEMPTION_STATE_COMPLETED
    assert redemption.points == POINTS
    codes = [c.code for c in redemption.coupons]
    assert len(codes) == QUANTITY == len(set(codes))
    assert all(c.state == ec.COUPON_STATE_ISSUED for c in redemption.coupons)
    request_id = f"redemption:{redemption.redemption_id}"
    deduction = (
        await stack.bank.GetDeduction(
            cp.GetDeductionRequest(request_id=request_id), timeout=TIMEOUT
        )
    ).deduction
    assert deduction.deduction_id == redemption.deduction_id
    assert deduction.points == POINTS
    every = await stack.bank.ListDeductions(cp.ListDeductionsRequest(), timeout=TIMEOUT)
    assert [d.request_id for d in every.deductions] == [request_id]
    ledger = await stack.bank.ListTransactions(
        cp.ListTransactionsRequest(account_id=ACCOUNT), timeout=TIMEOUT
    )
    deductions = [t for t in ledger.transactions if t.type == cp.ENTRY_TYPE_DEDUCTION]
    assert [(t.request_id, t.amount) for t in deductions] == [(request_id, -POINTS)]
    assert await balance(stack) == CREDITED - POINTS
    unsettled = await stack.admin.ListUnsettled(ec.ListUnsettledRequest(), timeout=TIMEOUT)
    assert not unsettled.operations
    # A replay changes nothing and answers the same.
    replay = (await stack.shop.RedeemPoints(redeem_request(), timeout=TIMEOUT)).redemption
    assert replay.redemption_id == redemption.redemption_id
    assert [c.code for c in replay.coupons] == codes
    assert await balance(stack) == CREDITED - POINTS


@pytest.mark.parametrize("fault", [Mode.CUT, Mode.STALL])
async def test_a_client_retry_completes_a_lost_deduction_once(
    make_db_url: Callable[[str], str], tmp_path: Path, fault: Mode, auth: Callers
) -> None:
    # The recovery loop is off: only the client's retry can finish the redemption.
    async with start_stack(make_db_url, tmp_path, recovery_interval=0, auth=auth) as stack:
        redemption_id = await lose_the_response(stack, fault)
        retried = await retry_redeem(stack)
        assert retried.redemption_id == redemption_id
        await assert_completed_exactly_once(stack, retried)


@pytest.mark.parametrize("fault", [Mode.CUT, Mode.STALL])
async def test_the_recovery_loop_completes_a_lost_deduction_once(
    make_db_url: Callable[[str], str], tmp_path: Path, fault: Mode, auth: Callers
) -> None:
    # Nobody retries: the loop re-sends the same DeductPoints once the proxy forwards again.
    async with start_stack(make_db_url, tmp_path, recovery_interval=0.2, auth=auth) as stack:
        redemption_id = await lose_the_response(stack, fault)
        deadline = time.monotonic() + 20
        redemption = await get_redemption(stack, redemption_id)
        while redemption.state == ec.REDEMPTION_STATE_PENDING and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            redemption = await get_redemption(stack, redemption_id)
        await assert_completed_exactly_once(stack, redemption)
