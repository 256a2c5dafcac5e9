"""Reads both systems through their RPCs and checks the invariants I1-I6 of DESIGN.md.

`take_snapshot` pages through everything the run created: card accounts, their
ledgers and every deduction (with reversals) at cardpoints; every redemption (with
coupons and refunds), every customer's coupons and the unsettled operations at
ecommerce. `check` is a pure function of that snapshot, the accounts the harness
opened and credited, and the journal of what the clients were told.

A violation names its invariant: I1 (no negative balance), I2 (ledger conservation),
I3 (exactly once: one deduction per redemption, coupons iff it succeeded), I4 (quantity
coupons, unique codes), I5 (a coupon used at most once, never when VOID/EXPIRED), I6 (a
refused call changed nothing), ACK (a success a client was told about is there), and
SETTLED (nothing PENDING once both services are up).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import grpc
from google.protobuf.message import Message

from chaos.workload import Customer, Journal, Outcome
from pointsbridge.cardpoints.v1 import cardpoints_pb2 as cp
from pointsbridge.cardpoints.v1 import cardpoints_pb2_grpc as cp_grpc
from pointsbridge.ecommerce.v1 import ecommerce_pb2 as ec
from pointsbridge.ecommerce.v1 import ecommerce_pb2_grpc as ec_grpc

Req = TypeVar("Req", bound=Message)
Resp = TypeVar("Resp", bound=Message)

PAGE = 1000
READ_TIMEOUT = 10.0
MAX_PAGES = 10_000

REDEMPTION_PREFIX = "redemption:"
REFUND_PREFIX = "refund:"


@dataclass(frozen=True, order=True)
class Violation:
    invariant: str
    message: str

    def __str__(self) -> str:
        return f"violation {self.invariant}: {self.message}"


@dataclass
class Snapshot:
    accounts: dict[str, cp.Account] = field(default_factory=dict)
    ledgers: dict[str, list[cp.LedgerEntry]] = field(default_factory=dict)  # oldest first
    deductions: list[cp.Deduction] = field(default_factory=list)
    redemptions: list[ec.Redemption] = field(default_factory=list)  # ListRedemptions
    coupons: dict[str, list[ec.Coupon]] = field(default_factory=dict)  # ListCoupons
    exported: list[ec.ExportedRedemption] = field(default_factory=list)
    unsettled: list[ec.UnsettledOperation] = field(default_factory=list)

    @property
    def pending(self) -> int:
        """Unsettled operations, as ListUnsettled and the redemption/refund states say."""
        listed = {op.id for op in self.unsettled}
        states = {r.redemption_id for r in self.redemptions if r.state == _PENDING}
        for item in self.exported:
            states.update(f.refund_id for f in item.refunds if f.state == ec.REFUND_STATE_PENDING)
        return len(listed | states)


_PENDING = ec.REDEMPTION_STATE_PENDING
_COMPLETED = ec.REDEMPTION_STATE_COMPLETED
_FAILED = ec.REDEMPTION_STATE_FAILED


async def _read(method: grpc.aio.UnaryUnaryMultiCallable[Req, Resp], request: Req) -> Resp:
    """A read, resent a few times while a service is still coming up."""
    for attempt in range(20):
        try:
            return await method(request, timeout=READ_TIMEOUT)
        except grpc.aio.AioRpcError as error:
            retryable = error.code() in (
                grpc.StatusCode.UNAVAILABLE,
                grpc.StatusCode.DEADLINE_EXCEEDED,
            )
            if not retryable or attempt == 19:
                raise
        await asyncio.sleep(0.25)
    raise AssertionError("unreachable")


async def _pages(
    method: grpc.aio.UnaryUnaryMultiCallable[Req, Resp],
    request_for: Callable[[str], Req],
    next_token: Callable[[Resp], str],
) -> list[Resp]:
    """Every page of a listing, following next_page_token (bounded)."""
    pages: list[Resp] = []
    token = ""
    for _ in range(MAX_PAGES):
        page = await _read(method, request_for(token))
        pages.append(page)
        token = next_token(page)
        if not token:
            return pages
    raise RuntimeError(f"more than {MAX_PAGES} pages")


async def list_unsettled(channel: grpc.aio.Channel) -> list[ec.UnsettledOperation]:
    admin = ec_grpc.EcommerceAdminServiceStub(channel)
    answer = await _read(admin.ListUnsettled, ec.ListUnsettledRequest(page_size=PAGE))
    return list(answer.operations)


async def wait_settled(channel: grpc.aio.Channel, within: float) -> list[ec.UnsettledOperation]:
    """Poll ListUnsettled until it is empty or `within` seconds pass; the last answer."""
    deadline = time.monotonic() + within
    while True:
        left = await list_unsettled(channel)
        if not left or time.monotonic() > deadline:
            return left
        await asyncio.sleep(0.5)


async def take_snapshot(
    cardpoints: grpc.aio.Channel, ecommerce: grpc.aio.Channel, customers: Sequence[Customer]
) -> Snapshot:
    bank = cp_grpc.CardPointsServiceStub(cardpoints)
    shop = ec_grpc.RedemptionServiceStub(ecommerce)
    admin = ec_grpc.EcommerceAdminServiceStub(ecommerce)
    snap = Snapshot()
    for customer in customers:
        await _read_customer(snap, bank, shop, customer)
    deductions = await _pages(
        bank.ListDeductions,
        lambda token: cp.ListDeductionsRequest(page_size=PAGE, page_token=token),
        lambda page: page.next_page_token,
    )
    snap.deductions = [d for p in deductions for d in p.deductions]
    exported = await _pages(
        admin.ExportRedemptions,
        lambda token: ec.ExportRedemptionsRequest(page_size=PAGE, page_token=token),
        lambda page: page.next_page_token,
    )
    snap.exported = [r for p in exported for r in p.redemptions]
    snap.unsettled = await list_unsettled(ecommerce)
    return snap


async def _read_customer(
    snap: Snapshot,
    bank: cp_grpc.CardPointsServiceAsyncStub,
    shop: ec_grpc.RedemptionServiceAsyncStub,
    customer: Customer,
) -> None:
    """One customer's card account with its ledger, redemptions and coupons."""
    account_id, customer_id = customer.account_id, customer.customer_id
    got = await _read(bank.GetAccount, cp.GetAccountRequest(account_id=account_id))
    snap.accounts[account_id] = got.account
    ledger = await _pages(
        bank.ListTransactions,
        lambda token: cp.ListTransactionsRequest(
            account_id=account_id, page_size=PAGE, page_token=token
        ),
        lambda page: page.next_page_token,
    )
    snap.ledgers[account_id] = [e for p in ledger for e in p.transactions][::-1]
    redemptions = await _pages(
        shop.ListRedemptions,
        lambda token: ec.ListRedemptionsRequest(
            customer_id=customer_id, page_size=PAGE, page_token=token
        ),
        lambda page: page.next_page_token,
    )
    snap.redemptions.extend(r for p in redemptions for r in p.redemptions)
    coupons = await _pages(
        shop.ListCoupons,
        lambda token: ec.ListCouponsRequest(
            customer_id=customer_id, page_size=PAGE, page_token=token
        ),
        lambda page: page.next_page_token,
    )
    snap.coupons[customer_id] = [c for p in coupons for c in p.coupons]


def check(snap: Snapshot, customers: Sequence[Customer], journal: Journal) -> list[Violation]:
    found: list[Violation] = []

    def add(invariant: str, message: str) -> None:
        found.append(Violation(invariant, message))

    credited = {c.account_id: c.credited for c in customers}
    _check_bank(snap, credited, add)
    _check_shop(snap, add)
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


def _check_shop(snap: Snapshot, add: Add) -> None:
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
