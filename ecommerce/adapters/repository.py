"""Adapters room: repositories that store and load the domain objects with SQLAlchemy."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Protocol, TypeVar, cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    Table,
    bindparam,
    delete,
    func,
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
from servicekit.paging import Page

_Row = TypeVar("_Row")
# An ORM row object or a Core Row: both carry the columns as attributes.
_Record = Any


# Each protocol is what the service layer relies on; the Sql* classes implement
# it over one session. Every state change that races with another request is a
# guarded UPDATE whose row count says whether this request won.


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
    def complete(self, redemption_id: str, deduction_id: str, now: datetime) -> bool: ...
    def fail(self, redemption_id: str, reason: str, now: datetime) -> bool: ...
    def add_refunded_points(self, redemption_id: str, points: int, now: datetime) -> None: ...
    def page(
        self,
        customer_id: str | None,  # None: every customer's
        *,
        state: RedemptionState | None,
        before: int | None,
        limit: int,
    ) -> Page[Redemption]: ...
    def pending_ids(self, limit: int) -> list[str]: ...
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
    def use(self, code: str, order_id: str, now: datetime) -> bool: ...
    def void(self, code: str, refund_id: str, now: datetime) -> bool: ...
    def restore(self, refund_id: str) -> int: ...


class RefundRepository(Protocol):
    def add(self, refund: Refund) -> None: ...
    def get(self, refund_id: str) -> Refund | None: ...
    def get_by_request_id(self, request_id: str) -> Refund | None: ...
    def complete(self, refund_id: str, reversal_id: str, now: datetime) -> bool: ...
    def discard(self, refund_id: str) -> bool: ...
    def claim_pending(
        self, *, now: datetime, untouched_since: datetime, lease_until: datetime, limit: int
    ) -> list[str]: ...
    def renew(self, refund_ids: Sequence[str], lease_until: datetime) -> None: ...
    def release(self, refund_ids: Sequence[str]) -> None: ...
    def unsettled(self, limit: int) -> list[Refund]: ...
    def of_redemptions(self, redemption_ids: Sequence[str]) -> dict[str, list[Refund]]: ...


# The statements of the redemption path are built once, as Core statements on the
# tables, and run on the session's connection: building and caching a statement per
# call costs more CPU than the database takes to run it. Core rows are never cached in
# the session, so each read sees what other requests committed.
_PRODUCTS = cast(Table, CouponProductRow.__table__)
_LINKS = cast(Table, CardLinkRow.__table__)
_REDEMPTIONS = cast(Table, RedemptionRow.__table__)
_COUPONS = cast(Table, CouponRow.__table__)
_GET_PRODUCT = select(_PRODUCTS).where(_PRODUCTS.c.product_id == bindparam("product_id"))
_GET_LINK = select(_LINKS.c.customer_id, _LINKS.c.card_account_id, _LINKS.c.link_time).where(
    _LINKS.c.customer_id == bindparam("customer_id")
)
_GET_REDEMPTION = select(_REDEMPTIONS).where(
    _REDEMPTIONS.c.redemption_id == bindparam("redemption_id")
)
_GET_REDEMPTION_BY_REQUEST = select(_REDEMPTIONS).where(
    _REDEMPTIONS.c.request_id == bindparam("request_id")
)
_ADD_REDEMPTION = insert(_REDEMPTIONS)
# The values to set come with each execution.
_LEAVE_PENDING = update(_REDEMPTIONS).where(
    _REDEMPTIONS.c.redemption_id == bindparam("pending_redemption"),
    _REDEMPTIONS.c.state == RedemptionState.PENDING.value,
)
_ADD_COUPON = insert(_COUPONS)
_COUPONS_OF = (
    select(_COUPONS)
    .where(_COUPONS.c.redemption_id.in_(bindparam("redemption_ids", expanding=True)))
    .order_by(_COUPONS.c.seq)
)


def _connection(session: Session) -> Connection:
    return session.connection()


def _fresh(statement: Select[tuple[_Row]]) -> Select[tuple[_Row]]:
    """Reload rows the session already holds, so a re-read sees what other requests committed."""
    return statement.execution_options(populate_existing=True)


def _rowcount(result: object) -> int:
    assert isinstance(result, CursorResult)
    return result.rowcount


def _claim(
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


def _set_claim(
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


def _product(row: _Record) -> CouponProduct:
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


def _ratio(row: ExchangeRatioRow) -> ExchangeRatio:
    return ExchangeRatio(
        product_id=row.product_id,
        version=row.version,
        points_per_coupon=row.points_per_coupon,
        effective_time=row.effective_time,
    )


def _redemption(row: _Record) -> Redemption:
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


def _coupon(row: _Record) -> Coupon:
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


def _refund(row: RefundRow) -> Refund:
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


class SqlProductRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

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
        found = _connection(self.session).execute(_GET_PRODUCT, {"product_id": product_id})
        row = found.one_or_none()
        return None if row is None else _product(row)

    def page(self, *, include_inactive: bool, after: int | None, limit: int) -> Page[CouponProduct]:
        statement = select(CouponProductRow).order_by(CouponProductRow.seq).limit(limit + 1)
        if not include_inactive:
            statement = statement.where(CouponProductRow.active.is_(True))
        if after is not None:
            statement = statement.where(CouponProductRow.seq > after)
        rows = self.session.scalars(statement).all()
        return Page.of([(r.seq, _product(r)) for r in rows], limit)

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
        return None if row is None else _ratio(row)

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
        return Page.of([(r.version, _ratio(r)) for r in rows], limit)


class SqlLinkRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, customer_id: str) -> CardLink | None:
        found = _connection(self.session).execute(_GET_LINK, {"customer_id": customer_id})
        row = found.one_or_none()
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


class SqlRedemptionRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def _one(self, statement: Select[Any], params: dict[str, str]) -> Redemption | None:
        row = _connection(self.session).execute(statement, params).one_or_none()
        return None if row is None else _redemption(row)

    def add(self, redemption: Redemption) -> None:
        _connection(self.session).execute(
            _ADD_REDEMPTION,
            {
                "redemption_id": redemption.redemption_id,
                "request_id": redemption.request_id,
                "customer_id": redemption.customer_id,
                "product_id": redemption.product_id,
                "quantity": redemption.quantity,
                "points": redemption.points,
                "points_per_coupon": redemption.points_per_coupon,
                "ratio_version": redemption.ratio_version,
                "card_account_id": redemption.card_account_id,
                "state": redemption.state.value,
                "failure_reason": redemption.failure_reason,
                "deduction_id": redemption.deduction_id,
                "refunded_points": redemption.refunded_points,
                "create_time": redemption.create_time,
                "update_time": redemption.update_time,
            },
        )

    def get(self, redemption_id: str) -> Redemption | None:
        return self._one(_GET_REDEMPTION, {"redemption_id": redemption_id})

    def get_by_request_id(self, request_id: str) -> Redemption | None:
        return self._one(_GET_REDEMPTION_BY_REQUEST, {"request_id": request_id})

    def _leave_pending(self, redemption_id: str, **values: object) -> bool:
        result = _connection(self.session).execute(
            _LEAVE_PENDING, {"pending_redemption": redemption_id, **values}
        )
        return _rowcount(result) == 1

    def complete(self, redemption_id: str, deduction_id: str, now: datetime) -> bool:
        return self._leave_pending(
            redemption_id,
            state=RedemptionState.COMPLETED.value,
            deduction_id=deduction_id,
            update_time=now,
        )

    def fail(self, redemption_id: str, reason: str, now: datetime) -> bool:
        return self._leave_pending(
            redemption_id,
            state=RedemptionState.FAILED.value,
            failure_reason=reason,
            update_time=now,
        )

    def add_refunded_points(self, redemption_id: str, points: int, now: datetime) -> None:
        # Relative update: two refunds of one redemption completing together both count.
        self.session.execute(
            update(RedemptionRow)
            .where(RedemptionRow.redemption_id == redemption_id)
            .values(refunded_points=RedemptionRow.refunded_points + points, update_time=now)
            .execution_options(synchronize_session=False)
        )

    def page(
        self,
        customer_id: str | None,
        *,
        state: RedemptionState | None,
        before: int | None,
        limit: int,
    ) -> Page[Redemption]:
        statement = select(RedemptionRow).order_by(RedemptionRow.seq.desc()).limit(limit + 1)
        if customer_id is not None:
            statement = statement.where(RedemptionRow.customer_id == customer_id)
        if state is not None:
            statement = statement.where(RedemptionRow.state == state.value)
        if before is not None:
            statement = statement.where(RedemptionRow.seq < before)
        rows = self.session.scalars(statement).all()
        return Page.of([(r.seq, _redemption(r)) for r in rows], limit)

    def pending_ids(self, limit: int) -> list[str]:
        statement = (
            select(RedemptionRow.redemption_id)
            .where(RedemptionRow.state == RedemptionState.PENDING.value)
            .order_by(RedemptionRow.seq)
            .limit(limit)
        )
        return list(self.session.scalars(statement))

    def claim_pending(
        self, *, now: datetime, untouched_since: datetime, lease_until: datetime, limit: int
    ) -> list[str]:
        return _claim(
            self.session,
            RedemptionRow,
            RedemptionRow.redemption_id,
            now=now,
            untouched_since=untouched_since,
            lease_until=lease_until,
            limit=limit,
        )

    def renew(self, redemption_ids: Sequence[str], lease_until: datetime) -> None:
        _set_claim(
            self.session, RedemptionRow, RedemptionRow.redemption_id, redemption_ids, lease_until
        )

    def release(self, redemption_ids: Sequence[str]) -> None:
        _set_claim(self.session, RedemptionRow, RedemptionRow.redemption_id, redemption_ids, None)

    def unsettled(self, limit: int) -> list[Redemption]:
        rows = self.session.scalars(
            select(RedemptionRow)
            .where(RedemptionRow.state == RedemptionState.PENDING.value)
            .order_by(RedemptionRow.seq)
            .limit(limit)
        )
        return [_redemption(r) for r in rows]

    def window(
        self, start: datetime | None, end: datetime, *, after: int | None, limit: int
    ) -> Page[Redemption]:
        statement = (
            select(RedemptionRow)
            .where(RedemptionRow.create_time < end)
            .order_by(RedemptionRow.seq)
            .limit(limit + 1)
        )
        if start is not None:
            statement = statement.where(RedemptionRow.create_time >= start)
        if after is not None:
            statement = statement.where(RedemptionRow.seq > after)
        rows = self.session.scalars(statement).all()
        return Page.of([(r.seq, _redemption(r)) for r in rows], limit)


class SqlCouponRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add_all(self, coupons: Iterable[Coupon]) -> None:
        rows = [
            {
                "code": c.code,
                "customer_id": c.customer_id,
                "product_id": c.product_id,
                "redemption_id": c.redemption_id,
                "face_value_minor": c.face_value_minor,
                "currency": c.currency,
                "state": c.state.value,
                "issue_time": c.issue_time,
                "expire_time": c.expire_time,
                "used_order_id": c.used_order_id,
                "use_time": c.use_time,
            }
            for c in coupons
        ]
        if rows:
            _connection(self.session).execute(_ADD_COUPON, rows)

    def get(self, code: str) -> Coupon | None:
        statement = _fresh(select(CouponRow).where(CouponRow.code == code))
        row = self.session.scalars(statement).one_or_none()
        return None if row is None else _coupon(row)

    def of_redemptions(self, redemption_ids: Sequence[str]) -> dict[str, list[Coupon]]:
        found: dict[str, list[Coupon]] = {r: [] for r in redemption_ids}
        if not redemption_ids:
            return found
        rows = _connection(self.session).execute(
            _COUPONS_OF, {"redemption_ids": list(redemption_ids)}
        )
        for row in rows:
            found[row.redemption_id].append(_coupon(row))
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
        statement = (
            select(CouponRow)
            .where(CouponRow.customer_id == customer_id)
            .order_by(CouponRow.seq.desc())
            .limit(limit + 1)
        )
        # EXPIRED is never stored: it is an ISSUED coupon whose expire_time has passed.
        if state is CouponState.EXPIRED:
            statement = statement.where(
                CouponRow.state == CouponState.ISSUED.value, CouponRow.expire_time <= now
            )
        elif state is CouponState.ISSUED:
            statement = statement.where(
                CouponRow.state == CouponState.ISSUED.value, CouponRow.expire_time > now
            )
        elif state is not None:
            statement = statement.where(CouponRow.state == state.value)
        if before is not None:
            statement = statement.where(CouponRow.seq < before)
        rows = self.session.scalars(statement).all()
        return Page.of([(r.seq, _coupon(r)) for r in rows], limit)

    def _change_issued(self, code: str, now: datetime, **values: object) -> bool:
        result = self.session.execute(
            update(CouponRow)
            .where(
                CouponRow.code == code,
                CouponRow.state == CouponState.ISSUED.value,
                CouponRow.expire_time > now,
            )
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        return _rowcount(result) == 1

    def use(self, code: str, order_id: str, now: datetime) -> bool:
        return self._change_issued(
            code, now, state=CouponState.USED.value, used_order_id=order_id, use_time=now
        )

    def void(self, code: str, refund_id: str, now: datetime) -> bool:
        return self._change_issued(code, now, state=CouponState.VOID.value, refund_id=refund_id)

    def restore(self, refund_id: str) -> int:
        result = self.session.execute(
            update(CouponRow)
            .where(CouponRow.refund_id == refund_id, CouponRow.state == CouponState.VOID.value)
            .values(state=CouponState.ISSUED.value, refund_id=None)
            .execution_options(synchronize_session=False)
        )
        return _rowcount(result)


class SqlRefundRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def _one(self, condition: ColumnElement[bool]) -> Refund | None:
        row = self.session.scalars(_fresh(select(RefundRow).where(condition))).one_or_none()
        return None if row is None else _refund(row)

    def add(self, refund: Refund) -> None:
        self.session.add(
            RefundRow(
                refund_id=refund.refund_id,
                request_id=refund.request_id,
                customer_id=refund.customer_id,
                redemption_id=refund.redemption_id,
                codes=" ".join(refund.codes),
                points=refund.points,
                state=refund.state.value,
                reversal_id=refund.reversal_id,
                create_time=refund.create_time,
                update_time=refund.update_time,
            )
        )
        # At once, not at commit: the unique request_id is what makes a concurrent
        # copy of the same refund wait for this one and then rerun against it.
        self.session.flush()

    def get(self, refund_id: str) -> Refund | None:
        return self._one(RefundRow.refund_id == refund_id)

    def get_by_request_id(self, request_id: str) -> Refund | None:
        return self._one(RefundRow.request_id == request_id)

    def complete(self, refund_id: str, reversal_id: str, now: datetime) -> bool:
        result = self.session.execute(
            update(RefundRow)
            .where(RefundRow.refund_id == refund_id, RefundRow.state == RefundState.PENDING.value)
            .values(state=RefundState.COMPLETED.value, reversal_id=reversal_id, update_time=now)
            .execution_options(synchronize_session=False)
        )
        return _rowcount(result) == 1

    def discard(self, refund_id: str) -> bool:
        result = self.session.execute(
            delete(RefundRow)
            .where(RefundRow.refund_id == refund_id, RefundRow.state == RefundState.PENDING.value)
            .execution_options(synchronize_session=False)
        )
        return _rowcount(result) == 1

    def claim_pending(
        self, *, now: datetime, untouched_since: datetime, lease_until: datetime, limit: int
    ) -> list[str]:
        return _claim(
            self.session,
            RefundRow,
            RefundRow.refund_id,
            now=now,
            untouched_since=untouched_since,
            lease_until=lease_until,
            limit=limit,
        )

    def renew(self, refund_ids: Sequence[str], lease_until: datetime) -> None:
        _set_claim(self.session, RefundRow, RefundRow.refund_id, refund_ids, lease_until)

    def release(self, refund_ids: Sequence[str]) -> None:
        _set_claim(self.session, RefundRow, RefundRow.refund_id, refund_ids, None)

    def unsettled(self, limit: int) -> list[Refund]:
        rows = self.session.scalars(
            select(RefundRow)
            .where(RefundRow.state == RefundState.PENDING.value)
            .order_by(RefundRow.seq)
            .limit(limit)
        )
        return [_refund(r) for r in rows]

    def of_redemptions(self, redemption_ids: Sequence[str]) -> dict[str, list[Refund]]:
        found: dict[str, list[Refund]] = {rid: [] for rid in redemption_ids}
        if redemption_ids:
            rows = self.session.scalars(
                select(RefundRow)
                .where(RefundRow.redemption_id.in_(redemption_ids))
                .order_by(RefundRow.seq)
            )
            for row in rows:
                found[row.redemption_id].append(_refund(row))
        return found
