"""The state the fake store holds, and the lease bookkeeping both pending kinds share."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

from ecommerce.domain.model import (
    CardLink,
    Coupon,
    CouponProduct,
    ExchangeRatio,
    Redemption,
    Refund,
)

T = TypeVar("T")

START = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


@dataclass
class FakeState:
    """Everything the fake database holds; seq numbers play the keyset role of row ids."""

    seq: int = 0
    products: dict[str, tuple[int, CouponProduct]] = field(default_factory=dict)
    ratios: list[ExchangeRatio] = field(default_factory=list)
    links: dict[str, CardLink] = field(default_factory=dict)
    redemptions: dict[str, tuple[int, Redemption]] = field(default_factory=dict)
    coupons: dict[str, tuple[int, Coupon, str | None]] = field(default_factory=dict)
    refunds: dict[str, Refund] = field(default_factory=dict)
    claims: dict[str, datetime] = field(default_factory=dict)

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq


def claim_leases(
    state: FakeState,
    pending: list[tuple[str, datetime]],
    *,
    now: datetime,
    untouched_since: datetime,
    lease_until: datetime,
    limit: int,
) -> list[str]:
    claimed = [
        row_id
        for row_id, touched in pending
        if touched <= untouched_since and (row_id not in state.claims or state.claims[row_id] < now)
    ][:limit]
    for row_id in claimed:
        state.claims[row_id] = lease_until
    return claimed


def renew_leases(
    state: FakeState, pending: list[str], ids: Sequence[str], lease_until: datetime
) -> None:
    for row_id in set(ids) & set(pending):
        state.claims[row_id] = lease_until
