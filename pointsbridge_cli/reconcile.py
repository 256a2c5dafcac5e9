"""Reconciliation: both systems' records of a time window, compared one to one.

Every COMPLETED redemption must match exactly one card-points deduction with
equal points, account and quantity, and every deduction must match a COMPLETED
redemption. Every COMPLETED refund must match one reversal of that deduction
with equal points, and every reversal a COMPLETED refund. Anything still
PENDING cannot be judged yet and is reported too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from pointsbridge.cardpoints.v1 import cardpoints_pb2 as cp
from pointsbridge.cardpoints.v1 import cardpoints_pb2_grpc as cp_grpc
from pointsbridge.ecommerce.v1 import ecommerce_pb2 as ec
from pointsbridge.ecommerce.v1 import ecommerce_pb2_grpc as ec_grpc
from pointsbridge_cli.connection import Service
from servicekit.timestamps import from_timestamp, to_timestamp

_Request = TypeVar("_Request", bound=Message)
_Item = TypeVar("_Item")

# Each kind of mismatch, and what it means for a person reading the report.
KINDS = {
    "deduction_without_redemption": "points were deducted but no completed redemption has them",
    "redemption_without_deduction": "coupons were issued but no deduction paid for them",
    "points_differ": "the redemption and its deduction disagree on points, account or quantity",
    "refund_without_reversal": "coupons were voided as refunded but no reversal gave points back",
    "reversal_without_refund": "points were given back but no completed refund asked for them",
    "refund_points_differ": "a refund and its reversal disagree on points",
    "refunded_total_differs": "refunded totals disagree between the redemption and the deduction",
    "unsettled": "still PENDING: its outcome at the card-points system is not known yet",
}


class FetchFailed(Exception):
    """A page could not be fetched; which service, and the request that failed."""

    def __init__(self, error: grpc.RpcError, service: Service, request: Message) -> None:
        super().__init__(str(error))
        self.error = error
        self.service = service
        self.request = request


@dataclass(frozen=True)
class Mismatch:
    kind: str
    detail: str
    redemption_id: str = ""
    deduction_id: str = ""
    refund_id: str = ""
    reversal_id: str = ""


@dataclass
class Report:
    since: str
    until: str
    redemptions: int = 0
    deductions: int = 0
    refunds: int = 0
    reversals: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.mismatches

    def as_dict(self) -> dict[str, object]:
        return {
            "since": self.since,
            "until": self.until,
            "clean": self.clean,
            "counted": {
                "redemptions": self.redemptions,
                "deductions": self.deductions,
                "refunds": self.refunds,
                "reversals": self.reversals,
            },
            "mismatches": [asdict(m) for m in self.mismatches],
        }


def _in(moment: datetime, since: datetime, until: datetime) -> bool:
    return since <= moment < until


def compare(
    exported: Iterable[ec.ExportedRedemption],
    deductions: Iterable[cp.Deduction],
    since: datetime,
    until: datetime,
) -> Report:
    """Compare records fetched with some slack around [since, until).

    Only records created inside the window are judged; the slack lets a
    redemption near an edge find its deduction, whose clock may differ a little.
    """
    report = Report(since.isoformat(), until.isoformat())
    items = list(exported)
    by_deduction_id = {d.deduction_id: d for d in deductions}
    completed_by_deduction = {
        item.redemption.deduction_id: item
        for item in items
        if item.redemption.state == ec.REDEMPTION_STATE_COMPLETED
    }
    add = report.mismatches.append

    for item in items:
        redemption = item.redemption
        if not _in(from_timestamp(redemption.create_time), since, until):
            continue
        report.redemptions += 1
        report.refunds += len(item.refunds)
        if redemption.state == ec.REDEMPTION_STATE_PENDING:
            add(Mismatch("unsettled", "redemption is PENDING", redemption.redemption_id))
        for refund in item.refunds:
            if refund.state == ec.REFUND_STATE_PENDING:
                add(
                    Mismatch(
                        "unsettled",
                        "refund is PENDING",
                        redemption.redemption_id,
                        refund_id=refund.refund_id,
                    )
                )
        if redemption.state != ec.REDEMPTION_STATE_COMPLETED:
            continue
        deduction = by_deduction_id.get(redemption.deduction_id)
        if deduction is None:
            add(
                Mismatch(
                    "redemption_without_deduction",
                    f"{redemption.points} points, deduction {redemption.deduction_id or '-'}",
                    redemption.redemption_id,
                    redemption.deduction_id,
                )
            )
            continue
        if (
            deduction.points != redemption.points
            or deduction.account_id != redemption.card_account_id
            or deduction.coupon_quantity != redemption.quantity
        ):
            add(
                Mismatch(
                    "points_differ",
                    f"redemption {redemption.points} points x{redemption.quantity} on "
                    f"{redemption.card_account_id}; deduction {deduction.points} points "
                    f"x{deduction.coupon_quantity} on {deduction.account_id}",
                    redemption.redemption_id,
                    deduction.deduction_id,
                )
            )
        _compare_refunds(item, deduction, add)

    for deduction in by_deduction_id.values():
        if not _in(from_timestamp(deduction.create_time), since, until):
            continue
        report.deductions += 1
        report.reversals += len(deduction.reversals)
        if deduction.deduction_id not in completed_by_deduction:
            add(
                Mismatch(
                    "deduction_without_redemption",
                    f"{deduction.points} points from {deduction.account_id}, "
                    f"request {deduction.request_id}",
                    deduction_id=deduction.deduction_id,
                )
            )
            continue
        refunds = {
            f.reversal_id
            for f in completed_by_deduction[deduction.deduction_id].refunds
            if f.state == ec.REFUND_STATE_COMPLETED
        }
        for reversal in deduction.reversals:
            if reversal.reversal_id not in refunds:
                add(
                    Mismatch(
                        "reversal_without_refund",
                        f"{reversal.points} points back, request {reversal.request_id}",
                        completed_by_deduction[deduction.deduction_id].redemption.redemption_id,
                        deduction.deduction_id,
                        reversal_id=reversal.reversal_id,
                    )
                )
    return report


def _compare_refunds(item: ec.ExportedRedemption, deduction: cp.Deduction, add: object) -> None:
    record = add  # a bound list.append
    assert callable(record)
    redemption = item.redemption
    reversals = {r.reversal_id: r for r in deduction.reversals}
    refunded = 0
    for refund in item.refunds:
        if refund.state != ec.REFUND_STATE_COMPLETED:
            continue
        refunded += refund.points
        reversal = reversals.get(refund.reversal_id)
        if reversal is None:
            record(
                Mismatch(
                    "refund_without_reversal",
                    f"{refund.points} points, reversal {refund.reversal_id or '-'}",
                    redemption.redemption_id,
                    deduction.deduction_id,
                    refund.refund_id,
                    refund.reversal_id,
                )
            )
        elif reversal.points != refund.points:
            record(
                Mismatch(
                    "refund_points_differ",
                    f"refund {refund.points} points; reversal {reversal.points} points",
                    redemption.redemption_id,
                    deduction.deduction_id,
                    refund.refund_id,
                    reversal.reversal_id,
                )
            )
    if not refunded == redemption.refunded_points == deduction.reversed_points:
        record(
            Mismatch(
                "refunded_total_differs",
                f"refunds {refunded}, redemption {redemption.refunded_points}, "
                f"deduction {deduction.reversed_points} points",
                redemption.redemption_id,
                deduction.deduction_id,
            )
        )


def _pages(
    call: Callable[[_Request], Any],
    request: Callable[[str], _Request],
    service: Service,
    items: Callable[[Any], Iterable[_Item]],
) -> Iterator[_Item]:
    """Every item of a paged window listing, page after page."""
    token = ""
    while True:
        sent = request(token)
        try:
            page = call(sent)
        except grpc.RpcError as error:
            raise FetchFailed(error, service, sent) from error
        yield from items(page)
        token = page.next_page_token
        if not token:
            return


def fetch_redemptions(
    channel: grpc.Channel,
    start: datetime,
    end: datetime,
    timeout: float,
    metadata: tuple[tuple[str, str], ...] = (),
) -> Iterator[ec.ExportedRedemption]:
    stub = ec_grpc.EcommerceAdminServiceStub(channel)
    return _pages(
        lambda request: stub.ExportRedemptions(request, timeout=timeout, metadata=metadata),
        lambda token: ec.ExportRedemptionsRequest(
            start_time=to_timestamp(start),
            end_time=to_timestamp(end),
            page_size=1000,
            page_token=token,
        ),
        Service.ECOMMERCE,
        lambda page: page.redemptions,
    )


def fetch_deductions(
    channel: grpc.Channel,
    start: datetime,
    end: datetime,
    timeout: float,
    metadata: tuple[tuple[str, str], ...] = (),
) -> Iterator[cp.Deduction]:
    stub = cp_grpc.CardPointsServiceStub(channel)
    return _pages(
        lambda request: stub.ListDeductions(request, timeout=timeout, metadata=metadata),
        lambda token: cp.ListDeductionsRequest(
            start_time=to_timestamp(start),
            end_time=to_timestamp(end),
            page_size=1000,
            page_token=token,
        ),
        Service.CARDPOINTS,
        lambda page: page.deductions,
    )


def reconcile(
    cardpoints: grpc.Channel,
    ecommerce: grpc.Channel,
    since: datetime,
    until: datetime,
    *,
    slack: timedelta = timedelta(minutes=10),
    timeout: float = 30.0,
    cardpoints_metadata: tuple[tuple[str, str], ...] = (),
    ecommerce_metadata: tuple[tuple[str, str], ...] = (),
) -> Report:
    exported = list(
        fetch_redemptions(ecommerce, since - slack, until + slack, timeout, ecommerce_metadata)
    )
    deductions = list(
        fetch_deductions(cardpoints, since - slack, until + slack, timeout, cardpoints_metadata)
    )
    return compare(exported, deductions, since, until)


def render_text(report: Report) -> str:
    lines = [
        f"window      {report.since} .. {report.until}",
        f"compared    {report.redemptions} redemptions, {report.deductions} deductions, "
        f"{report.refunds} refunds, {report.reversals} reversals",
    ]
    if report.clean:
        lines.append("result      clean: both systems agree")
        return "\n".join(lines)
    lines.append(f"result      {len(report.mismatches)} mismatches")
    for mismatch in report.mismatches:
        ids = ", ".join(
            f"{name} {value}"
            for name, value in (
                ("redemption", mismatch.redemption_id),
                ("deduction", mismatch.deduction_id),
                ("refund", mismatch.refund_id),
                ("reversal", mismatch.reversal_id),
            )
            if value
        )
        lines.append(f"  - {mismatch.kind}: {KINDS[mismatch.kind]}")
        lines.append(f"      {ids}: {mismatch.detail}")
    return "\n".join(lines)
