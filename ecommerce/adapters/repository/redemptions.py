"""Adapters room: redemptions in SQL."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ecommerce.adapters.orm import RedemptionRow
from ecommerce.adapters.repository._common import (
    ADD_REDEMPTION,
    GET_REDEMPTION,
    GET_REDEMPTION_BY_REQUEST,
    LEAVE_PENDING,
    claim,
    redemption_of,
    set_claim,
)
from ecommerce.domain.model import Redemption, RedemptionState
from servicekit.compiled import CompiledStatement, Connector
from servicekit.paging import Page


class SqlRedemptionRepository:
    def __init__(self, session: Session, connector: Connector | None = None) -> None:
        self.session = session
        self.connection = connector or Connector(session)

    def _one(self, statement: CompiledStatement, params: dict[str, str]) -> Redemption | None:
        row = statement.first(self.connection(), params)
        return None if row is None else redemption_of(row)

    def add(self, redemption: Redemption) -> None:
        ADD_REDEMPTION.execute(
            self.connection(),
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
        return self._one(GET_REDEMPTION, {"redemption_id": redemption_id})

    def get_by_request_id(self, request_id: str) -> Redemption | None:
        return self._one(GET_REDEMPTION_BY_REQUEST, {"request_id": request_id})

    def save_outcome(self, redemption: Redemption) -> bool:
        matched = LEAVE_PENDING.rowcount(
            self.connection(),
            {
                "pending_redemption": redemption.redemption_id,
                "state": redemption.state.value,
                "failure_reason": redemption.failure_reason,
                "deduction_id": redemption.deduction_id,
                "update_time": redemption.update_time,
            },
        )
        return matched == 1

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
        return Page.of([(r.seq, redemption_of(r)) for r in rows], limit)

    def claim_pending(
        self, *, now: datetime, untouched_since: datetime, lease_until: datetime, limit: int
    ) -> list[str]:
        return claim(
            self.session,
            RedemptionRow,
            RedemptionRow.redemption_id,
            now=now,
            untouched_since=untouched_since,
            lease_until=lease_until,
            limit=limit,
        )

    def renew(self, redemption_ids: Sequence[str], lease_until: datetime) -> None:
        set_claim(
            self.session, RedemptionRow, RedemptionRow.redemption_id, redemption_ids, lease_until
        )

    def release(self, redemption_ids: Sequence[str]) -> None:
        set_claim(self.session, RedemptionRow, RedemptionRow.redemption_id, redemption_ids, None)

    def unsettled(self, limit: int) -> list[Redemption]:
        rows = self.session.scalars(
            select(RedemptionRow)
            .where(RedemptionRow.state == RedemptionState.PENDING.value)
            .order_by(RedemptionRow.seq)
            .limit(limit)
        )
        return [redemption_of(r) for r in rows]

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
        return Page.of([(r.seq, redemption_of(r)) for r in rows], limit)
