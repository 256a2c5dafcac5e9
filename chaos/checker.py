"""Reads both systems through their RPCs and checks the invariants I1-I6 of DESIGN.md.

`check` is a pure function of a snapshot (chaos.snapshot), the accounts the harness
opened and credited, and the journal of what the clients were told.

A violation names its invariant: I1 (no negative balance), I2 (ledger conservation),
I3 (exactly once: one deduction per redemption, coupons iff it succeeded), I4 (quantity
coupons, unique codes), I5 (a coupon used at most once, never when VOID/EXPIRED), I6 (a
refused call changed nothing), ACK (a success a client was told about is there), and
SETTLED (nothing PENDING once both services are up).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from chaos.journal import Customer, Journal, Outcome
from chaos.shop_check import check_shop
from chaos.snapshot import Snapshot
from pointsbridge.cardpoints.v1 import cardpoints_pb2 as cp
from pointsbridge.ecommerce.v1 import ecommerce_pb2 as ec

__all__ = ["Snapshot", "Violation", "check"]

_COMPLETED = ec.REDEMPTION_STATE_COMPLETED
_FAILED = ec.REDEMPTION_STATE_FAILED


@dataclass(frozen=True, order=True)
class Violation:
    invariant: str
    message: str

    def __str__(self) -> str:
        return f"violation {self.invariant}: {self.message}"


def check(snap: Snapshot, customers: Sequence[Customer], journal: Journal) -> list[Violation]:
    found: list[Violation] = []

    def add(invariant: str, message: str) -> None:
        found.append(Violation(invariant, message))

    credited = {c.account_id: c.credited for c in customers}
    _check_bank(snap, credited, add)
    check_shop(snap, add)
    _check_journal(snap, journal, add)
    for line in journal.unexpected:
        add("ANSWER", line)
    return sorted(set(found))


Add = Callable[[str, str], None]


def _check_bank(snap: Snapshot, credited: dict[str, int], add: Add) -> None:
    """I1, I2 and the bank half of I6, from cardpoints alone."""
    by_request: dict[str, list[cp.Deduction]] = defaultdict(list)
    for deduction in snap.deductions:
        by_request[deduction.request_id].append(deduction)
    for request_id, same in by_request.items():
        if len(same) > 1:
            add("I3", f"deduction request_id {request_id} produced {len(same)} deductions")

    deducted: Counter[str] = Counter()
    reversed_: Counter[str] = Counter()
    for deduction in snap.deductions:
        if deduction.account_id not in credited:
            continue  # not one of this run's accounts
        deducted[deduction.account_id] += deduction.points
        total = sum(r.points for r in deduction.reversals)
        reversed_[deduction.account_id] += total
        if total != deduction.reversed_points:
            add(
                "I2",
                f"deduction {deduction.request_id}: reversed_points {deduction.reversed_points}"
                f" but its reversals add up to {total}",
            )
        if deduction.reversed_points > deduction.points:
            add(
                "I2",
                f"deduction {deduction.request_id}: {deduction.reversed_points} reversed "
                f"of {deduction.points}",
            )
        if deduction.points != deduction.coupon_quantity * deduction.points_per_coupon:
            add(
                "I3",
                f"deduction {deduction.request_id}: {deduction.points} points for "
                f"{deduction.coupon_quantity} x {deduction.points_per_coupon}",
            )

    for account_id, account in snap.accounts.items():
        if account.balance < 0:
            add("I1", f"account {account_id} has balance {account.balance}")
        entries = snap.ledgers.get(account_id, [])
        running = 0
        sums: Counter[int] = Counter()
        for entry in entries:
            running += entry.amount
            sums[entry.type] += entry.amount
            if entry.balance_after < 0:
                add(
                    "I1",
                    f"ledger entry {entry.entry_id} of {account_id} left {entry.balance_after}",
                )
            if entry.balance_after != running:
                add(
                    "I2",
                    f"ledger of {account_id}: entry {entry.entry_id} says balance "
                    f"{entry.balance_after}, the entries before it add up to {running}",
                )
                running = entry.balance_after  # report each break once
        ledger_sum = sum(e.amount for e in entries)
        if ledger_sum != account.balance:
            add(
                "I2",
                f"account {account_id}: ledger sums to {ledger_sum}, balance {account.balance}",
            )
        credits = sums[cp.ENTRY_TYPE_CREDIT]
        debits = -sums[cp.ENTRY_TYPE_DEDUCTION]
        backs = sums[cp.ENTRY_TYPE_REVERSAL]
        if credits - debits + backs != account.balance:
            add(
                "I2",
                f"account {account_id}: credits {credits} - deductions {debits} + reversals "
                f"{backs} != balance {account.balance}",
            )
        if credits != credited.get(account_id, 0):
            add(
                "I6",
                f"account {account_id}: credited {credits}, the harness credited "
                f"{credited.get(account_id, 0)}",
            )
        if debits != deducted[account_id] or backs != reversed_[account_id]:
            add(
                "I2",
                f"account {account_id}: ledger deductions/reversals {debits}/{backs}, "
                f"deduction records {deducted[account_id]}/{reversed_[account_id]}",
            )
        expected = credited.get(account_id, 0) - deducted[account_id] + reversed_[account_id]
        if account.balance != expected:
            add(
                "I6",
                f"account {account_id}: balance {account.balance}, but credited - deducted + "
                f"reversed = {expected}",
            )
        _check_ledger_references(snap, account_id, entries, add)


def _check_ledger_references(
    snap: Snapshot, account_id: str, entries: list[cp.LedgerEntry], add: Add
) -> None:
    """Every deduction and reversal has exactly one ledger entry, and nothing else does."""
    deductions: dict[str, list[cp.Deduction]] = defaultdict(list)
    reversals: dict[str, list[cp.Reversal]] = defaultdict(list)
    for deduction in snap.deductions:
        if deduction.account_id == account_id:
            deductions[deduction.request_id].append(deduction)
            for reversal in deduction.reversals:
                reversals[reversal.request_id].append(reversal)
    seen: Counter[tuple[int, str]] = Counter()
    for entry in entries:
        seen[(entry.type, entry.request_id)] += 1
        if entry.type == cp.ENTRY_TYPE_DEDUCTION:
            ok = any(-entry.amount == d.points for d in deductions.get(entry.request_id, []))
        elif entry.type == cp.ENTRY_TYPE_REVERSAL:
            ok = any(entry.amount == r.points for r in reversals.get(entry.request_id, []))
        else:
            continue
        if not ok:
            add(
                "I2",
                f"ledger {cp.EntryType.Name(entry.type)} {entry.request_id} of {account_id} "
                "has no record with that amount",
            )
    for kind, name, records in (
        (cp.ENTRY_TYPE_DEDUCTION, "deduction", deductions),
        (cp.ENTRY_TYPE_REVERSAL, "reversal", reversals),
    ):
        for request_id, same in records.items():
            if seen[(kind, request_id)] != len(same):
                add(
                    "I2",
                    f"{name} {request_id}: {len(same)} records, "
                    f"{seen[(kind, request_id)]} ledger entries",
                )


def _check_journal(snap: Snapshot, journal: Journal, add: Add) -> None:
    """What each client was told must still be true; what was refused must have left no trace."""
    by_request = {r.request_id: r for r in snap.redemptions}
    coupons = {c.code: c for listed in snap.coupons.values() for c in listed}
    refunds = {f.request_id: f for e in snap.exported for f in e.refunds}

    for call in journal.redeems:
        redemption = by_request.get(call.request_id)
        if call.outcome is Outcome.OK:
            if redemption is None:
                add("ACK", f"redemption {call.request_id} the client saw COMPLETED is gone")
                continue
            if redemption.state != _COMPLETED or redemption.redemption_id != call.redemption_id:
                add(
                    "ACK",
                    f"redemption {call.request_id} the client saw COMPLETED is "
                    f"{ec.RedemptionState.Name(redemption.state)} {redemption.redemption_id}",
                )
            if sorted(c.code for c in redemption.coupons) != sorted(call.codes):
                add("ACK", f"redemption {call.request_id}: the client was given other codes")
            if redemption.points != call.points:
                add("ACK", f"redemption {call.request_id}: the client was told other points")
        elif call.outcome is Outcome.REFUSED:
            if call.reason in ("RATE_CHANGED", "POINTS_MISMATCH", "QUANTITY_LIMIT_EXCEEDED"):
                if redemption is not None:
                    add("I6", f"refused redemption {call.request_id} ({call.reason}) was recorded")
            elif redemption is None or redemption.state != _FAILED:
                state = "absent" if redemption is None else redemption.state
                add("I6", f"redemption {call.request_id} refused {call.reason} is {state}")
            elif redemption.failure_reason != call.reason:
                add(
                    "I6",
                    f"redemption {call.request_id} refused {call.reason} failed with "
                    f"{redemption.failure_reason}",
                )

    acknowledged: dict[str, set[str]] = defaultdict(set)
    for use in journal.uses:
        if use.outcome is Outcome.OK:
            acknowledged[use.code].add(use.order_id)
    for code, orders in acknowledged.items():
        if len(orders) > 1:
            add("I5", f"coupon {code} was used on {len(orders)} orders: {sorted(orders)}")
    for use in journal.uses:
        coupon = coupons.get(use.code)
        if coupon is None:
            add("ACK", f"coupon {use.code} the client held is gone")
            continue
        if use.outcome is Outcome.OK and (
            coupon.state != ec.COUPON_STATE_USED or coupon.used_order_id != use.order_id
        ):
            add(
                "ACK",
                f"coupon {use.code} the client used on {use.order_id} is "
                f"{ec.CouponState.Name(coupon.state)} {coupon.used_order_id!r}",
            )
        elif use.outcome is Outcome.REFUSED and coupon.used_order_id == use.order_id:
            add("I6", f"coupon {use.code} was used on {use.order_id}, which was refused")
        elif use.outcome is Outcome.UNKNOWN and not (
            coupon.state == ec.COUPON_STATE_ISSUED
            or (coupon.state == ec.COUPON_STATE_USED and coupon.used_order_id == use.order_id)
        ):
            add(
                "I5",
                f"coupon {use.code} (use on {use.order_id} unknown) is "
                f"{ec.CouponState.Name(coupon.state)} {coupon.used_order_id!r}",
            )

    for ask in journal.refunds:
        refund = refunds.get(ask.request_id)
        if ask.outcome is Outcome.OK:
            if refund is None or refund.refund_id != ask.refund_id:
                add("ACK", f"refund {ask.request_id} the client was given is gone")
                continue
            if sorted(refund.codes) != sorted(ask.codes) or refund.points != ask.points:
                add("ACK", f"refund {ask.request_id} differs from what the client was told")
        elif ask.outcome is Outcome.REFUSED:
            if refund is not None:
                add("I6", f"refused refund {ask.request_id} ({ask.reason}) exists")
        elif refund is None:
            # Never recorded, or undone: its coupons must be as they were (nobody else
            # touches a coupon whose refund outcome its client does not know).
            for code in ask.codes:
                coupon = coupons.get(code)
                if coupon is not None and coupon.state == ec.COUPON_STATE_VOID:
                    add("I6", f"coupon {code} is VOID, but refund {ask.request_id} never was")
