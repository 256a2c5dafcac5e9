"""Adapters room: coupon products, their exchange-ratio history, and card links in SQL."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from ecommerce.adapters.orm import CardLinkRow, CouponProductRow, ExchangeRatioRow
from ecommerce.adapters.repository._common import (
    GET_LINK,
    GET_PRODUCT,
    product_of,
    ratio_of,
)
from ecommerce.domain.model import CardLink, CouponProduct, ExchangeRatio
from servicekit.compiled import Connector
from servicekit.paging import Page


class SqlProductRepository:
    def __init__(self, session: Session, connector: Connector | None = None) -> None:
        self.session = session
        self.connection = connector or Connector(session)

    def add(self, product: CouponProduct) -> None:
        self.session.add(
            CouponProductRow(
                product_id=product.product_id,
                display_name=product.display_name,
                face_value_minor=product.face_value_minor,
                currency=product.currency,
                points_per_coupon=product.points_per_coupon,
                ratio_version=product.ratio_version,
                validity_days=product.validity_days,
                max_quantity_per_redemption=product.max_quantity_per_redemption,
                active=product.active,
                create_time=product.create_time,
                update_time=product.create_time,
            )
        )
        self.session.flush()

    def get(self, product_id: str) -> CouponProduct | None:
        row = GET_PRODUCT.first(self.connection(), {"product_id": product_id})
        return None if row is None else product_of(row)

    def page(self, *, include_inactive: bool, after: int | None, limit: int) -> Page[CouponProduct]:
        statement = select(CouponProductRow).order_by(CouponProductRow.seq).limit(limit + 1)
        if not include_inactive:
            statement = statement.where(CouponProductRow.active.is_(True))
        if after is not None:
            statement = statement.where(CouponProductRow.seq > after)
        rows = self.session.scalars(statement).all()
        return Page.of([(r.seq, product_of(r)) for r in rows], limit)

    def set_ratio(
        self, product_id: str, points_per_coupon: int, version: int, now: datetime
    ) -> None:
        self.session.execute(
            update(CouponProductRow)
            .where(CouponProductRow.product_id == product_id)
            .values(points_per_coupon=points_per_coupon, ratio_version=version, update_time=now)
        )

    def set_active(self, product_id: str, active: bool, now: datetime) -> None:
        self.session.execute(
            update(CouponProductRow)
            .where(CouponProductRow.product_id == product_id)
            .values(active=active, update_time=now)
        )


class SqlRatioRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, ratio: ExchangeRatio) -> None:
        self.session.add(
            ExchangeRatioRow(
                product_id=ratio.product_id,
                version=ratio.version,
                points_per_coupon=ratio.points_per_coupon,
                effective_time=ratio.effective_time,
            )
        )
        self.session.flush()

    def latest_version(self, product_id: str) -> int:
        statement = select(func.max(ExchangeRatioRow.version)).where(
            ExchangeRatioRow.product_id == product_id
        )
        return self.session.scalar(statement) or 0

    def newest_at(self, product_id: str, points_per_coupon: int) -> ExchangeRatio | None:
        statement = (
            select(ExchangeRatioRow)
            .where(
                ExchangeRatioRow.product_id == product_id,
                ExchangeRatioRow.points_per_coupon == points_per_coupon,
            )
            .order_by(ExchangeRatioRow.version.desc())
            .limit(1)
        )
        row = self.session.scalars(statement).first()
        return None if row is None else ratio_of(row)

    def page(self, product_id: str, *, before: int | None, limit: int) -> Page[ExchangeRatio]:
        statement = (
            select(ExchangeRatioRow)
            .where(ExchangeRatioRow.product_id == product_id)
            .order_by(ExchangeRatioRow.version.desc())
            .limit(limit + 1)
        )
        if before is not None:
            statement = statement.where(ExchangeRatioRow.version < before)
        rows = self.session.scalars(statement).all()
        return Page.of([(r.version, ratio_of(r)) for r in rows], limit)


class SqlLinkRepository:
    def __init__(self, session: Session, connector: Connector | None = None) -> None:
        self.session = session
        self.connection = connector or Connector(session)

    def get(self, customer_id: str) -> CardLink | None:
        row = GET_LINK.first(self.connection(), {"customer_id": customer_id})
        if row is None:
            return None
        return CardLink(row.customer_id, row.card_account_id, row.link_time)

    def put(self, link: CardLink) -> None:
        row = self.session.get(CardLinkRow, link.customer_id, with_for_update=True)
        if row is None:
            self.session.add(
                CardLinkRow(
                    customer_id=link.customer_id,
                    card_account_id=link.card_account_id,
                    link_time=link.link_time,
                )
            )
        else:
            row.card_account_id = link.card_account_id
            row.link_time = link.link_time
        self.session.flush()
