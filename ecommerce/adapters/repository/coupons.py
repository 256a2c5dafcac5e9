"""Adapters room: coupons in SQL."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ecommerce.adapters.orm import CouponRow
from ecommerce.adapters.repository._common import (
    ADD_COUPONS,
    COUPONS_OF,
    COUPONS_OF_ONE,
    coupon_of,
    fresh,
    rowcount,
)
from ecommerce.domain.model import Coupon, CouponFilter, CouponState
from servicekit.compiled import Connector
from servicekit.paging import Page


class SqlCouponRepository:
    def __init__(self, session: Session, connector: Connector | None = None) -> None:
        self.session = session
        self.connection = connector or Connector(session)

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
            ADD_COUPONS.execute(self.connection(), rows)

    def get(self, code: str) -> Coupon | None:
        statement = fresh(select(CouponRow).where(CouponRow.code == code))
        row = self.session.scalars(statement).one_or_none()
        return None if row is None else coupon_of(row)

    def of_redemptions(self, redemption_ids: Sequence[str]) -> dict[str, list[Coupon]]:
        found: dict[str, list[Coupon]] = {r: [] for r in redemption_ids}
        if not redemption_ids:
            return found
        if len(redemption_ids) == 1:
            # One redemption's coupons, as a replay or a settle reads them.
            rows: Iterable[Any] = COUPONS_OF_ONE.execute(
                self.connection(), {"redemption_id": redemption_ids[0]}
            )
        else:
            rows = self.connection().execute(COUPONS_OF, {"redemption_ids": list(redemption_ids)})
        for row in rows:
            found[row.redemption_id].append(coupon_of(row))
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
        only = CouponFilter.of(state, now)
        if only.stored_state is not None:
            statement = statement.where(CouponRow.state == only.stored_state.value)
        if only.live_after is not None:
            statement = statement.where(CouponRow.expire_time > only.live_after)
        if only.expired_by is not None:
            statement = statement.where(CouponRow.expire_time <= only.expired_by)
        if before is not None:
            statement = statement.where(CouponRow.seq < before)
        rows = self.session.scalars(statement).all()
        return Page.of([(r.seq, coupon_of(r)) for r in rows], limit)

    def _change_issued(self, code: str, **values: object) -> bool:
        # The guard only: the domain refused an expired coupon in this same transaction,
        # and expire_time never changes.
        result = self.session.execute(
            update(CouponRow)
            .where(CouponRow.code == code, CouponRow.state == CouponState.ISSUED.value)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        return rowcount(result) == 1

    def use(self, coupon: Coupon) -> bool:
        return self._change_issued(
            coupon.code,
            state=CouponState.USED.value,
            used_order_id=coupon.used_order_id,
            use_time=coupon.use_time,
        )

    def void(self, code: str, refund_id: str) -> bool:
        return self._change_issued(code, state=CouponState.VOID.value, refund_id=refund_id)

    def restore(self, refund_id: str) -> int:
        result = self.session.execute(
            update(CouponRow)
            .where(CouponRow.refund_id == refund_id, CouponRow.state == CouponState.VOID.value)
            .values(state=CouponState.ISSUED.value, refund_id=None)
            .execution_options(synchronize_session=False)
        )
        return rowcount(result)
