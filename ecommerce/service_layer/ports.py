"""Service layer room: the ports the use cases run against (storage and card points)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Protocol, Self, TypeAlias

from ecommerce.domain.card_points import (
    CardAccount,
    Deduction,
    DeductionOrder,
    Reversal,
    ReversalOrder,
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
)
from servicekit.paging import Page
from servicekit.steps import Steps

# The adapters implement each repository over one transaction. A state change that
# races with another request is stored through a guard whose answer says whether
# this request won; the rule that decided the change lives in the domain.


class ProductRepository(Protocol):
    def add(self, product: CouponProduct) -> None: ...
    def get(self, product_id: str) -> CouponProduct | None: ...
    def page(
        self, *, include_inactive: bool, after: int | None, limit: int
    ) -> Page[CouponProduct]: ...
    def set_ratio(
        self, product_id: str, points_per_coupon: int, version: int, now: datetime
    ) -> None: ...
    def set_active(self, product_id: str, active: bool, now: datetime) -> None: ...


class RatioRepository(Protocol):
    def add(self, ratio: ExchangeRatio) -> None: ...
    def latest_version(self, product_id: str) -> int: ...
    def newest_at(self, product_id: str, points_per_coupon: int) -> ExchangeRatio | None:
        """The newest version of the product's ratio that was `points_per_coupon`."""
        ...

    def page(self, product_id: str, *, before: int | None, limit: int) -> Page[ExchangeRatio]: ...


class LinkRepository(Protocol):
    def get(self, customer_id: str) -> CardLink | None: ...
    def put(self, link: CardLink) -> None: ...


class RedemptionRepository(Protocol):
    def add(self, redemption: Redemption) -> None: ...
    def get(self, redemption_id: str) -> Redemption | None: ...
    def get_by_request_id(self, request_id: str) -> Redemption | None: ...
    def save_outcome(self, redemption: Redemption) -> bool:
        """Store a redemption its aggregate moved out of PENDING, if it still is PENDING
        (the concurrency guard: whether this request won)."""
        ...

    def add_refunded_points(self, redemption_id: str, points: int, now: datetime) -> None: ...
    def page(
        self,
        customer_id: str | None,  # None: every customer's
        *,
        state: RedemptionState | None,
        before: int | None,
        limit: int,
    ) -> Page[Redemption]: ...
    def claim_pending(
        self, *, now: datetime, untouched_since: datetime, lease_until: datetime, limit: int
    ) -> list[str]: ...
    def renew(self, redemption_ids: Sequence[str], lease_until: datetime) -> None: ...
    def release(self, redemption_ids: Sequence[str]) -> None: ...
    def unsettled(self, limit: int) -> list[Redemption]: ...
    def window(
        self, start: datetime | None, end: datetime, *, after: int | None, limit: int
    ) -> Page[Redemption]: ...


class CouponRepository(Protocol):
    def add_all(self, coupons: Iterable[Coupon]) -> None: ...
    def get(self, code: str) -> Coupon | None: ...
    def of_redemptions(self, redemption_ids: Sequence[str]) -> dict[str, list[Coupon]]: ...
    def page(
        self,
        customer_id: str,
        *,
        state: CouponState | None,
        now: datetime,
        before: int | None,
        limit: int,
    ) -> Page[Coupon]: ...
    def use(self, coupon: Coupon) -> bool:
        """Store a coupon its aggregate spent, if it still is ISSUED (the concurrency guard)."""
        ...

    def void(self, code: str, refund_id: str) -> bool:
        """VOID a coupon for `refund_id`, if it still is ISSUED (the concurrency guard)."""
        ...

    def restore(self, refund_id: str) -> int: ...


class RefundRepository(Protocol):
    def add(self, refund: Refund) -> None: ...
    def get(self, refund_id: str) -> Refund | None: ...
    def get_by_request_id(self, request_id: str) -> Refund | None: ...
    def save_outcome(self, refund: Refund) -> bool:
        """Store a refund its aggregate completed, if it still is PENDING
        (the concurrency guard: whether this request won)."""
        ...

    def forget(self, refund: Refund) -> bool:
        """Delete a refund its aggregate discarded, if it still is PENDING
        (the concurrency guard: whether this request won)."""
        ...

    def claim_pending(
        self, *, now: datetime, untouched_since: datetime, lease_until: datetime, limit: int
    ) -> list[str]: ...
    def renew(self, refund_ids: Sequence[str], lease_until: datetime) -> None: ...
    def release(self, refund_ids: Sequence[str]) -> None: ...
    def unsettled(self, limit: int) -> list[Refund]: ...
    def of_redemptions(self, redemption_ids: Sequence[str]) -> dict[str, list[Refund]]: ...


class UnitOfWork(Protocol):
    """One transaction: `with uow:` rolls back on leaving unless `commit()` was called."""

    products: ProductRepository
    ratios: RatioRepository
    links: LinkRepository
    redemptions: RedemptionRepository
    coupons: CouponRepository
    refunds: RefundRepository
    # Domain events of this transaction; those of committed ones, for publishing.
    events: list[object]
    committed_events: list[object]

    def __enter__(self) -> Self: ...
    def __exit__(self, *exc: object) -> None: ...
    def commit(self) -> None: ...


EcommerceSteps: TypeAlias = Steps[UnitOfWork]


class PointsGateway(Protocol):
    """The card-points system as the use cases see it.

    A definite no raises the domain refusal with cardpoints' reason (for example
    InsufficientPoints). An unknown outcome raises PointsSystemUnavailable: the
    request may or may not have been applied, and must be resent unchanged to
    find out. `merchant_id` is who this service is to the card-points system.
    """

    @property
    def merchant_id(self) -> str: ...

    async def get_account(self, account_id: str) -> CardAccount: ...

    async def deduct_points(self, order: DeductionOrder) -> Deduction: ...

    async def reverse_deduction(self, order: ReversalOrder) -> Reversal: ...
