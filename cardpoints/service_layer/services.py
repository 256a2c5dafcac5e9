"""Card-points use cases. Each runs in one unit of work and is safe to rerun from the top."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from cardpoints.domain.errors import (
    AccountAlreadyExists,
    AccountClosed,
    AccountFrozen,
    AccountNotFound,
    DeductionNotFound,
    InsufficientPoints,
    ReversalExceedsDeduction,
)
from cardpoints.domain.events import (
    AccountOpened,
    AccountStateChanged,
    DeductionRefused,
    PointsCredited,
    PointsDeducted,
    PointsReversed,
)
from cardpoints.domain.model import (
    Account,
    AccountState,
    CreditPoints,
    Deduction,
    DeductPoints,
    EntryType,
    GetAccount,
    GetDeduction,
    IdempotencyRecord,
    LedgerEntry,
    ListAccounts,
    ListDeductions,
    ListTransactions,
    OpenAccount,
    Reversal,
    ReverseDeduction,
    SetAccountState,
    credited_balance,
)
from cardpoints.service_layer.ports import UnitOfWork
from servicekit.clock import Clock
from servicekit.errors import DomainError, InvalidField, RequestIdReused
from servicekit.ids import new_id
from servicekit.paging import Page, decode_key_token, decode_token, page_size
from servicekit.validation import Validator
from servicekit.windows import window

T = TypeVar("T")

# Refusals that depend on state that can change, so a replay must repeat them
# rather than re-decide. Validation and not-found errors store nothing (I6).
REPLAYED_REFUSALS = (AccountFrozen, AccountClosed, InsufficientPoints, ReversalExceedsDeduction)


def _replay(record: IdempotencyRecord, fingerprint: str, load: Callable[[str], T | None]) -> T:
    if record.fingerprint != fingerprint:
        raise RequestIdReused(record.request_id)
    if record.refusal_reason is not None:
        raise DomainError(
            record.refusal_message,
            reason=record.refusal_reason,
            metadata=record.refusal_metadata,
        )
    assert record.resource_id is not None
    resource = load(record.resource_id)
    assert resource is not None, f"idempotency record points at missing {record.resource_id}"
    return resource


def _store_refusal(
    uow: UnitOfWork,
    operation: str,
    request_id: str,
    fingerprint: str,
    refusal: DomainError,
    now: datetime,
) -> None:
    uow.idempotency.add(
        IdempotencyRecord(
            operation=operation,
            request_id=request_id,
            fingerprint=fingerprint,
            resource_id=None,
            refusal_reason=refusal.reason,
            refusal_message=refusal.message,
            refusal_metadata=refusal.metadata,
            create_time=now,
        )
    )
    uow.commit()


def _store_success(
    uow: UnitOfWork,
    operation: str,
    request_id: str,
    fingerprint: str,
    resource_id: str,
    now: datetime,
) -> None:
    uow.idempotency.add(
        IdempotencyRecord(
            operation=operation,
            request_id=request_id,
            fingerprint=fingerprint,
            resource_id=resource_id,
            refusal_reason=None,
            refusal_message="",
            refusal_metadata={},
            create_time=now,
        )
    )


def _account(uow: UnitOfWork, account_id: str) -> Account:
    account = uow.accounts.get(account_id)
    if account is None:
        raise AccountNotFound(account_id)
    return account


def open_account(uow: UnitOfWork, cmd: OpenAccount, clock: Clock) -> Account:
    cmd.validate()
    with uow:
        existing = uow.accounts.get(cmd.account_id)
        if existing is not None:
            if existing.holder_name != cmd.holder_name:
                raise AccountAlreadyExists(cmd.account_id)
            return existing
        now = clock()
        account = Account(cmd.account_id, cmd.holder_name, AccountState.ACTIVE, 0, now, now)
        uow.accounts.add(account)
        uow.events.append(AccountOpened(account))
        uow.commit()
        return account


def get_account(uow: UnitOfWork, cmd: GetAccount, clock: Clock) -> Account:
    v = Validator()
    v.identifier("account_id", cmd.account_id)
    v.done()
    with uow:
        return _account(uow, cmd.account_id)


def set_account_state(uow: UnitOfWork, cmd: SetAccountState, clock: Clock) -> Account:
    cmd.validate()
    assert cmd.state is not None
    with uow:
        account = _account(uow, cmd.account_id)
        if account.state is cmd.state:
            return account
        account.check_open()  # CLOSED is final
        uow.accounts.set_state(cmd.account_id, cmd.state, clock())
        updated = _account(uow, cmd.account_id)
        uow.events.append(AccountStateChanged(updated, account.state, cmd.reason))
        uow.commit()
        return updated


def credit_points(uow: UnitOfWork, cmd: CreditPoints, clock: Clock) -> tuple[LedgerEntry, Account]:
    cmd.validate()
    operation = "credit"
    with uow:
        record = uow.idempotency.get(operation, cmd.request_id)
        if record is not None:
            entry = _replay(record, cmd.fingerprint(), uow.ledger.get)
            return entry, _account(uow, cmd.account_id)
        account = _account(uow, cmd.account_id)
        now = clock()
        try:
            account.check_open()
        except REPLAYED_REFUSALS as refusal:
            _store_refusal(uow, operation, cmd.request_id, cmd.fingerprint(), refusal, now)
            raise
        credited_balance(account.balance, cmd.points)  # a clear refusal before the guard
        balance = uow.accounts.credit_within_int64(cmd.account_id, cmd.points, now)
        if balance is None:
            credited_balance(_account(uow, cmd.account_id).balance, cmd.points)
            raise AssertionError("credit guard refused a credit that fits")
        entry = LedgerEntry(
            entry_id=new_id("ent"),
            account_id=cmd.account_id,
            type=EntryType.CREDIT,
            amount=cmd.points,
            balance_after=balance,
            request_id=cmd.request_id,
            reference_id="",
            reason=cmd.reason,
            create_time=now,
        )
        uow.ledger.add(entry)
        _store_success(uow, operation, cmd.request_id, cmd.fingerprint(), entry.entry_id, now)
        uow.events.append(PointsCredited(cmd.account_id, cmd.points, entry))
        updated = _account(uow, cmd.account_id)
        uow.commit()
        return entry, updated


def deduct_points(uow: UnitOfWork, cmd: DeductPoints, clock: Clock) -> Deduction:
    """Take points exactly once per request_id: guarded decrement, ledger entry, record."""
    cmd.validate()
    operation = "deduct"
    with uow:
        record = uow.idempotency.get(operation, cmd.request_id)
        if record is not None:
            return _replay(record, cmd.fingerprint(), uow.deductions.get)
        now = clock()
        try:
            # The guarded decrement first: it only passes an ACTIVE account that holds
            # the points, so the account is read only to say why it did not pass.
            balance = uow.accounts.debit_if_covered(cmd.account_id, cmd.points, now)
            if balance is None:
                _account(uow, cmd.account_id).check_can_deduct()
                raise InsufficientPoints(cmd.account_id, cmd.points)
        except REPLAYED_REFUSALS as refusal:
            uow.events.append(DeductionRefused(cmd.account_id, refusal.reason))
            _store_refusal(uow, operation, cmd.request_id, cmd.fingerprint(), refusal, now)
            raise
        deduction = Deduction(
            deduction_id=new_id("ded"),
            request_id=cmd.request_id,
            account_id=cmd.account_id,
            points=cmd.points,
            balance_after=balance,
            reversed_points=0,
            coupon_quantity=cmd.coupon_quantity,
            points_per_coupon=cmd.points_per_coupon,
            merchant_id=cmd.merchant_id,
            create_time=now,
            update_time=now,
        )
        uow.deductions.add(deduction)
        uow.ledger.add(
            LedgerEntry(
                entry_id=new_id("ent"),
                account_id=cmd.account_id,
                type=EntryType.DEDUCTION,
                amount=-cmd.points,
                balance_after=balance,
                request_id=cmd.request_id,
                reference_id=deduction.deduction_id,
                reason=f"redeemed via {cmd.merchant_id}",
                create_time=now,
            )
        )
        _store_success(
            uow, operation, cmd.request_id, cmd.fingerprint(), deduction.deduction_id, now
        )
        uow.events.append(PointsDeducted(cmd.account_id, cmd.points, deduction))
        uow.commit()
        return deduction


def get_deduction(uow: UnitOfWork, lookup: GetDeduction, clock: Clock) -> Deduction:
    v = Validator()
    if lookup.deduction_id:
        v.request_id("deduction_id", lookup.deduction_id)
    elif lookup.request_id:
        v.request_id("request_id", lookup.request_id)
    else:
        v.add("lookup", "set deduction_id or request_id")
    v.done()
    with uow:
        if lookup.deduction_id:
            found = uow.deductions.get(lookup.deduction_id)
        else:
            found = uow.deductions.get_by_request_id(lookup.request_id)
        if found is None:
            raise DeductionNotFound(lookup.deduction_id or lookup.request_id)
        return found


def reverse_deduction(
    uow: UnitOfWork, cmd: ReverseDeduction, clock: Clock
) -> tuple[Reversal, Deduction]:
    """Give back part of a deduction exactly once per request_id, never more than it took."""
    cmd.validate()
    operation = "reverse"
    with uow:
        record = uow.idempotency.get(operation, cmd.request_id)
        if record is not None:
            reversal = _replay(record, cmd.fingerprint(), uow.deductions.get_reversal)
            deduction = uow.deductions.get(reversal.deduction_id)
            assert deduction is not None
            return reversal, deduction
        deduction = uow.deductions.get_by_request_id(cmd.deduction_request_id)
        if deduction is None:
            raise DeductionNotFound(cmd.deduction_request_id)
        account = _account(uow, deduction.account_id)
        now = clock()
        try:
            account.check_open()
            if not uow.deductions.reverse_within(deduction.deduction_id, cmd.points, now):
                fresh = uow.deductions.get(deduction.deduction_id)
                assert fresh is not None
                raise ReversalExceedsDeduction(deduction.deduction_id, cmd.points, fresh.remaining)
        except REPLAYED_REFUSALS as refusal:
            _store_refusal(uow, operation, cmd.request_id, cmd.fingerprint(), refusal, now)
            raise
        balance = uow.accounts.credit_within_int64(deduction.account_id, cmd.points, now)
        if balance is None:
            raise InvalidField("the reversal would overflow the balance")
        reversal = Reversal(
            reversal_id=new_id("rev"),
            request_id=cmd.request_id,
            deduction_id=deduction.deduction_id,
            deduction_request_id=deduction.request_id,
            points=cmd.points,
            balance_after=balance,
            create_time=now,
        )
        uow.deductions.add_reversal(reversal)
        uow.ledger.add(
            LedgerEntry(
                entry_id=new_id("ent"),
                account_id=deduction.account_id,
                type=EntryType.REVERSAL,
                amount=cmd.points,
                balance_after=balance,
                request_id=cmd.request_id,
                reference_id=reversal.reversal_id,
                reason=cmd.reason,
                create_time=now,
            )
        )
        _store_success(uow, operation, cmd.request_id, cmd.fingerprint(), reversal.reversal_id, now)
        uow.events.append(PointsReversed(deduction.account_id, cmd.points, reversal))
        updated = uow.deductions.get(deduction.deduction_id)
        assert updated is not None
        uow.commit()
        return reversal, updated


def list_transactions(uow: UnitOfWork, cmd: ListTransactions, clock: Clock) -> Page[LedgerEntry]:
    v = Validator()
    v.identifier("account_id", cmd.account_id)
    limit = page_size(v, "page_size", cmd.page_size)
    before = decode_token(v, "page_token", cmd.page_token)
    v.done()
    with uow:
        _account(uow, cmd.account_id)
        return Page.of(uow.ledger.list(cmd.account_id, before, limit + 1), limit)


def list_accounts(uow: UnitOfWork, cmd: ListAccounts, clock: Clock) -> Page[Account]:
    """Accounts in account_id order, only those in the state named, when one is."""
    v = Validator()
    only = v.state("state", cmd.state, AccountState)
    limit = page_size(v, "page_size", cmd.page_size)
    after = decode_key_token(v, "page_token", cmd.page_token)
    v.done()
    with uow:
        return Page.of(uow.accounts.list(only, after, limit + 1), limit)


def list_deductions(uow: UnitOfWork, cmd: ListDeductions, clock: Clock) -> Page[Deduction]:
    """Deductions created in [start, end), oldest first; no end means now."""
    v = Validator()
    limit = page_size(v, "page_size", cmd.page_size)
    after = decode_token(v, "page_token", cmd.page_token)
    span = window(v, cmd.start, cmd.end, clock())
    v.done()
    if span.empty:
        return Page([], "")  # a window that opens after now holds nothing yet
    with uow:
        return Page.of(uow.deductions.list_window(span.start, span.end, after, limit + 1), limit)
