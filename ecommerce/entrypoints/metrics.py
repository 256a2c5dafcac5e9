"""Entrypoints room: e-commerce business metrics, fed by committed domain events and sweeps."""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import Counter, Gauge

from ecommerce.domain.events import (
    CouponsRestored,
    CouponsVoided,
    CouponUsed,
    PointsRefunded,
    RedemptionCompleted,
    RedemptionFailed,
)
from ecommerce.domain.model import UnsettledKind, UnsettledOperation

REDEMPTIONS = Counter(
    "ecommerce_redemptions_total",
    "Redemptions that reached a final state, by state (COMPLETED, FAILED).",
    ["state"],
)
POINTS = Counter(
    "ecommerce_points_total",
    "Points moved by settled operations: redeemed (deducted) and refunded (reversed).",
    ["movement"],
)
COUPONS = Counter(
    "ecommerce_coupons_total",
    "Coupon lifecycle events: issued, used, voided (refunded), restored (refund refused).",
    ["event"],
)
CARDPOINTS_TOKEN_EXPIRY = Gauge(
    "ecommerce_cardpoints_token_expiry_seconds",
    "Seconds until the bearer token presented to cardpoints expires; negative once it has.",
)
UNSETTLED = Gauge(
    "ecommerce_unsettled_operations",
    "PENDING redemptions and refunds at the last recovery sweep, by kind and review flag.",
    ["kind", "needs_review"],
    # With --processes each process sweeps the same database: the live processes' max.
    multiprocess_mode="livemax",
)
RECOVERY_RUNS = Counter(
    "ecommerce_recovery_runs_total",
    "Recovery sweeps, by outcome (ok, error).",
    ["outcome"],
)
RECOVERY_SETTLED = Counter(
    "ecommerce_recovery_settled_total",
    "Redemptions and refunds the recovery loop brought to a final state.",
)


def publish(events: Sequence[object]) -> None:
    for event in events:
        match event:
            case RedemptionCompleted(points=points, coupons=coupons):
                REDEMPTIONS.labels("COMPLETED").inc()
                POINTS.labels("redeemed").inc(points)
                COUPONS.labels("issued").inc(coupons)
            case RedemptionFailed():
                REDEMPTIONS.labels("FAILED").inc()
            case CouponUsed():
                COUPONS.labels("used").inc()
            case CouponsVoided(count=count):
                COUPONS.labels("voided").inc(count)
            case CouponsRestored(count=count):
                COUPONS.labels("restored").inc(count)
            case PointsRefunded(points=points):
                POINTS.labels("refunded").inc(points)


def observe_sweep(settled: int, unsettled: Sequence[UnsettledOperation]) -> None:
    RECOVERY_RUNS.labels("ok").inc()
    RECOVERY_SETTLED.inc(settled)
    for kind in UnsettledKind:
        for review in (False, True):
            count = sum(1 for op in unsettled if op.kind is kind and op.needs_review is review)
            UNSETTLED.labels(kind.value, str(review).lower()).set(count)
