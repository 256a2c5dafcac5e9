"""Fake repositories of redemptions and refunds, the two kinds recovery claims."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime

from ecommerce.domain.model import (
    Redemption,
    RedemptionState,
    Refund,
    RefundState,
)
from servicekit.paging import Page
from tests.ecommerce.fakes.state import FakeState, claim_leases, renew_leases


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
        return claim_leases(
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
        renew_leases(
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
        return claim_leases(
            self.s,
            [(f.refund_id, f.update_time) for f in self.unsettled(limit=len(self.s.refunds))],
            now=now,
            untouched_since=untouched_since,
            lease_until=lease_until,
            limit=limit,
        )

    def renew(self, refund_ids: Sequence[str], lease_until: datetime) -> None:
        renew_leases(
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
