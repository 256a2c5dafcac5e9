"""Reconciliation's comparison, on hand-made records of both systems."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pointsbridge.cardpoints.v1 import cardpoints_pb2 as cp
from pointsbridge.ecommerce.v1 import ecommerce_pb2 as ec
from pointsbridge_cli.reconcile import compare, render_text
from servicekit.timestamps import to_timestamp

SINCE = datetime(2026, 11, 1, tzinfo=UTC)
UNTIL = SINCE + timedelta(days=1)
NOON = SINCE + timedelta(hours=12)


def redemption(
    rid: str,
    *,
    points: int = 3000,
    state: int = ec.REDEMPTION_STATE_COMPLETED,
    when: datetime = NOON,
    refunds: list[ec.Refund] | None = None,
) -> ec.ExportedRedemption:
    refunded = sum(f.points for f in refunds or [] if f.state == ec.REFUND_STATE_COMPLETED)
    return ec.ExportedRedemption(
        redemption=ec.Redemption(
            redemption_id=rid,
            quantity=3,
            points=points,
            state=state,  # type: ignore[arg-type]
            card_account_id="card-1",
            deduction_id=f"ded-{rid}" if state == ec.REDEMPTION_STATE_COMPLETED else "",
            refunded_points=refunded,
            create_time=to_timestamp(when),
        ),
        refunds=refunds or [],
    )


def deduction(
    rid: str,
    *,
    points: int = 3000,
    when: datetime = NOON,
    reversals: list[cp.Reversal] | None = None,
) -> cp.Deduction:
    return cp.Deduction(
        deduction_id=f"ded-{rid}",
        request_id=f"redemption:{rid}",
        account_id="card-1",
        points=points,
        coupon_quantity=3,
        reversed_points=sum(r.points for r in reversals or []),
        reversals=reversals or [],
        create_time=to_timestamp(when),
    )


def kinds(report: object) -> list[str]:
    return [m.kind for m in report.mismatches]  # type: ignore[attr-defined]


def test_matching_records_are_clean() -> None:
    refund = ec.Refund(
        refund_id="f1", points=1000, state=ec.REFUND_STATE_COMPLETED, reversal_id="rev-1"
    )
    report = compare(
        [redemption("a", refunds=[refund]), redemption("b", state=ec.REDEMPTION_STATE_FAILED)],
        [deduction("a", reversals=[cp.Reversal(reversal_id="rev-1", points=1000)])],
        SINCE,
        UNTIL,
    )
    assert report.clean, report.mismatches
    assert (report.redemptions, report.deductions, report.refunds, report.reversals) == (2, 1, 1, 1)
    assert "clean" in render_text(report)


def test_each_kind_of_mismatch_is_reported() -> None:
    report = compare(
        [
            redemption("no-deduction"),
            redemption("differs", points=3000),
            redemption("pending", state=ec.REDEMPTION_STATE_PENDING),
            redemption(
                "refund",
                refunds=[
                    ec.Refund(
                        refund_id="f-lost",
                        points=1000,
                        state=ec.REFUND_STATE_COMPLETED,
                        reversal_id="rev-missing",
                    )
                ],
            ),
        ],
        [
            deduction("stray"),
            deduction("differs", points=2999),
            deduction("refund", reversals=[cp.Reversal(reversal_id="rev-other", points=500)]),
        ],
        SINCE,
        UNTIL,
    )
    assert sorted(kinds(report)) == sorted(
        [
            "redemption_without_deduction",
            "points_differ",
            "unsettled",
            "refund_without_reversal",
            "refunded_total_differs",
            "deduction_without_redemption",
            "reversal_without_refund",
        ]
    )
    text = render_text(report)
    assert "7 mismatches" in text
    assert "redemption no-deduction" in text


def test_only_records_inside_the_window_are_judged() -> None:
    early = SINCE - timedelta(minutes=1)
    # The redemption just before the window finds its deduction just inside it.
    report = compare(
        [redemption("edge", when=early)], [deduction("edge", when=SINCE)], SINCE, UNTIL
    )
    assert report.clean
    assert (report.redemptions, report.deductions) == (0, 1)
    outside = compare([], [deduction("old", when=early)], SINCE, UNTIL)
    assert outside.clean
