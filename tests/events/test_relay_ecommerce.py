"""The relay of the e-commerce service, through real servers and a private JetStream."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest

from ecommerce.adapters.orm import OUTBOX as ECOMMERCE_OUTBOX
from ecommerce.entrypoints.server import Settings as EcommerceSettings
from ecommerce.entrypoints.server import start as start_ecommerce
from pointsbridge.cardpoints.v1 import cardpoints_pb2 as cpb
from pointsbridge.ecommerce.v1 import ecommerce_pb2 as epb
from pointsbridge.ecommerce.v1 import ecommerce_pb2_grpc as epb_grpc
from tests.auth import Callers
from tests.broker import NatsServer, stream_messages
from tests.events.relay import TIMEOUT, Bank, check_consumer_view, decode, outbox_ids, start_bank


@pytest.fixture
async def shop(
    make_db_url: Callable[[str], str], nats_server: NatsServer, auth: Callers
) -> AsyncIterator[tuple[Any, Any, str]]:
    cardpoints = await start_bank(auth, make_db_url("cardpoints"), nats_server.url)
    ecommerce_url = make_db_url("ecommerce")
    ecommerce = await start_ecommerce(
        EcommerceSettings(
            **auth.ecommerce_security,
            address="127.0.0.1:0",
            database_url=ecommerce_url,
            cardpoints_address=f"127.0.0.1:{cardpoints.port}",
            workers=4,
            nats_url=nats_server.url,
        )
    )
    bank = Bank(cardpoints, auth)
    channel = auth.channel(f"127.0.0.1:{ecommerce.port}")
    try:
        yield bank, channel, ecommerce_url
    finally:
        await channel.close()
        await bank.close()
        await ecommerce.stop(1)
        await cardpoints.stop(1)


async def test_ecommerce_events_name_coupons_by_hash_and_never_the_card_account(
    shop: tuple[Any, Any, str], nats_server: NatsServer
) -> None:
    bank, channel, ecommerce_url = shop
    redemption = epb_grpc.RedemptionServiceStub(channel)
    admin = epb_grpc.EcommerceAdminServiceStub(channel)
    card = "6222020200112233"
    await bank.open(card, 10_000)
    await admin.CreateCouponProduct(
        epb.CreateCouponProductRequest(
            product_id="coupon-10",
            display_name="10 CNY off",
            face_value_minor=1000,
            currency="CNY",
            points_per_coupon=1000,
            validity_days=30,
            max_quantity_per_redemption=5,
        ),
        timeout=TIMEOUT,
    )
    await admin.SetExchangeRatio(
        epb.SetExchangeRatioRequest(product_id="coupon-10", points_per_coupon=500),
        timeout=TIMEOUT,
    )
    await admin.LinkCardAccount(
        epb.LinkCardAccountRequest(customer_id="alice", card_account_id=card), timeout=TIMEOUT
    )
    redeemed = (
        await redemption.RedeemPoints(
            epb.RedeemPointsRequest(
                request_id="r-1", customer_id="alice", product_id="coupon-10", quantity=4
            ),
            timeout=TIMEOUT,
        )
    ).redemption
    codes = [c.code for c in redeemed.coupons]
    await redemption.UseCoupon(
        epb.UseCouponRequest(customer_id="alice", code=codes[0], order_id="order-1"),
        timeout=TIMEOUT,
    )
    await redemption.RefundCoupons(
        epb.RefundCouponsRequest(
            request_id="f-1",
            customer_id="alice",
            redemption_id=redeemed.redemption_id,
            codes=codes[1:3],
        ),
        timeout=TIMEOUT,
    )
    # A refund the bank refuses (the account is closed) is started, then cancelled.
    await bank.admin.SetAccountState(
        cpb.SetAccountStateRequest(account_id=card, state=cpb.ACCOUNT_STATE_CLOSED),
        timeout=TIMEOUT,
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await redemption.RefundCoupons(
            epb.RefundCouponsRequest(
                request_id="f-2",
                customer_id="alice",
                redemption_id=redeemed.redemption_id,
                codes=codes[3:],
            ),
            timeout=TIMEOUT,
        )
    assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    messages = await stream_messages(nats_server.url, "ecommerce", expect=8)
    sequences = check_consumer_view(messages, outbox_ids(ecommerce_url, ECOMMERCE_OUTBOX.events))
    assert sequences == {
        "product/coupon-10": [1, 2],
        f"redemption/{redeemed.redemption_id}": [1, 2, 3, 4, 5, 6],
    }
    assert [m.subject for m in messages] == [
        "pointsbridge.ecommerce.product.changed",
        "pointsbridge.ecommerce.product.exchange_ratio_changed",
        "pointsbridge.ecommerce.redemption.completed",
        "pointsbridge.ecommerce.redemption.coupon_used",
        "pointsbridge.ecommerce.redemption.refund_started",
        "pointsbridge.ecommerce.redemption.coupons_refunded",
        "pointsbridge.ecommerce.redemption.refund_started",
        "pointsbridge.ecommerce.redemption.refund_cancelled",
    ]
    completed = decode(messages[2])
    assert (completed.points, completed.quantity, completed.face_value_total_minor) == (
        2000,
        4,
        4000,
    )
    import hashlib

    assert list(completed.coupon_sha256) == [
        hashlib.sha256(code.encode()).hexdigest() for code in codes
    ]
    refunded = decode(messages[5])
    assert (refunded.points, len(refunded.coupon_sha256)) == (1000, 2)
    cancelled = decode(messages[7])
    assert (cancelled.reason, list(cancelled.coupon_sha256)) == (
        "ACCOUNT_CLOSED",
        [hashlib.sha256(codes[3].encode()).hexdigest()],
    )
    for message in messages:
        text = message.data + repr(message.headers).encode() + message.subject.encode()
        for secret in [card, *codes, *(c.replace("-", "") for c in codes)]:
            assert secret.encode() not in text
