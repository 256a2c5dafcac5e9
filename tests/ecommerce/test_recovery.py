"""The recovery loop and the operator views, through real servers on both databases."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import grpc

from cardpoints.entrypoints.server import Settings as CardpointsSettings
from cardpoints.entrypoints.server import start as start_cardpoints
from ecommerce.entrypoints.server import Settings, start
from pointsbridge.cardpoints.v1 import cardpoints_pb2 as cpb
from pointsbridge.cardpoints.v1 import cardpoints_pb2_grpc as cpb_grpc
from pointsbridge.ecommerce.v1 import ecommerce_pb2 as pb
from pointsbridge.ecommerce.v1 import ecommerce_pb2_grpc as pb_grpc
from servicekit.status import remote_error
from tests.auth import Callers
from tests.ecommerce.seed import seed_over_grpc

TIMEOUT = 10.0


async def wait_until(check: Callable[[], object], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await check():  # type: ignore[misc]
            return
        await asyncio.sleep(0.1)
    raise AssertionError("timed out")


async def test_the_loop_settles_what_an_outage_left_pending(
    make_db_url: Callable[[str], str],
    auth: Callers,
) -> None:
    cardpoints_url, ecommerce_url = make_db_url("cardpoints"), make_db_url("ecommerce")
    cardpoints = await start_cardpoints(
        CardpointsSettings(
            **auth.server_security, address="127.0.0.1:0", database_url=cardpoints_url, workers=2
        )
    )
    port = cardpoints.port
    ecommerce = await start(
        Settings(
            **auth.ecommerce_security,
            address="127.0.0.1:0",
            database_url=ecommerce_url,
            cardpoints_address=f"127.0.0.1:{port}",
            workers=2,
            deduct_timeout=1.0,
            recovery_interval=0.2,
            settle_delay=0.0,
        )
    )
    to_shop = auth.channel(f"127.0.0.1:{ecommerce.port}")
    to_bank = auth.channel(f"127.0.0.1:{port}")
    try:
        shop = pb_grpc.RedemptionServiceStub(to_shop)
        admin = pb_grpc.EcommerceAdminServiceStub(to_shop)
        await seed_over_grpc(to_bank, to_shop)

        await cardpoints.stop(0)
        redeem = pb.RedeemPointsRequest(
            request_id="outage-1", customer_id="alice", product_id="c10", quantity=2
        )
        try:
            await shop.RedeemPoints(redeem, timeout=TIMEOUT)
            raise AssertionError("redeemed with cardpoints down")
        except grpc.aio.AioRpcError as error:
            failure = remote_error(error)
        assert (failure.code, failure.reason) == (
            grpc.StatusCode.UNAVAILABLE,
            "POINTS_SYSTEM_UNAVAILABLE",
        )
        unsettled = await admin.ListUnsettled(pb.ListUnsettledRequest(), timeout=TIMEOUT)
        [operation] = unsettled.operations
        assert operation.kind == pb.UNSETTLED_KIND_REDEMPTION
        assert operation.request_id == "outage-1"
        assert operation.points == 2000
        assert not operation.needs_review

        # The bank comes back; nobody retries; the loop finishes the redemption.
        cardpoints = await start_cardpoints(
            CardpointsSettings(
                **auth.server_security, address=f"127.0.0.1:{port}", database_url=cardpoints_url
            )
        )

        async def settled() -> bool:
            listing = await admin.ListUnsettled(pb.ListUnsettledRequest(), timeout=TIMEOUT)
            return not listing.operations

        await wait_until(settled)
        export = await admin.ExportRedemptions(pb.ExportRedemptionsRequest(), timeout=TIMEOUT)
        [item] = export.redemptions
        assert item.redemption.state == pb.REDEMPTION_STATE_COMPLETED
        assert len(item.redemption.coupons) == 2
        bank = cpb_grpc.CardPointsServiceStub(to_bank)
        deduction = await bank.GetDeduction(
            cpb.GetDeductionRequest(request_id=f"redemption:{item.redemption.redemption_id}"),
            timeout=TIMEOUT,
        )
        assert deduction.deduction.deduction_id == item.redemption.deduction_id
        account = await bank.GetAccount(cpb.GetAccountRequest(account_id="card-a"), timeout=TIMEOUT)
        assert account.account.balance == 8000

        # The client's late retry returns the same redemption and moves nothing more.
        again = (await shop.RedeemPoints(redeem, timeout=TIMEOUT)).redemption
        assert again.redemption_id == item.redemption.redemption_id
        assert [c.code for c in again.coupons] == [c.code for c in item.redemption.coupons]
        account = await bank.GetAccount(cpb.GetAccountRequest(account_id="card-a"), timeout=TIMEOUT)
        assert account.account.balance == 8000
    finally:
        await to_shop.close()
        await to_bank.close()
        await ecommerce.stop(1)
        await cardpoints.stop(0)
