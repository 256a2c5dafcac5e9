"""In-memory fakes of the e-commerce ports: a store, its units of work, and a cardpoints."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Self, TypeVar

from ecommerce.adapters.points_gateway import DEFAULT_MERCHANT_ID
from ecommerce.domain.card_points import (
    AccountState,
    CardAccount,
    Deduction,
    DeductionOrder,
    Reversal,
    ReversalOrder,
)
from ecommerce.domain.errors import (
    AccountClosed,
    AccountFrozen,
    AccountNotFound,
    DeductionNotFound,
    DomainError,
    InsufficientPoints,
    PointsMismatch,
    PointsSystemUnavailable,
    ReversalExceedsDeduction,
)
from ecommerce.domain.model import (
    CardLink,
    Coupon,
    CouponProduct,
    CouponState,
    ExchangeRatio,
    Redemption,
    RedemptionState,
    Refund,
    RefundState,
)
from ecommerce.service_layer.ports import (
    CouponRepository,
    EcommerceSteps,
    LinkRepository,
    ProductRepository,
    RatioRepository,
    RedemptionRepository,
    RefundRepository,
)
from servicekit.paging import Page
from servicekit.steps import Steps

T = TypeVar("T")

START = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


@dataclass
class FakeState:
    """Everything the fake database holds; seq numbers play the keyset role of row ids."""

    seq: int = 0
    products: dict[str, tuple[int, CouponProduct]] = field(default_factory=dict)
    ratios: list[ExchangeRatio] = field(default_factory=list)
    links: dict[str, CardLink] = field(default_factory=dict)
    redemptions: dict[str, tuple[int, Redemption]] = field(default_factory=dict)
    coupons: dict[str, tuple[int, Coupon, str | None]] = field(default_factory=dict)
    refunds: dict[str, Refund] = field(default_factory=dict)
    claims: dict[str, datetime] = field(default_factory=dict)

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq


class FakeProducts:
    def __init__(self, state: FakeState) -> None:
        self.s = state

    def add(self, product: CouponProduct) -> None:
        assert product.product_id not in self.s.products, "uq_coupon_products_product_id"
        self.s.products[product.product_id] = (self.s.next_seq(), product)

    def get(self, product_id: str) -> CouponProduct | None:
        found = self.s.products.get(product_id)
        return None if found is None else found[1]

    def page(self, *, include_inactive: bool, after: int | None, limit: int) -> Page[CouponProduct]:
        rows = sorted(
            (seq, p)
            for seq, p in self.s.products.values()
            if (include_inactive or p.active) and (after is None or seq > after)
        )
        return Page.of([(seq, p) for seq, p in sorted(rows, key=lambda r: r[0])], limit)

    def _change(self, product_id: str, **values: object) -> None:
        seq, product = self.s.products[product_id]
        self.s.products[product_id] = (seq, dataclasses.replace(product, **values))  # type: ignore[arg-type]

    def set_ratio(
        self, product_id: str, points_per_coupon: int, version: int, now: datetime
    ) -> None:
        self._change(product_id, points_per_coupon=points_per_coupon, ratio_version=version)

    def set_active(self, product_id: str, active: bool, now: datetime) -> None:
        self._change(product_id, active=active)


class FakeRatios:
    def __init__(self, state: FakeState) -> None:
        self.s = state

    def add(self, ratio: ExchangeRatio) -> None:
        assert all(
            (r.product_id, r.version) != (ratio.product_id, ratio.version) for r in self.s.ratios
        ), "unique (product_id, version)"
        self.s.ratios.append(ratio)

    def latest_version(self, product_id: str) -> int:
        return max((r.version for r in self.s.ratios if r.product_id == product_id), default=0)

    def newest_at(self, product_id: str, points_per_coupon: int) -> ExchangeRatio | None:
        return max(
            (
                r
                for r in self.s.ratios
                if r.product_id == product_id and r.points_per_coupon == points_per_coupon
            ),
            key=lambda r: r.version,
            default=None,
        )

    def page(self, product_id: str, *, before: int | None, limit: int) -> Page[ExchangeRatio]:
        rows = sorted(
            (
                (r.version, r)
                for r in self.s.ratios
                if r.product_id == product_id and (before is None or r.version < before)
            ),
            key=lambda row: -row[0],
        )
        return Page.of(rows, limit)


class FakeLinks:
    def __init__(self, state: FakeState) -> None:
        self.s = state

    def get(self, customer_id: str) -> CardLink | None:
        return self.s.links.get(customer_id)

    def put(self, link: CardLink) -> None:
        self.s.links[link.customer_id] = link


class FakeRedemptions:
    def __init__(self, state: FakeState) -> None:
        self.s = state

    def add(self, redemption: Redemption) -> None:
        assert all(r.request_id != redemption.request_id for _, r in self.s.redemptions.values())
        self.s.redemptions[redemption.redemption_id] = (self.s.next_seq(), redemption)

    def get(self, redemption_id: str) -> Redemption | None:
        found = self.s.redemptions.get(redemption_id)
        return None if found is None else found[1]

    def get_by_request_id(self, request_id: str) -> Redemption | None:
        return next((r for _, r in self.s.redemptions.values() if r.request_id == request_id), None)

    def save_outcome(self, redemption: Redemption) -> bool:
        seq, stored = self.s.redemptions[redemption.redemption_id]
        if stored.state is not RedemptionState.PENDING:
            return False  # the guard only: the aggregate decided the outcome
        outcome = dataclasses.replace(
            stored,
            state=redemption.state,
            failure_reason=redemption.failure_reason,
            deduction_id=redemption.deduction_id,
            update_time=redemption.update_time,
        )
        self.s.redemptions[redemption.redemption_id] = (seq, outcome)
        return True

    def add_refunded_points(self, redemption_id: str, points: int, now: datetime) -> None:
        seq, r = self.s.redemptions[redemption_id]
        assert r.refunded_points + points <= r.points, "ck_redemptions_refunded"
        self.s.redemptions[redemption_id] = (
            seq,
            dataclasses.replace(r, refunded_points=r.refunded_points + points),
        )

    def page(
        self,
        customer_id: str | None,
        *,
        state: RedemptionState | None,
        before: int | None,
        limit: int,
    ) -> Page[Redemption]:
        rows = sorted(
            (
                (seq, r)
                for seq, r in self.s.redemptions.values()
                if customer_id in (None, r.customer_id)
                and (state is None or r.state is state)
                and (before is None or seq < before)
            ),
            key=lambda row: -row[0],
        )
        return Page.of(rows, limit)

    def claim_pending(
        self, *, now: datetime, untouched_since: datetime, lease_until: datetime, limit: int
    ) -> list[str]:
        rows = sorted(self.s.redemptions.values(), key=lambda row: row[0])
        return _claim(
            self.s,
            [
                (r.redemption_id, r.update_time)
                for _, r in rows
                if r.state is RedemptionState.PENDING
            ],
            now=now,
            untouched_since=untouched_since,
            lease_until=lease_until,
            limit=limit,
        )

    def renew(self, redemption_ids: Sequence[str], lease_until: datetime) -> None:
        _renew(
            self.s,
            [r.redemption_id for r in self.unsettled(len(self.s.redemptions))],
            redemption_ids,
            lease_until,
        )

    def release(self, redemption_ids: Sequence[str]) -> None:
        for redemption_id in redemption_ids:
            self.s.claims.pop(redemption_id, None)

    def unsettled(self, limit: int) -> list[Redemption]:
        rows = sorted(self.s.redemptions.values(), key=lambda row: row[0])
        return [r for _, r in rows if r.state is RedemptionState.PENDING][:limit]

    def window(
        self, start: datetime | None, end: datetime, *, after: int | None, limit: int
    ) -> Page[Redemption]:
        rows = sorted(
            (
                (seq, r)
                for seq, r in self.s.redemptions.values()
                if (start is None or r.create_time >= start)
                and r.create_time < end
                and (after is None or seq > after)
            ),
            key=lambda row: row[0],
        )
        return Page.of(rows, limit)


def _claim(
    state: FakeState,
    pending: list[tuple[str, datetime]],
    *,
    now: datetime,
    untouched_since: datetime,
    lease_until: datetime,
    limit: int,
) -> list[str]:
    claimed = [
        row_id
        for row_id, touched in pending
        if touched <= untouched_since and (row_id not in state.claims or state.claims[row_id] < now)
    ][:limit]
    for row_id in claimed:
        state.claims[row_id] = lease_until
    return claimed


def _renew(state: FakeState, pending: list[str], ids: Sequence[str], lease_until: datetime) -> None:
    for row_id in set(ids) & set(pending):
        state.claims[row_id] = lease_until


class FakeCoupons:
    def __init__(self, state: FakeState) -> None:
        self.s = state

    def add_all(self, coupons: Iterable[Coupon]) -> None:
        for coupon in coupons:
            assert coupon.code not in self.s.coupons, "uq_coupons_code"
            self.s.coupons[coupon.code] = (self.s.next_seq(), coupon, None)

    def get(self, code: str) -> Coupon | None:
        found = self.s.coupons.get(code)
        return None if found is None else found[1]

    def of_redemptions(self, redemption_ids: Sequence[str]) -> dict[str, list[Coupon]]:
        found: dict[str, list[Coupon]] = {r: [] for r in redemption_ids}
        for _, coupon, _ in sorted(self.s.coupons.values(), key=lambda row: row[0]):
            if coupon.redemption_id in found:
                found[coupon.redemption_id].append(coupon)
        return found

    def page(
        self,
        customer_id: str,
        *,
        state: CouponState | None,
        now: datetime,
        before: int | None,
        limit: int,
    ) -> Page[Coupon]:
        rows = sorted(
            (
                (seq, c)
                for seq, c, _ in self.s.coupons.values()
                if c.customer_id == customer_id
                and (state is None or c.state_at(now) is state)
                and (before is None or seq < before)
            ),
            key=lambda row: -row[0],
        )
        return Page.of(rows, limit)

    def _change_issued(self, code: str, refund_id: str | None = None, **values: object) -> bool:
        seq, coupon, old_refund = self.s.coupons[code]
        if coupon.state is not CouponState.ISSUED:
            return False  # the guard only: the aggregate decided the change
        changed = dataclasses.replace(coupon, **values)  # type: ignore[arg-type]
        self.s.coupons[code] = (seq, changed, refund_id or old_refund)
        return True

    def use(self, coupon: Coupon) -> bool:
        return self._change_issued(
            coupon.code,
            state=CouponState.USED,
            used_order_id=coupon.used_order_id,
            use_time=coupon.use_time,
        )

    def void(self, code: str, refund_id: str) -> bool:
        return self._change_issued(code, refund_id, state=CouponState.VOID)

    def restore(self, refund_id: str) -> int:
        restored = 0
        for code, (seq, coupon, refund) in list(self.s.coupons.items()):
            if refund == refund_id and coupon.state is CouponState.VOID:
                self.s.coupons[code] = (
                    seq,
                    dataclasses.replace(coupon, state=CouponState.ISSUED),
                    None,
                )
                restored += 1
        return restored


class FakeRefunds:
    def __init__(self, state: FakeState) -> None:
        self.s = state

    def add(self, refund: Refund) -> None:
        assert all(r.request_id != refund.request_id for r in self.s.refunds.values())
        self.s.refunds[refund.refund_id] = refund

    def get(self, refund_id: str) -> Refund | None:
        return self.s.refunds.get(refund_id)

    def get_by_request_id(self, request_id: str) -> Refund | None:
        return next((r for r in self.s.refunds.values() if r.request_id == request_id), None)

    def save_outcome(self, refund: Refund) -> bool:
        stored = self.s.refunds[refund.refund_id]
        if stored.state is not RefundState.PENDING:
            return False  # the guard only: the aggregate decided the outcome
        self.s.refunds[refund.refund_id] = dataclasses.replace(
            stored,
            state=refund.state,
            reversal_id=refund.reversal_id,
            update_time=refund.update_time,
        )
        return True

    def forget(self, refund: Refund) -> bool:
        stored = self.s.refunds.get(refund.refund_id)
        if stored is None or stored.state is not RefundState.PENDING:
            return False  # the guard only: the aggregate decided to discard it
        del self.s.refunds[refund.refund_id]
        return True

    def claim_pending(
        self, *, now: datetime, untouched_since: datetime, lease_until: datetime, limit: int
    ) -> list[str]:
        return _claim(
            self.s,
            [(f.refund_id, f.update_time) for f in self.unsettled(limit=len(self.s.refunds))],
            now=now,
            untouched_since=untouched_since,
            lease_until=lease_until,
            limit=limit,
        )

    def renew(self, refund_ids: Sequence[str], lease_until: datetime) -> None:
        _renew(
            self.s,
            [f.refund_id for f in self.unsettled(len(self.s.refunds))],
            refund_ids,
            lease_until,
        )

    def release(self, refund_ids: Sequence[str]) -> None:
        for refund_id in refund_ids:
            self.s.claims.pop(refund_id, None)

    def unsettled(self, limit: int) -> list[Refund]:
        return [f for f in self.s.refunds.values() if f.state is RefundState.PENDING][:limit]

    def of_redemptions(self, redemption_ids: Sequence[str]) -> dict[str, list[Refund]]:
        found: dict[str, list[Refund]] = {rid: [] for rid in redemption_ids}
        for refund in self.s.refunds.values():
            if refund.redemption_id in found:
                found[refund.redemption_id].append(refund)
        return found


class FakeDatabase:
    """Holds the committed state; each unit of work works on a copy until it commits."""

    def __init__(self) -> None:
        self.state = FakeState()
        self.commits = 0


class FakeUnitOfWork:
    def __init__(self, database: FakeDatabase) -> None:
        self._database = database
        self.events: list[object] = []
        self.committed_events: list[object] = []

    def __enter__(self) -> Self:
        self.events = []
        self._state = copy.deepcopy(self._database.state)
        self.products: ProductRepository = FakeProducts(self._state)
        self.ratios: RatioRepository = FakeRatios(self._state)
        self.links: LinkRepository = FakeLinks(self._state)
        self.redemptions: RedemptionRepository = FakeRedemptions(self._state)
        self.coupons: CouponRepository = FakeCoupons(self._state)
        self.refunds: RefundRepository = FakeRefunds(self._state)
        return self

    def __exit__(self, *exc: object) -> None:
        pass  # anything not committed is simply dropped with the copy

    def commit(self) -> None:
        self._database.state = copy.deepcopy(self._state)
        self._database.commits += 1
        self.committed_events += self.events
        self.events = []


class InlineRunner:
    async def run(self, fn: Callable[[], T]) -> T:
        return fn()

    async def write(self, fn: Callable[[], T]) -> T:
        return fn()


@dataclass
class FakeAccount:
    state: AccountState
    balance: int


class FakePointsGateway:
    """A cardpoints that keeps its promises: idempotent deductions and reversals, no overdraft.

    `unreachable` makes the next calls fail before reaching it; `lose_replies`
    makes the next calls take effect but lose the answer on the way back.
    """

    merchant_id = DEFAULT_MERCHANT_ID

    def __init__(self) -> None:
        self.accounts: dict[str, FakeAccount] = {}
        self.deductions: dict[str, tuple[DeductionOrder, Deduction | DomainError]] = {}
        self.reversals: dict[str, tuple[ReversalOrder, Reversal]] = {}
        self.reversed: dict[str, int] = {}
        self.unreachable = 0
        self.lose_replies = 0
        self.calls: list[str] = []

    def open(
        self, account_id: str, balance: int, state: AccountState = AccountState.ACTIVE
    ) -> None:
        self.accounts[account_id] = FakeAccount(state, balance)

    def _reach(self, what: str) -> None:
        self.calls.append(what)
        if self.unreachable:
            self.unreachable -= 1
            raise PointsSystemUnavailable(f"{what}: connection refused")

    def _reply(self, what: str, answer: T) -> T:
        if self.lose_replies:
            self.lose_replies -= 1
            raise PointsSystemUnavailable(f"{what}: deadline exceeded")
        return answer

    async def get_account(self, account_id: str) -> CardAccount:
        self._reach("GetAccount")
        account = self.accounts.get(account_id)
        if account is None:
            raise AccountNotFound(f"no account {account_id}")
        return self._reply("GetAccount", CardAccount(account_id, account.state, account.balance))

    def _deduct(self, order: DeductionOrder) -> Deduction:
        account = self.accounts.get(order.account_id)
        if account is None:
            raise AccountNotFound(f"no account {order.account_id}")
        if account.state is AccountState.FROZEN:
            raise AccountFrozen("frozen")
        if account.state is AccountState.CLOSED:
            raise AccountClosed("closed")
        if order.points != order.coupon_quantity * order.points_per_coupon:
            raise PointsMismatch("points mismatch")
        if account.balance < order.points:
            raise InsufficientPoints(f"balance {account.balance} < {order.points}")
        account.balance -= order.points
        return Deduction(
            f"d-{len(self.deductions) + 1}",
            order.request_id,
            order.account_id,
            order.points,
            account.balance,
        )

    async def deduct_points(self, order: DeductionOrder) -> Deduction:
        self._reach("DeductPoints")
        if order.request_id not in self.deductions:
            try:
                outcome: Deduction | DomainError = self._deduct(order)
            except DomainError as refusal:
                outcome = refusal
            self.deductions[order.request_id] = (order, outcome)
        stored, outcome = self.deductions[order.request_id]
        assert stored == order, "REQUEST_ID_REUSED"
        if isinstance(outcome, DomainError):
            raise outcome
        return self._reply("DeductPoints", outcome)

    async def reverse_deduction(self, order: ReversalOrder) -> Reversal:
        self._reach("ReverseDeduction")
        if order.request_id not in self.reversals:
            found = self.deductions.get(order.deduction_request_id)
            if found is None or isinstance(found[1], DomainError):
                raise DeductionNotFound(order.deduction_request_id)
            deduction = found[1]
            account = self.accounts[deduction.account_id]
            if account.state is AccountState.CLOSED:
                raise AccountClosed("closed")
            already = self.reversed.get(order.deduction_request_id, 0)
            if already + order.points > deduction.points:
                raise ReversalExceedsDeduction("too much")
            self.reversed[order.deduction_request_id] = already + order.points
            account.balance += order.points
            reversal = Reversal(f"r-{len(self.reversals) + 1}", order.request_id, order.points)
            self.reversals[order.request_id] = (order, reversal)
        stored, reversal = self.reversals[order.request_id]
        assert stored == order, "REQUEST_ID_REUSED"
        return self._reply("ReverseDeduction", reversal)

    def successful_deductions(self) -> list[Deduction]:
        return [d for _, d in self.deductions.values() if isinstance(d, Deduction)]


class FakeClock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


def fake_steps(database: FakeDatabase, clock: Callable[[], datetime]) -> EcommerceSteps:
    """Steps over the fake store, run inline on the event loop."""
    return Steps(
        runner=InlineRunner(),
        uow=lambda: FakeUnitOfWork(database),
        read_uow=lambda: FakeUnitOfWork(database),
        clock=clock,
    )
