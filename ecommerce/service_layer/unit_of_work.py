"""Service layer room: the unit of work, one database transaction holding every repository."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, Self, TypeVar

from sqlalchemy.orm import Session

from ecommerce.adapters import events
from ecommerce.adapters.orm import OUTBOX
from ecommerce.adapters.repository import (
    CouponRepository,
    LinkRepository,
    ProductRepository,
    RatioRepository,
    RedemptionRepository,
    RefundRepository,
    SqlCouponRepository,
    SqlLinkRepository,
    SqlProductRepository,
    SqlRatioRepository,
    SqlRedemptionRepository,
    SqlRefundRepository,
)
from servicekit import db
from servicekit.outbox import OutboxWriter

T = TypeVar("T")


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


class StepRunner(Protocol):
    """Runs one synchronous database step off the event loop, rerunning it on transient conflicts.

    servicekit.db.Database is the real one.
    """

    async def run(self, fn: Callable[[], T]) -> T: ...

    async def write(self, fn: Callable[[], T]) -> T:
        """`run`, for a step that opens a write unit of work (which may share a commit)."""
        ...


class SqlUnitOfWork(db.SqlUnitOfWork):
    outbox = OutboxWriter(OUTBOX, events.SERVICE, events.encode)
    products: ProductRepository
    ratios: RatioRepository
    links: LinkRepository
    redemptions: RedemptionRepository
    coupons: CouponRepository
    refunds: RefundRepository

    def _start(self, session: Session) -> None:
        self.products = SqlProductRepository(session)
        self.ratios = SqlRatioRepository(session)
        self.links = SqlLinkRepository(session)
        self.redemptions = SqlRedemptionRepository(session)
        self.coupons = SqlCouponRepository(session)
        self.refunds = SqlRefundRepository(session)
