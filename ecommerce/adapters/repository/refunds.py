"""Adapters room: refunds in SQL."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, delete, select, update
from sqlalchemy.orm import Session

from ecommerce.adapters.orm import RefundRow
from ecommerce.adapters.repository._common import claim, fresh, refund_of, rowcount, set_claim
from ecommerce.domain.model import Refund, RefundState


class SqlRefundRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def _one(self, condition: ColumnElement[bool]) -> Refund | None:
        row = self.session.scalars(fresh(select(RefundRow).where(condition))).one_or_none()
        return None if row is None else refund_of(row)

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

    def save_outcome(self, refund: Refund) -> bool:
        result = self.session.execute(
            update(RefundRow)
            .where(
                RefundRow.refund_id == refund.refund_id,
                RefundRow.state == RefundState.PENDING.value,
            )
            .values(
                state=refund.state.value,
                reversal_id=refund.reversal_id,
                update_time=refund.update_time,
            )
            .execution_options(synchronize_session=False)
        )
        return rowcount(result) == 1

    def forget(self, refund: Refund) -> bool:
        result = self.session.execute(
            delete(RefundRow)
            .where(
                RefundRow.refund_id == refund.refund_id,
                RefundRow.state == RefundState.PENDING.value,
            )
            .execution_options(synchronize_session=False)
        )
        return rowcount(result) == 1

    def claim_pending(
        self, *, now: datetime, untouched_since: datetime, lease_until: datetime, limit: int
    ) -> list[str]:
        return claim(
            self.session,
            RefundRow,
            RefundRow.refund_id,
            now=now,
            untouched_since=untouched_since,
            lease_until=lease_until,
            limit=limit,
        )

    def renew(self, refund_ids: Sequence[str], lease_until: datetime) -> None:
        set_claim(self.session, RefundRow, RefundRow.refund_id, refund_ids, lease_until)

    def release(self, refund_ids: Sequence[str]) -> None:
        set_claim(self.session, RefundRow, RefundRow.refund_id, refund_ids, None)

    def unsettled(self, limit: int) -> list[Refund]:
        rows = self.session.scalars(
            select(RefundRow)
            .where(RefundRow.state == RefundState.PENDING.value)
            .order_by(RefundRow.seq)
            .limit(limit)
        )
        return [refund_of(r) for r in rows]

    def of_redemptions(self, redemption_ids: Sequence[str]) -> dict[str, list[Refund]]:
        found: dict[str, list[Refund]] = {rid: [] for rid in redemption_ids}
        if redemption_ids:
            rows = self.session.scalars(
                select(RefundRow)
                .where(RefundRow.redemption_id.in_(redemption_ids))
                .order_by(RefundRow.seq)
            )
            for row in rows:
                found[row.redemption_id].append(refund_of(row))
        return found
