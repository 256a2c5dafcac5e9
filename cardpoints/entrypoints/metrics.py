"""Card-points business metrics, fed by the domain events of committed units of work."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Counter

from cardpoints.domain.events import (
    DeductionRefused,
    PointsCredited,
    PointsDeducted,
    PointsReversed,
)

POINTS = Counter(
    "cardpoints_points_total",
    "Points moved, by kind of movement (credited, deducted, reversed).",
    ["movement"],
)
DEDUCTIONS = Counter(
    "cardpoints_deductions_total",
    "Deduction requests decided (not replays), by outcome: OK or the refusal reason.",
    ["outcome"],
)


def publish(events: Iterable[object]) -> None:
    for event in events:
        match event:
            case PointsDeducted(points=points):
                POINTS.labels("deducted").inc(points)
                DEDUCTIONS.labels("OK").inc()
            case DeductionRefused(reason=reason):
                DEDUCTIONS.labels(reason).inc()
            case PointsReversed(points=points):
                POINTS.labels("reversed").inc(points)
            case PointsCredited(points=points):
                POINTS.labels("credited").inc(points)
