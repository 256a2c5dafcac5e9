"""The invariants across both systems, I3 to I5 and the refund half of I6: each
redemption, its coupons and its refunds held against cardpoints' deductions."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable

from chaos.snapshot import Snapshot
from pointsbridge.cardpoints.v1 import cardpoints_pb2 as cp
from pointsbridge.ecommerce.v1 import ecommerce_pb2 as ec

REDEMPTION_PREFIX = "redemption:"
REFUND_PREFIX = "refund:"

_PENDING = ec.REDEMPTION_STATE_PENDING
_COMPLETED = ec.REDEMPTION_STATE_COMPLETED
_FAILED = ec.REDEMPTION_STATE_FAILED


Add = Callable[[str, str], None]


def check_shop(snap: Snapshot, add: Add) -> None:
    """I3, I4, I5 across both systems: redemptions, coupons and refunds against the bank."""
    deductions: dict[str, list[cp.Deduction]] = defaultdict(list)
    for deduction in snap.deductions:
        deductions[deduction.request_id].append(deduction)
    redemptions = {r.redemption_id: r for r in snap.redemptions}
    exported = {e.redemption.redemption_id: e for e in snap.exported}
    if set(exported) != set(redemptions):
        add(
            "EXPORT",
            f"ExportRedemptions has {len(exported)} redemptions, ListRedemptions "
            f"{len(redemptions)}; differ: {sorted(set(exported) ^ set(redemptions))[:5]}",
        )
    request_ids = Counter(r.request_id for r in snap.redemptions)
    for request_id, count in request_ids.items():
        if count > 1:
            add("I3", f"request_id {request_id} has {count} redemptions")

    listed: dict[str, ec.Coupon] = {}
    codes: Counter[str] = Counter()
    for coupons in snap.coupons.values():
        for coupon in coupons:
            codes[coupon.code] += 1
            listed[coupon.code] = coupon
    for code, count in codes.items():
        if count > 1:
            add("I4", f"coupon code {code} appears {count} times")

    in_redemptions: set[str] = set()
    for redemption in snap.redemptions:
        rid = redemption.redemption_id
        for coupon in redemption.coupons:
            in_redemptions.add(coupon.code)
            if coupon.code not in listed:
                add("I4", f"coupon {coupon.code} of {rid} is not in ListCoupons")
        # Should there be several (reported above), judge by the one the redemption names.
        candidates = deductions.get(REDEMPTION_PREFIX + rid, [])
        paid = next(
            (d for d in candidates if d.deduction_id == redemption.deduction_id),
            candidates[0] if candidates else None,
        )
        _check_redemption(redemption, paid, add)
        refunds = list(exported[rid].refunds) if rid in exported else []
        _check_refunds(redemption, refunds, paid, add)
    for code in sorted(set(listed) - in_redemptions):
        add("I4", f"coupon {code} belongs to no redemption")

    for deduction in snap.deductions:
        rid = deduction.request_id.removeprefix(REDEMPTION_PREFIX)
        if not deduction.request_id.startswith(REDEMPTION_PREFIX) or rid not in redemptions:
            add(
                "I3",
                f"deduction {deduction.deduction_id} ({deduction.request_id}, "
                f"{deduction.points} points from {deduction.account_id}) has no redemption",
            )
        refund_ids = {f.refund_id for e in snap.exported for f in e.refunds}
        for reversal in deduction.reversals:
            if reversal.request_id.removeprefix(REFUND_PREFIX) not in refund_ids:
                add("I6", f"reversal {reversal.request_id} of {deduction.request_id} has no refund")
    for op in snap.unsettled:
        add(
            "SETTLED",
            f"{ec.UnsettledKind.Name(op.kind)} {op.id} ({op.request_id}) is still unsettled",
        )


def _check_redemption(redemption: ec.Redemption, deduction: cp.Deduction | None, add: Add) -> None:
    rid = redemption.redemption_id
    coupons = list(redemption.coupons)
    if redemption.state == _PENDING:
        add("SETTLED", f"redemption {rid} ({redemption.request_id}) is still PENDING")
        return
    if redemption.state == _FAILED:
        if deduction is not None:
            add("I3", f"FAILED redemption {rid} has deduction {deduction.deduction_id}")
        if coupons:
            add("I3", f"FAILED redemption {rid} has {len(coupons)} coupons")
        if not redemption.failure_reason:
            add("I3", f"FAILED redemption {rid} has no failure reason")
        return
    if redemption.state != _COMPLETED:
        add("I3", f"redemption {rid} is in state {redemption.state}")
        return
    if deduction is None:
        add("I3", f"COMPLETED redemption {rid} has no deduction at cardpoints")
    else:
        if deduction.points != redemption.points:
            add(
                "I3",
                f"redemption {rid}: {redemption.points} points, deduction {deduction.points}",
            )
        if deduction.account_id != redemption.card_account_id:
            add("I3", f"redemption {rid} was deducted from {deduction.account_id}")
        if deduction.deduction_id != redemption.deduction_id:
            add(
                "I3",
                f"redemption {rid} names deduction {redemption.deduction_id!r}, cardpoints has "
                f"{deduction.deduction_id}",
            )
        if (deduction.coupon_quantity, deduction.points_per_coupon) != (
            redemption.quantity,
            redemption.points_per_coupon,
        ):
            add("I3", f"redemption {rid}: deduction is for another quantity or ratio")
    if redemption.points != redemption.quantity * redemption.points_per_coupon:
        add("I3", f"redemption {rid}: {redemption.points} != quantity x points_per_coupon")
    if len(coupons) != redemption.quantity:
        add(
            "I4",
            f"COMPLETED redemption {rid} has {len(coupons)} coupons, not {redemption.quantity}",
        )
    for coupon in coupons:
        if coupon.redemption_id != rid or coupon.customer_id != redemption.customer_id:
            add("I4", f"coupon {coupon.code} is listed under {rid} but says otherwise")
        if coupon.state == ec.COUPON_STATE_USED and not coupon.used_order_id:
            add("I5", f"coupon {coupon.code} is USED on no order")
        if coupon.state != ec.COUPON_STATE_USED and coupon.used_order_id:
            add(
                "I5",
                f"coupon {coupon.code} is {ec.CouponState.Name(coupon.state)} but was used on "
                f"{coupon.used_order_id}",
            )


def _check_refunds(
    redemption: ec.Redemption,
    refunds: list[ec.Refund],
    deduction: cp.Deduction | None,
    add: Add,
) -> None:
    rid = redemption.redemption_id
    coupons = {c.code: c for c in redemption.coupons}
    refunded_codes: Counter[str] = Counter()
    total = 0
    reversals = {r.request_id: r for r in deduction.reversals} if deduction else {}
    for refund in refunds:
        if refund.state == ec.REFUND_STATE_PENDING:
            add("SETTLED", f"refund {refund.refund_id} of {rid} is still PENDING")
            continue
        total += refund.points
        refunded_codes.update(refund.codes)
        if refund.points != len(refund.codes) * redemption.points_per_coupon:
            add("I6", f"refund {refund.refund_id}: {refund.points} points for {len(refund.codes)}")
        for code in refund.codes:
            coupon = coupons.get(code)
            if coupon is None or coupon.state != ec.COUPON_STATE_VOID:
                state = "missing" if coupon is None else ec.CouponState.Name(coupon.state)
                add("I5", f"refund {refund.refund_id} returned coupon {code}, which is {state}")
        reversal = reversals.get(REFUND_PREFIX + refund.refund_id)
        if reversal is None:
            add("I6", f"COMPLETED refund {refund.refund_id} of {rid} has no reversal")
        elif reversal.points != refund.points:
            add(
                "I6",
                f"refund {refund.refund_id}: {refund.points} points, reversal {reversal.points}",
            )
    for code, count in refunded_codes.items():
        if count > 1:
            add("I5", f"coupon {code} was refunded {count} times")
    for code, coupon in coupons.items():
        if coupon.state == ec.COUPON_STATE_VOID and code not in refunded_codes:
            add("I5", f"coupon {code} is VOID but no completed refund returned it")
    if redemption.refunded_points != total:
        add("I6", f"redemption {rid} says {redemption.refunded_points} refunded, refunds {total}")
    if deduction is not None and deduction.reversed_points != total:
        add(
            "I6",
            f"redemption {rid}: refunds gave back {total}, cardpoints reversed "
            f"{deduction.reversed_points}",
        )
