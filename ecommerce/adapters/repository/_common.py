"""Adapters room: what the SQL repositories share: statements built once, row mappers, claims."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar, cast

from sqlalchemy import (
    ColumnElement,
    Select,
    Table,
    bindparam,
    insert,
    select,
    update,
)
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import InstrumentedAttribute, Session

from ecommerce.adapters.orm import (
    CardLinkRow,
    CouponProductRow,
    CouponRow,
    ExchangeRatioRow,
    RedemptionRow,
    RefundRow,
)
from ecommerce.domain.model import (
    Coupon,
    CouponProduct,
    CouponState,
    ExchangeRatio,
    Redemption,
    RedemptionState,
    Refund,
    RefundState,
)
from servicekit.compiled import CompiledInsert, CompiledStatement

_Row = TypeVar("_Row")
# An ORM row object or a Core Row: both carry the columns as attributes.
_Record = Any


# The statements of the redemption path are built once, as Core statements on the
# tables; those a redemption or a quote runs are compiled once and run on the DBAPI
# cursor of the session's connection (servicekit.compiled): building, caching and
# executing a statement through SQLAlchemy per call costs more CPU than the database
# takes to run it. Core rows are never cached in the session, so each read sees what
# other requests committed.
PRODUCTS = cast(Table, CouponProductRow.__table__)
LINKS = cast(Table, CardLinkRow.__table__)
REDEMPTIONS = cast(Table, RedemptionRow.__table__)
COUPONS = cast(Table, CouponRow.__table__)
GET_PRODUCT = CompiledStatement(
    select(PRODUCTS).where(PRODUCTS.c.product_id == bindparam("product_id"))
)
GET_LINK = CompiledStatement(
    select(LINKS.c.customer_id, LINKS.c.card_account_id, LINKS.c.link_time).where(
        LINKS.c.customer_id == bindparam("customer_id")
    )
)
GET_REDEMPTION = CompiledStatement(
    select(REDEMPTIONS).where(REDEMPTIONS.c.redemption_id == bindparam("redemption_id"))
)
GET_REDEMPTION_BY_REQUEST = CompiledStatement(
    select(REDEMPTIONS).where(REDEMPTIONS.c.request_id == bindparam("request_id"))
)
ADD_REDEMPTION = CompiledStatement(insert(REDEMPTIONS))
# The values to set come with each execution.
LEAVE_PENDING = CompiledStatement(
    update(REDEMPTIONS).where(
        REDEMPTIONS.c.redemption_id == bindparam("pending_redemption"),
        REDEMPTIONS.c.state == RedemptionState.PENDING.value,
    )
)
# A redemption's coupons: one multi-row INSERT.
ADD_COUPONS = CompiledInsert(COUPONS)
COUPONS_OF_ONE = CompiledStatement(
    select(COUPONS)
    .where(COUPONS.c.redemption_id == bindparam("redemption_id"))
    .order_by(COUPONS.c.seq)
)
COUPONS_OF = (
    select(COUPONS)
    .where(COUPONS.c.redemption_id.in_(bindparam("redemption_ids", expanding=True)))
    .order_by(COUPONS.c.seq)
)


def fresh(statement: Select[tuple[_Row]]) -> Select[tuple[_Row]]:
    """Reload rows the session already holds, so a re-read sees what other requests committed."""
    return statement.execution_options(populate_existing=True)


def rowcount(result: object) -> int:
    assert isinstance(result, CursorResult)
    return result.rowcount


def claim(
    session: Session,
    table: type[RedemptionRow] | type[RefundRow],
    id_column: InstrumentedAttribute[str],
    *,
    now: datetime,
    untouched_since: datetime,
    lease_until: datetime,
    limit: int,
) -> list[str]:
    """Lease up to `limit` PENDING rows nobody holds, oldest first.

    On PostgreSQL, FOR UPDATE SKIP LOCKED lets replicas sweep at once without
    taking the same rows; on SQLite, BEGIN IMMEDIATE already serializes sweeps.
    """
    candidates = (
        select(id_column)
        .where(
            table.state == "PENDING",
            table.update_time <= untouched_since,
            (table.claim_until.is_(None)) | (table.claim_until < now),
        )
        .order_by(table.seq)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    ids = list(session.scalars(candidates))
    if ids:
        session.execute(
            update(table)
            .where(id_column.in_(ids))
            .values(claim_until=lease_until)
            .execution_options(synchronize_session=False)
        )
    return ids


def set_claim(
    session: Session,
    table: type[RedemptionRow] | type[RefundRow],
    id_column: InstrumentedAttribute[str],
    ids: Sequence[str],
    until: datetime | None,
) -> None:
    """Renew the claims on `ids` that are still PENDING until `until`, or release all (None)."""
    if ids:
        rows: ColumnElement[bool] = id_column.in_(ids)
        if until is not None:
            rows = rows & (table.state == "PENDING")
        session.execute(
            update(table)
            .where(rows)
            .values(claim_until=until)
            .execution_options(synchronize_session=False)
        )


def product_of(row: _Record) -> CouponProduct:
    return CouponProduct(
        product_id=row.product_id,
        display_name=row.display_name,
        face_value_minor=row.face_value_minor,
        currency=row.currency,
        points_per_coupon=row.points_per_coupon,
        ratio_version=row.ratio_version,
        validity_days=row.validity_days,
        max_quantity_per_redemption=row.max_quantity_per_redemption,
        active=row.active,
        create_time=row.create_time,
    )


def ratio_of(row: ExchangeRatioRow) -> ExchangeRatio:
    return ExchangeRatio(
        product_id=row.product_id,
        version=row.version,
        points_per_coupon=row.points_per_coupon,
        effective_time=row.effective_time,
    )


def redemption_of(row: _Record) -> Redemption:
    return Redemption(
        redemption_id=row.redemption_id,
        request_id=row.request_id,
        customer_id=row.customer_id,
        product_id=row.product_id,
        quantity=row.quantity,
        points=row.points,
        points_per_coupon=row.points_per_coupon,
        ratio_version=row.ratio_version,
        card_account_id=row.card_account_id,
        state=RedemptionState(row.state),
        failure_reason=row.failure_reason,
        deduction_id=row.deduction_id,
        refunded_points=row.refunded_points,
        create_time=row.create_time,
        update_time=row.update_time,
    )


def coupon_of(row: _Record) -> Coupon:
    return Coupon(
        code=row.code,
        customer_id=row.customer_id,
        product_id=row.product_id,
        redemption_id=row.redemption_id,
        face_value_minor=row.face_value_minor,
        currency=row.currency,
        state=CouponState(row.state),
        issue_time=row.issue_time,
        expire_time=row.expire_time,
        used_order_id=row.used_order_id,
        use_time=row.use_time,
    )


def refund_of(row: RefundRow) -> Refund:
    return Refund(
        refund_id=row.refund_id,
        request_id=row.request_id,
        customer_id=row.customer_id,
        redemption_id=row.redemption_id,
        codes=tuple(row.codes.split()),
        points=row.points,
        state=RefundState(row.state),
        reversal_id=row.reversal_id,
        create_time=row.create_time,
        update_time=row.update_time,
    )
