"""Service layer room: the storage ports, and the unit of work that bundles them."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol, Self

from cardpoints.domain.model import (
    Account,
    AccountState,
    Deduction,
    IdempotencyRecord,
    LedgerEntry,
    Reversal,
)


class AccountRepository(Protocol):
    def get(self, account_id: str) -> Account | None: ...
    def add(self, account: Account) -> None: ...
    def debit_if_covered(self, account_id: str, points: int, now: datetime) -> int | None:
        """Take `points` from an ACTIVE account holding at least that many; the new balance."""
        ...

    def credit_within_int64(self, account_id: str, points: int, now: datetime) -> int | None:
        """Add `points` unless the balance would pass int64; the new balance."""
        ...

    def set_state(self, account_id: str, state: AccountState, now: datetime) -> None: ...
    def list(
        self, state: AccountState | None, after: str | None, limit: int
    ) -> list[tuple[str, Account]]:
        """Accounts (only those in `state`, when given) in account_id order after `after`."""
        ...


class LedgerRepository(Protocol):
    def add(self, entry: LedgerEntry) -> None: ...
    def get(self, entry_id: str) -> LedgerEntry | None: ...
    def list(
        self, account_id: str, before: int | None, limit: int
    ) -> list[tuple[int, LedgerEntry]]:
        """Entries newest first, each with its sequence number (the page cursor)."""
        ...


class DeductionRepository(Protocol):
    def add(self, deduction: Deduction) -> None: ...
    def get(self, deduction_id: str) -> Deduction | None: ...
    def get_by_request_id(self, request_id: str) -> Deduction | None: ...
    def reverse_within(self, deduction_id: str, points: int, now: datetime) -> bool:
        """Add `points` to reversed_points unless that would pass the deduction's points."""
        ...

    def add_reversal(self, reversal: Reversal) -> None: ...
    def get_reversal(self, reversal_id: str) -> Reversal | None: ...
    def list_window(
        self, start: datetime | None, end: datetime, after: int | None, limit: int
    ) -> list[tuple[int, Deduction]]:
        """Deductions created in [start, end), oldest first, with their sequence numbers."""
        ...


class IdempotencyRepository(Protocol):
    def get(self, operation: str, request_id: str) -> IdempotencyRecord | None: ...
    def add(self, record: IdempotencyRecord) -> None: ...


class UnitOfWork(Protocol):
    events: list[object]
    committed_events: list[object]

    @property
    def accounts(self) -> AccountRepository: ...
    @property
    def ledger(self) -> LedgerRepository: ...
    @property
    def deductions(self) -> DeductionRepository: ...
    @property
    def idempotency(self) -> IdempotencyRepository: ...

    def __enter__(self) -> Self: ...
    def __exit__(self, *exc: object) -> None: ...
    def commit(self) -> None: ...
