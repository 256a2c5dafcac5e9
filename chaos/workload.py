"""The harness's customers: concurrent clients and the journal of what each one was told.

Every choice a client makes (action, customer, product, quantity, which coupons, when to
try a call that must be refused) comes from its own `random.Random`, seeded from the
run's seed. What the services answered depends on timing (kills, concurrency), and so
do the later choices that depend on it (which coupons exist to use); the sequence of
random draws is the same for a seed, the interleaving is not.

What they were told goes into the journal (chaos.journal).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import grpc

from chaos.journal import Customer, Journal, Outcome, Product, RedeemCall, RefundCall, UseCall
from pointsbridge.ecommerce.v1 import ecommerce_pb2 as ec
from pointsbridge.ecommerce.v1 import ecommerce_pb2_grpc as ec_grpc
from servicekit.devtools.credentials import bearer
from servicekit.status import RemoteError, remote_error

R = TypeVar("R")

CALL_TIMEOUT = 8.0
# A client resends the same request (same request_id, same order id) on these.
RETRYABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,  # rate limited: nothing happened, try later
    }
)
MAX_ATTEMPTS = 8
OP_BUDGET_SECONDS = 25.0

# Refusals each call may legitimately get, by reason. Anything else is reported.
REDEEM_REFUSALS = frozenset(
    {"INSUFFICIENT_POINTS", "RATE_CHANGED", "POINTS_MISMATCH", "QUANTITY_LIMIT_EXCEEDED"}
)
USE_REFUSALS = frozenset({"COUPON_ALREADY_USED", "COUPON_VOID"})
REFUND_REFUSALS = frozenset({"COUPON_ALREADY_USED", "COUPON_VOID"})


@dataclass
class _HeldCoupon:
    code: str
    customer_id: str
    redemption_id: str
    state: str = "issued"  # issued | used | void | limbo (an outcome we do not know)
    order_id: str = ""


@dataclass
class _HeldRedemption:
    redemption_id: str
    customer_id: str
    codes: list[str]


@dataclass(frozen=True)
class CallResult(Generic[R]):
    value: R | None
    error: RemoteError | None

    @property
    def unknown(self) -> bool:
        return self.value is None and (self.error is None or self.error.code in RETRYABLE)


async def call_with_retries(
    call: Callable[[], Awaitable[R]], journal: Journal, *, attempts: int = MAX_ATTEMPTS
) -> CallResult[R]:
    """Send the same request until it gets a definite answer, bounded in count and time."""
    deadline = time.monotonic() + OP_BUDGET_SECONDS
    error: RemoteError | None = None
    for attempt in range(attempts):
        journal.attempts += 1
        try:
            return CallResult(await call(), None)
        except grpc.aio.AioRpcError as failure:
            error = remote_error(failure)
        if error.code not in RETRYABLE:
            return CallResult(None, error)
        pause = min(0.2 * (attempt + 1), 1.0)
        if time.monotonic() + pause > deadline:
            break
        await asyncio.sleep(pause)
    return CallResult(None, error)


class Client:
    """One customer-facing client: quotes, redeems, uses and refunds, with retries."""

    def __init__(
        self,
        index: int,
        rng: random.Random,
        channel: grpc.aio.Channel,
        customers: Sequence[Customer],
        products: Sequence[Product],
        journal: Journal,
        run_id: str,
        token_for: Callable[[str], str],
    ) -> None:
        self.index = index
        self._token_for = token_for
        self._rng = rng
        self._stub = ec_grpc.RedemptionServiceStub(channel)
        self._customers = customers
        self._products = {p.product_id: p for p in products}
        self._journal = journal
        self._prefix = f"{run_id}-c{index}"
        self._n = 0
        self._coupons: dict[str, _HeldCoupon] = {}
        self._redemptions: dict[str, _HeldRedemption] = {}
        # Codes by local state, in the order they got there (dicts as ordered sets), so
        # that picking one is cheap and depends on the seeded history only.
        self._issued: dict[str, None] = {}
        self._used: dict[str, None] = {}

    def _move(self, coupon: _HeldCoupon, state: str) -> None:
        self._issued.pop(coupon.code, None)
        self._used.pop(coupon.code, None)
        coupon.state = state
        if state == "issued":
            self._issued[coupon.code] = None
        elif state == "used":
            self._used[coupon.code] = None

    def _as(self, customer_id: str) -> tuple[tuple[str, str], ...]:
        """Call metadata: the customer's own bearer token (customers act for themselves)."""
        return bearer(self._token_for(customer_id))

    def _next_id(self, kind: str) -> str:
        self._n += 1
        return f"{self._prefix}-{kind}{self._n}"

    async def run(self, stop: asyncio.Event, max_ops: int) -> None:
        for _ in range(max_ops):
            if stop.is_set():
                return
            self._journal.ops += 1
            await self._one_action()
            # A short seeded think time keeps the clients' interleaving varied.
            await asyncio.sleep(self._rng.uniform(0.0, 0.05))

    async def _one_action(self) -> None:
        roll = self._rng.random()
        if roll < 0.10:
            await self.quote()
        elif roll < 0.50 or not self._issued:
            await self.redeem()
        elif roll < 0.75:
            await self.use(self._coupons[self._rng.choice(list(self._issued))])
        elif roll < 0.95:
            await self.refund()
        elif self._used and roll < 0.975:
            # Must be refused: the coupon was spent on another order.
            coupon = self._coupons[self._rng.choice(list(self._used))]
            await self.use(coupon, order_id=self._next_id("again"))
        elif self._used:
            # Must be refused as a whole: one of the coupons was spent.
            await self.refund(include_used=self._coupons[self._rng.choice(list(self._used))])
        else:
            await self.quote()

    def _patience(self) -> int:
        """Now and then a client gives up after one try and leaves it to the recovery loop."""
        return 1 if self._rng.random() < 0.15 else MAX_ATTEMPTS

    def _pick(self) -> tuple[Customer, Product]:
        customer = self._rng.choice(self._customers)
        product = self._products[self._rng.choice(sorted(self._products))]
        return customer, product

    async def quote(self) -> None:
        customer, product = self._pick()
        quantity = self._rng.randint(1, product.max_quantity)
        self._journal.quotes += 1
        result = await call_with_retries(
            lambda: self._stub.QuoteRedemption(
                ec.QuoteRedemptionRequest(
                    customer_id=customer.customer_id,
                    product_id=product.product_id,
                    quantity=quantity,
                ),
                timeout=CALL_TIMEOUT,
                metadata=self._as(customer.customer_id),
            ),
            self._journal,
            attempts=2,
        )
        if result.value is not None:
            quote = result.value.quote
            if quote.points_required != quantity * product.points_per_coupon:
                self._journal.unexpected.append(
                    f"QuoteRedemption {product.product_id} x{quantity} said "
                    f"{quote.points_required} points, not {quantity * product.points_per_coupon}"
                )
        elif not result.unknown:
            self._unexpected("QuoteRedemption", result.error)

    async def redeem(self) -> None:
        customer, product = self._pick()
        quantity = self._rng.randint(1, product.max_quantity)
        if self._rng.random() < 0.04:
            quantity = product.max_quantity + 1  # must be refused: over the limit
        expected: int | None = quantity * product.points_per_coupon
        draw = self._rng.random()
        if draw < 0.04:
            # Must be refused: POINTS_MISMATCH, or RATE_CHANGED should a ratio once cost that.
            expected = quantity * product.points_per_coupon + 1
        elif draw < 0.35:
            expected = None
        call = RedeemCall(
            request_id=self._next_id("rd"),
            customer_id=customer.customer_id,
            product_id=product.product_id,
            quantity=quantity,
            expected_points=expected,
        )
        self._journal.redeems.append(call)
        request = ec.RedeemPointsRequest(
            request_id=call.request_id,
            customer_id=call.customer_id,
            product_id=call.product_id,
            quantity=call.quantity,
        )
        if expected is not None:
            request.expected_points = expected
        result = await call_with_retries(
            lambda: self._stub.RedeemPoints(
                request, timeout=CALL_TIMEOUT, metadata=self._as(call.customer_id)
            ),
            self._journal,
            attempts=self._patience(),
        )
        if result.value is not None:
            redemption = result.value.redemption
            call.outcome = Outcome.OK
            call.redemption_id = redemption.redemption_id
            call.state = redemption.state
            call.codes = tuple(c.code for c in redemption.coupons)
            call.points = redemption.points
            if redemption.state == ec.REDEMPTION_STATE_COMPLETED:
                held = _HeldRedemption(redemption.redemption_id, customer.customer_id, [])
                for code in call.codes:
                    held.codes.append(code)
                    coupon = _HeldCoupon(code, customer.customer_id, redemption.redemption_id)
                    self._coupons[code] = coupon
                    self._move(coupon, "issued")
                self._redemptions[held.redemption_id] = held
            else:
                self._journal.unexpected.append(
                    f"RedeemPoints {call.request_id} succeeded with state "
                    f"{ec.RedemptionState.Name(redemption.state)}"
                )
            return
        if result.unknown:
            return
        assert result.error is not None
        if result.error.reason in REDEEM_REFUSALS:
            call.outcome = Outcome.REFUSED
            call.reason = result.error.reason
            call.redemption_id = result.error.metadata.get("redemption_id", "")
            return
        self._unexpected(f"RedeemPoints {call.request_id}", result.error)

    async def use(self, coupon: _HeldCoupon, order_id: str = "") -> None:
        again = bool(order_id)
        call = UseCall(coupon.customer_id, coupon.code, order_id or self._next_id("ord"))
        self._journal.uses.append(call)
        if not again:
            self._move(coupon, "limbo")  # until we know
        result = await call_with_retries(
            lambda: self._stub.UseCoupon(
                ec.UseCouponRequest(
                    customer_id=call.customer_id, code=call.code, order_id=call.order_id
                ),
                timeout=CALL_TIMEOUT,
                metadata=self._as(call.customer_id),
            ),
            self._journal,
        )
        if result.value is not None:
            call.outcome = Outcome.OK
            if again:
                self._journal.unexpected.append(
                    f"UseCoupon {call.code} on a second order {call.order_id} succeeded"
                )
            self._move(coupon, "used")
            coupon.order_id = call.order_id
            return
        if result.unknown:
            return
        assert result.error is not None
        if result.error.reason in USE_REFUSALS:
            call.outcome = Outcome.REFUSED
            call.reason = result.error.reason
            if not again:
                self._journal.unexpected.append(
                    f"UseCoupon {call.code}: an issued coupon was refused ({call.reason})"
                )
            return
        self._unexpected(f"UseCoupon {call.code}", result.error)

    async def refund(self, include_used: _HeldCoupon | None = None) -> None:
        if include_used is not None:
            candidates = [self._redemptions[include_used.redemption_id]]
        else:
            with_issued = {self._coupons[code].redemption_id: None for code in self._issued}
            candidates = [self._redemptions[rid] for rid in with_issued]
        if not candidates:
            await self.redeem()
            return
        held = self._rng.choice(candidates)
        issued = [c for c in held.codes if self._coupons[c].state == "issued"]
        codes = self._rng.sample(issued, self._rng.randint(1, len(issued))) if issued else []
        if include_used is not None:
            codes.append(include_used.code)
        if not codes:
            return
        call = RefundCall(
            request_id=self._next_id("rf"),
            customer_id=held.customer_id,
            redemption_id=held.redemption_id,
            codes=tuple(codes),
        )
        self._journal.refunds.append(call)
        for code in codes:
            if self._coupons[code].state == "issued":
                self._move(self._coupons[code], "limbo")
        result = await call_with_retries(
            lambda: self._stub.RefundCoupons(
                ec.RefundCouponsRequest(
                    request_id=call.request_id,
                    customer_id=call.customer_id,
                    redemption_id=call.redemption_id,
                    codes=list(call.codes),
                ),
                timeout=CALL_TIMEOUT,
                metadata=self._as(call.customer_id),
            ),
            self._journal,
            attempts=self._patience(),
        )
        if result.value is not None:
            call.outcome = Outcome.OK
            call.refund_id = result.value.refund.refund_id
            call.points = result.value.refund.points
            for code in codes:
                self._move(self._coupons[code], "void")
            if include_used is not None:
                self._journal.unexpected.append(
                    f"RefundCoupons {call.request_id} refunded used coupon {include_used.code}"
                )
            return
        if result.unknown:
            return
        assert result.error is not None
        if result.error.reason in REFUND_REFUSALS:
            call.outcome = Outcome.REFUSED
            call.reason = result.error.reason
            # Refused as a whole: the coupons it named are as they were.
            for code in codes:
                if self._coupons[code].state == "limbo":
                    self._move(self._coupons[code], "issued")
            if include_used is None:
                self._journal.unexpected.append(
                    f"RefundCoupons {call.request_id} of issued coupons was refused ({call.reason})"
                )
            return
        self._unexpected(f"RefundCoupons {call.request_id}", result.error)

    def _unexpected(self, what: str, error: RemoteError | None) -> None:
        assert error is not None
        self._journal.unexpected.append(
            f"{what}: unexpected {error.code.name} {error.reason or '-'}: {error.message}"
        )
