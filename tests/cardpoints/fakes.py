"""In-memory stand-ins for the card-points storage ports, for fast use-case tests."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Self

from cardpoints.domain.model import (
    Account,
    AccountState,
    Deduction,
    DeductPoints,
    IdempotencyRecord,
    LedgerEntry,
    Reversal,
)
from servicekit.validation import INT64_MAX


@dataclasses.dataclass
class Store:
    """What the fake database holds; a unit of work edits a copy and swaps it in on commit."""

    accounts: dict[str, Account] = dataclasses.field(default_factory=dict)
    ledger: list[LedgerEntry] = dataclasses.field(default_factory=list)
    deductions: dict[str, Deduction] = dataclasses.field(default_factory=dict)
    reversals: dict[str, Reversal] = dataclasses.field(default_factory=dict)
    records: dict[tuple[str, str], IdempotencyRecord] = dataclasses.field(default_factory=dict)

    def copy(self) -> Store:
        return Store(
            dict(self.accounts),
            list(self.ledger),
            dict(self.deductions),
            dict(self.reversals),
            dict(self.records),
        )


class FakeAccounts:
    def __init__(self, store: Store) -> None:
        self.store = store

    def get(self, account_id: str) -> Account | None:
        return self.store.accounts.get(account_id)

    def add(self, account: Account) -> None:
        assert account.account_id not in self.store.accounts, "unique account_id"
        self.store.accounts[account.account_id] = account

    def debit_if_covered(self, account_id: str, points: int, now: datetime) -> int | None:
        account = self.store.accounts.get(account_id)
        if account is None or account.state is not AccountState.ACTIVE or account.balance < points:
            return None
        self.store.accounts[account_id] = dataclasses.replace(
            account, balance=account.balance - points, update_time=now
        )
        return account.balance - points

    def credit_within_int64(self, account_id: str, points: int, now: datetime) -> int | None:
        account = self.store.accounts.get(account_id)
        if account is None or account.balance > INT64_MAX - points:
            return None
        self.store.accounts[account_id] = dataclasses.replace(
            account, balance=account.balance + points, update_time=now
        )
        return account.balance + points

    def set_state(self, account_id: str, state: AccountState, now: datetime) -> None:
        account = self.store.accounts[account_id]
        self.store.accounts[account_id] = dataclasses.replace(account, state=state, update_time=now)

    def list(
        self, state: AccountState | None, after: str | None, limit: int
    ) -> list[tuple[str, Account]]:
        chosen = sorted(
            (a.account_id, a)
            for a in self.store.accounts.values()
            if (state is None or a.state is state) and (after is None or a.account_id > after)
        )
        return chosen[:limit]


class FakeLedger:
    def __init__(self, store: Store) -> None:
        self.store = store

    def add(self, entry: LedgerEntry) -> None:
        assert self.get(entry.entry_id) is None, "unique entry_id"
        self.store.ledger.append(entry)

    def get(self, entry_id: str) -> LedgerEntry | None:
        return next((e for e in self.store.ledger if e.entry_id == entry_id), None)

    def list(
        self, account_id: str, before: int | None, limit: int
    ) -> list[tuple[int, LedgerEntry]]:
        numbered = [
            (seq, e)
            for seq, e in enumerate(self.store.ledger, start=1)
            if e.account_id == account_id and (before is None or seq < before)
        ]
        return list(reversed(numbered))[:limit]


class FakeDeductions:
    def __init__(self, store: Store) -> None:
        self.store = store

    def add(self, deduction: Deduction) -> None:
        assert deduction.deduction_id not in self.store.deductions, "unique deduction_id"
        assert self.get_by_request_id(deduction.request_id) is None, "unique request_id"
        self.store.deductions[deduction.deduction_id] = deduction

    def get(self, deduction_id: str) -> Deduction | None:
        found = self.store.deductions.get(deduction_id)
        if found is None:
            return None
        reversals = tuple(
            r for r in self.store.reversals.values() if r.deduction_id == deduction_id
        )
        return dataclasses.replace(found, reversals=reversals)

    def get_by_request_id(self, request_id: str) -> Deduction | None:
        for deduction in self.store.deductions.values():
            if deduction.request_id == request_id:
                return self.get(deduction.deduction_id)
        return None

    def reverse_within(self, deduction_id: str, points: int, now: datetime) -> bool:
        deduction = self.store.deductions.get(deduction_id)
        if deduction is None or deduction.reversed_points + points > deduction.points:
            return False
        self.store.deductions[deduction_id] = dataclasses.replace(
            deduction, reversed_points=deduction.reversed_points + points, update_time=now
        )
        return True

    def add_reversal(self, reversal: Reversal) -> None:
        assert reversal.reversal_id not in self.store.reversals, "unique reversal_id"
        assert all(r.request_id != reversal.request_id for r in self.store.reversals.values()), (
            "unique request_id"
        )
        self.store.reversals[reversal.reversal_id] = reversal

    def get_reversal(self, reversal_id: str) -> Reversal | None:
        return self.store.reversals.get(reversal_id)

    def list_window(
        self, start: datetime | None, end: datetime, after: int | None, limit: int
    ) -> list[tuple[int, Deduction]]:
        rows = []
        for seq, deduction in enumerate(self.store.deductions.values(), start=1):
            in_window = (start is None or deduction.create_time >= start) and (
                deduction.create_time < end
            )
            if in_window and (after is None or seq > after):
                found = self.get(deduction.deduction_id)
                assert found is not None
                rows.append((seq, found))
        return rows[:limit]


class FakeIdempotency:
    def __init__(self, store: Store) -> None:
        self.store = store

    def get(self, operation: str, request_id: str) -> IdempotencyRecord | None:
        return self.store.records.get((operation, request_id))

    def add(self, record: IdempotencyRecord) -> None:
        key = (record.operation, record.request_id)
        assert key not in self.store.records, "unique (operation, request_id)"
        self.store.records[key] = record


class FakeUnitOfWork:
    """Rolls back unless committed, like the real one: edits go to a copy of the store."""

    def __init__(self, store: Store) -> None:
        self.committed = store
        self.commits = 0
        self.events: list[object] = []
        self.committed_events: list[object] = []

    def __enter__(self) -> Self:
        self.events = []
        self.working = self.committed.copy()
        self.accounts = FakeAccounts(self.working)
        self.ledger = FakeLedger(self.working)
        self.deductions = FakeDeductions(self.working)
        self.idempotency = FakeIdempotency(self.working)
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def commit(self) -> None:
        # A copy: what the repositories write after the commit stays uncommitted.
        done = self.working.copy()
        for name in ("accounts", "ledger", "deductions", "reversals", "records"):
            setattr(self.committed, name, getattr(done, name))
        self.commits += 1
        self.committed_events += self.events
        self.events = []


# Shorthands of the use-case tests.

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def clock() -> datetime:
    return NOW


def deduct(request_id: str, points: int, per: int = 100) -> DeductPoints:
    return DeductPoints(request_id, "card-1", points, points // per, per, "shop")


def balance(store: Store) -> int:
    return store.accounts["card-1"].balance
