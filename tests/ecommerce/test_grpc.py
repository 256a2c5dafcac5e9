"""Both real servers on 127.0.0.1 port 0, on SQLite and PostgreSQL: redemptions end to end."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import func, select

from cardpoints.entrypoints.server import App as CardpointsApp
from cardpoints.entrypoints.server import Settings as CardpointsSettings
from cardpoints.entrypoints.server import start as start_cardpoints
from ecommerce.adapters import orm
from ecommerce.adapters.points_gateway import GrpcPointsGateway
from ecommerce.domain.card_points import DeductionOrder, ReversalOrder
from ecommerce.domain.errors import DeductionNotFound, PointsSystemUnavailable
from ecommerce.entrypoints.server import App, Settings, start
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


@pytest.fixture
async def system(make_db_url: Callable[[str], str], auth: Callers) -> AsyncIterator[System]:
    cardpoints_url, ecommerce_url = make_db_url("cardpoints"), make_db_url("ecommerce")
    clock = MovableClock()
    cardpoints = await start_cardpoints(
        CardpointsSettings(
            **auth.server_security, address="127.0.0.1:0", database_url=cardpoints_url, workers=4
        )
    )
    ecommerce = await start(
        Settings(
            **auth.ecommerce_security,
            address="127.0.0.1:0",
            database_url=ecommerce_url,
            cardpoints_address=f"127.0.0.1:{cardpoints.port}",
            workers=4,
        ),
        clock=clock,
    )
    to_ecommerce = auth.channel(f"127.0.0.1:{ecommerce.port}")
    to_cardpoints = auth.channel(f"127.0.0.1:{cardpoints.port}")
    system = System(
        cardpoints_url=cardpoints_url,
        ecommerce_url=ecommerce_url,
        clock=clock,
        cardpoints=cardpoints,
        ecommerce=ecommerce,
        redemption=pb_grpc.RedemptionServiceStub(to_ecommerce),
        admin=pb_grpc.EcommerceAdminServiceStub(to_ecommerce),
        points=cpb_grpc.CardPointsServiceStub(to_cardpoints),
        points_admin=cpb_grpc.CardPointsAdminServiceStub(to_cardpoints),
        auth=auth,
        channels=[to_ecommerce, to_cardpoints],
    )
    try:
        yield system
    finally:
        for channel in system.channels:
            await channel.close()
        await system.ecommerce.stop(1)
        if system.cardpoints_up:
            await system.cardpoints.stop(1)


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


async def test_32_concurrent_redemptions_never_overdraw_and_coupons_match_deductions(
    system: System,
) -> None:
    account = await system.customer("alice", 20_000)
    await system.product()
    quantities = [1 + i % 3 for i in range(32)]  # 63 coupons wanted, 20 affordable

    outcomes = await asyncio.gather(
        *(system.redeem(f"burst-{i}", quantity=q) for i, q in enumerate(quantities)),
        return_exceptions=True,
    )

    completed = [o for o in outcomes if isinstance(o, pb.Redemption)]
    refusals = [remote_error(o) for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
    assert len(completed) + len(refusals) == 32, outcomes
    assert {r.reason for r in refusals} <= {"INSUFFICIENT_POINTS"}
    assert completed and refusals
    assert all(r.state == pb.REDEMPTION_STATE_COMPLETED for r in completed)

    spent = sum(r.points for r in completed)
    balance = await system.balance(account)
    assert balance == 20_000 - spent >= 0
    deductions = [e for e in await system.ledger(account) if e.type == cpb.ENTRY_TYPE_DEDUCTION]
    assert sorted(e.request_id for e in deductions) == sorted(
        f"redemption:{r.redemption_id}" for r in completed
    )
    assert sum(-e.amount for e in deductions) == spent
    coupons = await system.coupons("alice")
    assert len({c.code for c in coupons}) == len(coupons) == sum(r.quantity for r in completed)
    assert {c.redemption_id for c in coupons} == {r.redemption_id for r in completed}
    failed = await system.redemption.ListRedemptions(
        pb.ListRedemptionsRequest(customer_id="alice", state=pb.REDEMPTION_STATE_FAILED),
        timeout=TIMEOUT,
    )
    assert len(failed.redemptions) == len(refusals)


async def test_coupons_are_used_once_refunds_give_points_back_and_expiry_is_enforced(
    system: System,
) -> None:
    account = await system.customer("alice", 10_000)
    await system.product()
    redemption = await system.redeem("r-1", quantity=3)
    first, second, third = (c.code for c in redemption.coupons)
    assert await system.balance(account) == 7000

    async def use(code: str, order_id: str, customer_id: str = "alice") -> pb.Coupon:
        request = pb.UseCouponRequest(customer_id=customer_id, code=code, order_id=order_id)
        return (await system.redemption.UseCoupon(request, timeout=TIMEOUT)).coupon

    used = await use(first, "order-1")
    assert (used.state, used.used_order_id) == (pb.COUPON_STATE_USED, "order-1")
    assert await use(first.lower().replace("-", ""), "order-1") == used
    other_order = await refused(use(first, "order-2"))
    assert (other_order.code, other_order.reason) == (FAILED_PRECONDITION, "COUPON_ALREADY_USED")
    foreign = await refused(use(second, "order-3", customer_id="mallory"))
    assert (foreign.code, foreign.reason) == (grpc.StatusCode.PERMISSION_DENIED, "NOT_OWNER")

    async def refund(request_id: str, codes: list[str]) -> pb.Refund:
        request = pb.RefundCouponsRequest(
            request_id=request_id,
            customer_id="alice",
            redemption_id=redemption.redemption_id,
            codes=codes,
        )
        return (await system.redemption.RefundCoupons(request, timeout=TIMEOUT)).refund

    refunded = await refund("refund-1", [second])
    assert (refunded.state, refunded.points, list(refunded.codes)) == (
        pb.REFUND_STATE_COMPLETED,
        1000,
        [second],
    )
    assert await system.balance(account) == 8000
    assert await refund("refund-1", [second]) == refunded
    assert await system.balance(account) == 8000
    reversals = [e for e in await system.ledger(account) if e.type == cpb.ENTRY_TYPE_REVERSAL]
    assert [(e.amount, e.request_id) for e in reversals] == [(1000, f"refund:{refunded.refund_id}")]
    void = await refused(use(second, "order-4"))
    assert (void.code, void.reason) == (FAILED_PRECONDITION, "COUPON_VOID")
    refund_used = await refused(refund("refund-2", [first]))
    assert refund_used.reason == "COUPON_ALREADY_USED"
    reused = await refused(refund("refund-1", [third]))
    assert (reused.code, reused.reason) == (grpc.StatusCode.ALREADY_EXISTS, "REQUEST_ID_REUSED")
    after = (
        await system.redemption.GetRedemption(
            pb.GetRedemptionRequest(customer_id="alice", redemption_id=redemption.redemption_id),
            timeout=TIMEOUT,
        )
    ).redemption
    assert after.refunded_points == 1000
    assert [c.state for c in after.coupons] == [
        pb.COUPON_STATE_USED,
        pb.COUPON_STATE_VOID,
        pb.COUPON_STATE_ISSUED,
    ]

    system.clock.advance(timedelta(days=30, seconds=1))
    expired = await refused(use(third, "order-5"))
    assert (expired.code, expired.reason) == (FAILED_PRECONDITION, "COUPON_EXPIRED")
    assert [c.code for c in await system.coupons("alice", pb.COUPON_STATE_EXPIRED)] == [third]
    assert await system.coupons("alice", pb.COUPON_STATE_ISSUED) == []
    assert await system.balance(account) == 8000


async def test_link_and_redeem_follow_the_card_account_state(system: System) -> None:
    await system.product()
    missing = await refused(
        system.admin.LinkCardAccount(
            pb.LinkCardAccountRequest(customer_id="alice", card_account_id="no-such-card"),
            timeout=TIMEOUT,
        )
    )
    assert (missing.code, missing.reason) == (grpc.StatusCode.NOT_FOUND, "ACCOUNT_NOT_FOUND")
    not_linked = await refused(system.redeem("r-0"))
    assert (not_linked.code, not_linked.reason) == (FAILED_PRECONDITION, "CARD_NOT_LINKED")

    account = await system.customer("alice", 10_000)
    await system.points_admin.SetAccountState(
        cpb.SetAccountStateRequest(account_id=account, state=cpb.ACCOUNT_STATE_FROZEN, reason="t"),
        timeout=TIMEOUT,
    )
    frozen = await refused(system.redeem("r-1"))
    assert (frozen.code, frozen.reason) == (FAILED_PRECONDITION, "ACCOUNT_FROZEN")
    relink = await refused(
        system.admin.LinkCardAccount(
            pb.LinkCardAccountRequest(customer_id="bob", card_account_id=account),
            timeout=TIMEOUT,
        )
    )
    assert relink.reason == "ACCOUNT_FROZEN"
    assert await system.balance(account) == 10_000


async def test_products_limits_and_activation(system: System) -> None:
    await system.customer("alice", 10_000)
    await system.product(max_quantity=2)
    duplicate = await refused(system.product())
    assert (duplicate.code, duplicate.reason) == (
        grpc.StatusCode.ALREADY_EXISTS,
        "PRODUCT_ALREADY_EXISTS",
    )
    too_many = await refused(system.redeem("r-1", quantity=3))
    assert (too_many.code, too_many.reason) == (FAILED_PRECONDITION, "QUANTITY_LIMIT_EXCEEDED")
    await system.admin.SetCouponProductActive(
        pb.SetCouponProductActiveRequest(product_id="coupon-10", active=False), timeout=TIMEOUT
    )
    inactive = await refused(system.redeem("r-2", quantity=1))
    assert (inactive.code, inactive.reason) == (FAILED_PRECONDITION, "PRODUCT_INACTIVE")
    unknown = await refused(system.redeem("r-3", quantity=1, product_id="nope"))
    assert (unknown.code, unknown.reason) == (grpc.StatusCode.NOT_FOUND, "PRODUCT_NOT_FOUND")
    listed = await system.redemption.ListCouponProducts(
        pb.ListCouponProductsRequest(), timeout=TIMEOUT
    )
    assert list(listed.products) == []
    everything = await system.redemption.ListCouponProducts(
        pb.ListCouponProductsRequest(include_inactive=True), timeout=TIMEOUT
    )
    assert [(p.product_id, p.active) for p in everything.products] == [("coupon-10", False)]
    assert system.row_counts()["redemptions"] == 0


async def test_bad_input_on_every_rpc_is_invalid_argument_naming_the_fields(
    system: System,
) -> None:
    account = await system.customer("alice", 10_000)
    await system.product()
    redemption = await system.redeem("r-1", quantity=1)
    code = redemption.coupons[0].code
    before, ledger_before = system.row_counts(), await system.ledger(account)
    r, a = system.redemption, system.admin
    cases: list[tuple[Any, str, Any, set[str]]] = [
        (
            r,
            "ListCouponProducts",
            pb.ListCouponProductsRequest(page_size=-1, page_token="not-a-token"),
            {"page_size", "page_token"},
        ),
        (
            r,
            "QuoteRedemption",
            pb.QuoteRedemptionRequest(customer_id="", product_id="bad id", quantity=0),
            {"customer_id", "product_id", "quantity"},
        ),
        (
            r,
            "RedeemPoints",
            pb.RedeemPointsRequest(
                request_id="no spaces allowed",
                customer_id="a/b",
                product_id="",
                quantity=-2,
                expected_points=0,
            ),
            {"request_id", "customer_id", "product_id", "quantity", "expected_points"},
        ),
        (
            r,
            "GetRedemption",
            pb.GetRedemptionRequest(customer_id="", redemption_id="rd/1"),
            {"customer_id", "redemption_id"},
        ),
        (
            r,
            "ListRedemptions",
            pb.ListRedemptionsRequest(
                # Empty would list every customer's (operators only); this is no id at all.
                customer_id="not an id",
                page_size=1001,
                page_token="x",
                state=cast(pb.RedemptionState, 9),
            ),
            {"customer_id", "page_size", "page_token", "state"},
        ),
        (
            r,
            "ListCoupons",
            pb.ListCouponsRequest(
                customer_id="a b", state=cast(pb.CouponState, 7), page_size=-1, page_token="?"
            ),
            {"customer_id", "state", "page_size", "page_token"},
        ),
        (
            r,
            "UseCoupon",
            # A different check symbol: always a typo, whatever the real one is.
            pb.UseCouponRequest(
                customer_id="", code=code[:-1] + ("X" if code[-1] != "X" else "Y"), order_id="o/1"
            ),
            {"customer_id", "code", "order_id"},
        ),
        (
            r,
            "RefundCoupons",
            pb.RefundCouponsRequest(request_id="", customer_id="", redemption_id="", codes=[]),
            {"request_id", "customer_id", "redemption_id", "codes"},
        ),
        (
            r,
            "RefundCoupons",
            pb.RefundCouponsRequest(
                request_id="rf-1",
                customer_id="alice",
                redemption_id=redemption.redemption_id,
                codes=[code, "nonsense", code.lower()],
            ),
            {"codes[1]", "codes[2]"},
        ),
        (
            a,
            "CreateCouponProduct",
            pb.CreateCouponProductRequest(product_id="p 1", currency="cny", validity_days=4000),
            {
                "product_id",
                "display_name",
                "face_value_minor",
                "currency",
                "points_per_coupon",
                "validity_days",
                "max_quantity_per_redemption",
            },
        ),
        (
            a,
            "SetExchangeRatio",
            pb.SetExchangeRatioRequest(product_id="", points_per_coupon=-1),
            {"product_id", "points_per_coupon"},
        ),
        (
            a,
            "ListExchangeRatios",
            pb.ListExchangeRatiosRequest(product_id="", page_size=5000, page_token="zz"),
            {"product_id", "page_size", "page_token"},
        ),
        (
            a,
            "SetCouponProductActive",
            pb.SetCouponProductActiveRequest(product_id="bad id", active=True),
            {"product_id"},
        ),
        (
            a,
            "LinkCardAccount",
            pb.LinkCardAccountRequest(customer_id="", card_account_id="bad id"),
            {"customer_id", "card_account_id"},
        ),
        (
            a,
            "ExportRedemptions",
            pb.ExportRedemptionsRequest(
                start_time=Timestamp(seconds=2_000_000_000),
                end_time=Timestamp(seconds=1_000_000_000),
                page_size=-1,
                page_token="zz",
            ),
            {"end_time", "page_size", "page_token"},
        ),
        (a, "ListUnsettled", pb.ListUnsettledRequest(page_size=1001), {"page_size"}),
    ]
    covered = {name for _, name, _, _ in cases}
    assert covered == {m.name for s in pb.DESCRIPTOR.services_by_name.values() for m in s.methods}

    for stub, name, request, expected in cases:
        error = await refused(getattr(stub, name)(request, timeout=TIMEOUT))
        assert (error.code, error.reason) == (INVALID, "INVALID_FIELD"), name
        assert fields_of(error) == expected, (name, error.violations)
        assert all(v.description for v in error.violations)

    assert system.row_counts() == before
    assert await system.ledger(account) == ledger_before


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


async def test_racing_replays_of_one_request_id_deduct_once(system: System) -> None:
    account = await system.customer("alice", 10_000)
    await system.product()

    outcomes = await asyncio.gather(*(system.redeem("same", quantity=2) for _ in range(8)))

    assert len({r.redemption_id for r in outcomes}) == 1
    assert {r.state for r in outcomes} == {pb.REDEMPTION_STATE_COMPLETED}
    assert await system.balance(account) == 8000
    assert len(await system.coupons("alice")) == 2
    deductions = [e for e in await system.ledger(account) if e.type == cpb.ENTRY_TYPE_DEDUCTION]
    assert len(deductions) == 1


async def test_racing_resumes_of_a_pending_redemption_issue_coupons_once(system: System) -> None:
    account = await system.customer("alice", 10_000)
    await system.product()
    port = await system.stop_cardpoints()
    down = await refused(system.redeem("r-1", quantity=3))
    assert down.reason == "POINTS_SYSTEM_UNAVAILABLE"
    await system.restart_cardpoints(port)

    deadline = time.monotonic() + 15
    while True:
        outcomes = await asyncio.gather(
            *(system.redeem("r-1", quantity=3) for _ in range(8)), return_exceptions=True
        )
        if all(isinstance(o, pb.Redemption) for o in outcomes):
            break
        assert time.monotonic() < deadline, "cardpoints never came back"
        await asyncio.sleep(0.2)

    assert len({o.redemption_id for o in outcomes if isinstance(o, pb.Redemption)}) == 1
    assert len(await system.coupons("alice")) == 3
    assert await system.balance(account) == 7000
    deductions = [e for e in await system.ledger(account) if e.type == cpb.ENTRY_TYPE_DEDUCTION]
    assert len(deductions) == 1


async def test_racing_uses_of_one_coupon_let_exactly_one_order_win(system: System) -> None:
    await system.customer("alice", 10_000)
    await system.product()
    [coupon] = (await system.redeem("r-1", quantity=1)).coupons

    outcomes = await asyncio.gather(
        *(
            system.redemption.UseCoupon(
                pb.UseCouponRequest(customer_id="alice", code=coupon.code, order_id=f"o-{i}"),
                timeout=TIMEOUT,
            )
            for i in range(8)
        ),
        return_exceptions=True,
    )

    winners = [o.coupon for o in outcomes if isinstance(o, pb.UseCouponResponse)]
    losers = [remote_error(o) for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
    assert len(winners) == 1 and len(losers) == 7
    assert {e.reason for e in losers} == {"COUPON_ALREADY_USED"}
    [stored] = await system.coupons("alice")
    assert (stored.state, stored.used_order_id) == (pb.COUPON_STATE_USED, winners[0].used_order_id)
