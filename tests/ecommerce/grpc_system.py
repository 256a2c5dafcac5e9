"""Both real servers wired together for the gRPC tests: the System, and what its tests share."""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from sqlalchemy import func, select

from cardpoints.entrypoints.server import App as CardpointsApp
from cardpoints.entrypoints.server import Settings as CardpointsSettings
from cardpoints.entrypoints.server import start as start_cardpoints
from ecommerce.adapters import orm
from ecommerce.entrypoints.server import App
from pointsbridge.cardpoints.v1 import cardpoints_pb2 as cpb
from pointsbridge.cardpoints.v1 import cardpoints_pb2_grpc as cpb_grpc
from pointsbridge.ecommerce.v1 import ecommerce_pb2 as pb
from pointsbridge.ecommerce.v1 import ecommerce_pb2_grpc as pb_grpc
from servicekit.db import create_db_engine
from servicekit.status import RemoteError, remote_error
from tests.auth import Callers
from tests.support import error_info_count

TIMEOUT = 10.0
OK, INVALID = grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT
FAILED_PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION


class MovableClock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@dataclass
class System:
    """Cardpoints and ecommerce, wired together, with a client stub for every service."""

    cardpoints_url: str
    ecommerce_url: str
    clock: MovableClock
    cardpoints: CardpointsApp
    ecommerce: App
    redemption: pb_grpc.RedemptionServiceAsyncStub
    admin: pb_grpc.EcommerceAdminServiceAsyncStub
    points: cpb_grpc.CardPointsServiceAsyncStub
    points_admin: cpb_grpc.CardPointsAdminServiceAsyncStub
    auth: Callers
    channels: list[grpc.aio.Channel] = field(default_factory=list)
    cardpoints_up: bool = True

    async def stop_cardpoints(self) -> int:
        port = self.cardpoints.port
        await self.cardpoints.stop(0)
        self.cardpoints_up = False
        return port

    async def restart_cardpoints(self, port: int) -> None:
        """Cardpoints back on its old port and database, as after a crash and restart."""
        self.cardpoints = await start_cardpoints(
            CardpointsSettings(
                **self.auth.server_security,
                address=f"127.0.0.1:{port}",
                database_url=self.cardpoints_url,
                workers=4,
            )
        )
        self.cardpoints_up = True

    async def open_card(self, account_id: str, points: int) -> None:
        await self.points_admin.OpenAccount(
            cpb.OpenAccountRequest(account_id=account_id, holder_name="Test Holder"),
            timeout=TIMEOUT,
        )
        await self.points_admin.CreditPoints(
            cpb.CreditPointsRequest(
                request_id=f"seed-{account_id}", account_id=account_id, points=points, reason="t"
            ),
            timeout=TIMEOUT,
        )

    async def customer(self, customer_id: str, points: int) -> str:
        """A customer linked to a fresh card holding `points`; returns the card account id."""
        account_id = f"card-{customer_id}"
        await self.open_card(account_id, points)
        await self.admin.LinkCardAccount(
            pb.LinkCardAccountRequest(customer_id=customer_id, card_account_id=account_id),
            timeout=TIMEOUT,
        )
        return account_id

    async def product(
        self, product_id: str = "coupon-10", points_per_coupon: int = 1000, max_quantity: int = 20
    ) -> pb.CouponProduct:
        response = await self.admin.CreateCouponProduct(
            pb.CreateCouponProductRequest(
                product_id=product_id,
                display_name="10 CNY off",
                face_value_minor=1000,
                currency="CNY",
                points_per_coupon=points_per_coupon,
                validity_days=30,
                max_quantity_per_redemption=max_quantity,
            ),
            timeout=TIMEOUT,
        )
        return response.product

    async def redeem(
        self,
        request_id: str,
        customer_id: str = "alice",
        quantity: int = 3,
        expected_points: int | None = None,
        product_id: str = "coupon-10",
    ) -> pb.Redemption:
        request = pb.RedeemPointsRequest(
            request_id=request_id,
            customer_id=customer_id,
            product_id=product_id,
            quantity=quantity,
            expected_points=expected_points,
        )
        return (await self.redemption.RedeemPoints(request, timeout=TIMEOUT)).redemption

    async def balance(self, account_id: str) -> int:
        response = await self.points.GetAccount(
            cpb.GetAccountRequest(account_id=account_id), timeout=TIMEOUT
        )
        return response.account.balance

    async def ledger(self, account_id: str) -> list[cpb.LedgerEntry]:
        entries: list[cpb.LedgerEntry] = []
        token = ""
        while True:
            page = await self.points.ListTransactions(
                cpb.ListTransactionsRequest(account_id=account_id, page_token=token),
                timeout=TIMEOUT,
            )
            entries += page.transactions
            token = page.next_page_token
            if not token:
                return entries

    async def coupons(
        self, customer_id: str, state: pb.CouponState = pb.COUPON_STATE_UNSPECIFIED
    ) -> list[pb.Coupon]:
        found: list[pb.Coupon] = []
        token = ""
        while True:
            page = await self.redemption.ListCoupons(
                pb.ListCouponsRequest(customer_id=customer_id, state=state, page_token=token),
                timeout=TIMEOUT,
            )
            found += page.coupons
            token = page.next_page_token
            if not token:
                return found

    def row_counts(self) -> dict[str, int]:
        """Rows per ecommerce table, read straight from the database."""
        engine = create_db_engine(self.ecommerce_url)
        try:
            with engine.connect() as connection:
                return {
                    table.name: connection.execute(
                        select(func.count()).select_from(table)
                    ).scalar_one()
                    for table in orm.Base.metadata.sorted_tables
                }
        finally:
            engine.dispose()


async def refused(call: Awaitable[Any]) -> RemoteError:
    """The error a call ended with, after checking it carries exactly one ErrorInfo."""
    with pytest.raises(grpc.aio.AioRpcError) as excinfo:
        await call
    assert error_info_count(excinfo.value) == 1
    error = remote_error(excinfo.value)
    assert error.domain == "pointsbridge"
    return error


def fields_of(error: RemoteError) -> set[str]:
    return {v.field for v in error.violations}
