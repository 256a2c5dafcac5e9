"""A short-lived service token rotated on disk, through real servers on both databases."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from prometheus_client import REGISTRY

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
SHORT_TTL = 4


def write_token(path: Path, ttl: int, auth: Callers) -> None:
    """As an operator (or an agent) rotates it: a new file renamed over the old one."""
    fresh = path.with_suffix(".new")
    fresh.write_text(auth.token("ecommerce", "service", ttl=ttl))
    os.replace(fresh, path)


def token_gauge() -> float:
    value = REGISTRY.get_sample_value("ecommerce_cardpoints_token_expiry_seconds")
    assert value is not None
    return value


def is_warning(record: logging.LogRecord) -> bool:
    """The watch's warning ahead of expiry (not the line that says a new token was read)."""
    return "expires in" in record.getMessage() and "write a new one" in record.getMessage()


def is_expired(record: logging.LogRecord) -> bool:
    return "expired" in record.getMessage() and "until a new one is written" in record.getMessage()


async def until(check: Callable[[], object], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await check():  # type: ignore[misc]
            return
        await asyncio.sleep(0.1)
    raise AssertionError("timed out")


async def test_an_expired_token_is_named_the_redemption_waits_and_a_rotated_one_is_used(
    make_db_url: Callable[[str], str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    auth: Callers,
) -> None:
    caplog.set_level(logging.INFO)
    token_file = tmp_path / "ecommerce.token"
    # Starting and seeding take as long as the machine makes them: under a long-lived
    # token. The short-lived one is written once everything is ready, so its seconds
    # count from a moment this test chooses.
    write_token(token_file, 3600, auth=auth)
    cardpoints = await start_cardpoints(
        CardpointsSettings(
            **auth.server_security, address="127.0.0.1:0", database_url=make_db_url("cardpoints")
        )
    )
    ecommerce = await start(
        Settings(
            **auth.server_security,
            cardpoints_token_file=str(token_file),
            address="127.0.0.1:0",
            database_url=make_db_url("ecommerce"),
            cardpoints_address=f"127.0.0.1:{cardpoints.port}",
            recovery_interval=0.2,
            settle_delay=0.0,
        )
    )
    to_shop = auth.channel(f"127.0.0.1:{ecommerce.port}")
    to_bank = auth.channel(f"127.0.0.1:{cardpoints.port}")
    try:
        await seed_over_grpc(to_bank, to_shop)
        shop = pb_grpc.RedemptionServiceStub(to_shop)

        def redeem(request_id: str) -> pb.RedeemPointsRequest:
            return pb.RedeemPointsRequest(
                request_id=request_id, customer_id="alice", product_id="c10", quantity=1
            )

        write_token(token_file, SHORT_TTL, auth=auth)
        first = await shop.RedeemPoints(redeem("before-expiry"), timeout=TIMEOUT)
        assert first.redemption.state == pb.REDEMPTION_STATE_COMPLETED
        assert 0 < token_gauge() <= SHORT_TTL

        # The token runs out; the service warned before it did, then said it had.
        async def expired_and_said() -> bool:
            return token_gauge() < 0 and any(is_expired(r) for r in caplog.records)

        await until(expired_and_said, SHORT_TTL + 10)
        warned = [i for i, r in enumerate(caplog.records) if is_warning(r)]
        said = next(i for i, r in enumerate(caplog.records) if is_expired(r))
        assert warned and warned[0] < said
        assert caplog.records[warned[0]].levelno == logging.WARNING
        try:
            await shop.RedeemPoints(redeem("after-expiry"), timeout=TIMEOUT)
            raise AssertionError("redeemed with an expired service token")
        except grpc.aio.AioRpcError as error:
            failure = remote_error(error)
        assert (failure.code, failure.reason) == (
            grpc.StatusCode.UNAVAILABLE,
            "POINTS_SYSTEM_CREDENTIALS_REJECTED",
        )
        assert "credentials" in failure.message and "expired" in failure.message
        assert "PENDING" in failure.message
        refused = [
            r for r in caplog.records if "refused this service's credentials" in r.getMessage()
        ]
        assert refused and all("outcome unknown" not in r.getMessage() for r in caplog.records)
        listing = await shop.ListRedemptions(
            pb.ListRedemptionsRequest(customer_id="alice", state="REDEMPTION_STATE_PENDING"),
            timeout=TIMEOUT,
        )
        [pending] = listing.redemptions
        assert pending.request_id == "after-expiry"

        # A new token is written over the file: the waiting redemption settles without
        # anyone retrying it, and new ones go through, with no restart.
        write_token(token_file, 3600, auth=auth)

        async def settled() -> bool:
            got = await shop.GetRedemption(
                pb.GetRedemptionRequest(customer_id="alice", redemption_id=pending.redemption_id),
                timeout=TIMEOUT,
            )
            return got.redemption.state == pb.REDEMPTION_STATE_COMPLETED

        await until(settled, 15)
        third = await shop.RedeemPoints(redeem("after-rotation"), timeout=TIMEOUT)
        assert third.redemption.state == pb.REDEMPTION_STATE_COMPLETED
        assert 3500 < token_gauge() <= 3600
        account = await cpb_grpc.CardPointsServiceStub(to_bank).GetAccount(
            cpb.GetAccountRequest(account_id="card-a"), timeout=TIMEOUT
        )
        assert account.account.balance == 10_000 - 3 * 1000
        assert not math.isnan(token_gauge())
    finally:
        await to_shop.close()
        await to_bank.close()
        await ecommerce.stop(grace=0)
        await cardpoints.stop(grace=0)
