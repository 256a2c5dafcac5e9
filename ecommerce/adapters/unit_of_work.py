"""Adapters room: the unit of work over SQLAlchemy, one transaction holding every repository."""

from __future__ import annotations

from sqlalchemy.orm import Session

from ecommerce.adapters import events
from ecommerce.adapters.orm import OUTBOX
from ecommerce.adapters.repository import (
    SqlCouponRepository,
    SqlLinkRepository,
    SqlProductRepository,
    SqlRatioRepository,
    SqlRedemptionRepository,
    SqlRefundRepository,
)
from ecommerce.service_layer.ports import (
    CouponRepository,
    LinkRepository,
    ProductRepository,
    RatioRepository,
    RedemptionRepository,
    RefundRepository,
)
from servicekit import db
from servicekit.outbox import OutboxWriter


class SqlUnitOfWork(db.SqlUnitOfWork):
    outbox = OutboxWriter(OUTBOX, events.SERVICE, events.encode)
    products: ProductRepository
    ratios: RatioRepository
    links: LinkRepository
    redemptions: RedemptionRepository
    coupons: CouponRepository
    refunds: RefundRepository

    def _start(self, session: Session) -> None:
        self.products = SqlProductRepository(session, self.connection)
        self.ratios = SqlRatioRepository(session)
        self.links = SqlLinkRepository(session, self.connection)
        self.redemptions = SqlRedemptionRepository(session, self.connection)
        self.coupons = SqlCouponRepository(session, self.connection)
        self.refunds = SqlRefundRepository(session)
