"""Card-points domain objects for the storage contract, and shorthands over a store."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from cardpoints.domain.model import (
    Account,
    AccountState,
    Deduction,
    EntryType,
    IdempotencyRecord,
    LedgerEntry,
    Reversal,
)
from tests.contract.conftest import CardpointsStore

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
LATER = T0 + timedelta(minutes=5)
_ids = itertools.count(1)


def account(account_id: str = "card-1", balance: int = 1000, **changes: object) -> Account:
    fields: dict[str, object] = {
        "account_id": account_id,
        "holder_name": "Li Lei",
        "state": AccountState.ACTIVE,
        "balance": balance,
        "create_time": T0,
        "update_time": T0,
        **changes,
    }
    return Account(**fields)  # type: ignore[arg-type]


def entry(account_id: str = "card-1", amount: int = 10, entry_id: str = "") -> LedgerEntry:
    return LedgerEntry(
        entry_id=entry_id or f"e{next(_ids)}",
        account_id=account_id,
        type=EntryType.CREDIT if amount > 0 else EntryType.DEDUCTION,
        amount=amount,
        balance_after=1000 + amount,
        request_id=f"req-{amount}",
        reference_id="",
        reason="spring bonus",
        create_time=T0,
    )


def deduction(request_id: str = "r1", points: int = 300, at: datetime = T0) -> Deduction:
    return Deduction(
        deduction_id=f"d-{request_id}",
        request_id=request_id,
        account_id="card-1",
        points=points,
        balance_after=1000 - points,
        reversed_points=0,
        coupon_quantity=3,
        points_per_coupon=points // 3,
        merchant_id="shop",
        create_time=at,
        update_time=at,
    )


def reversal(request_id: str, of: Deduction, points: int) -> Reversal:
    return Reversal(
        reversal_id=f"v-{request_id}",
        request_id=request_id,
        deduction_id=of.deduction_id,
        deduction_request_id=of.request_id,
        points=points,
        balance_after=700 + points,
        create_time=LATER,
    )


def record(
    operation: str = "deduct", request_id: str = "r1", **changes: object
) -> IdempotencyRecord:
    fields: dict[str, object] = {
        "operation": operation,
        "request_id": request_id,
        "fingerprint": "card-1|300|3|100|shop",
        "resource_id": "d-r1",
        "refusal_reason": None,
        "refusal_message": "",
        "refusal_metadata": {},
        "create_time": T0,
        **changes,
    }
    return IdempotencyRecord(**fields)  # type: ignore[arg-type]


def with_account(store: CardpointsStore, *accounts: Account) -> None:
    with store.uow() as uow:
        for one in accounts or (account(),):
            uow.accounts.add(one)
        uow.commit()


def balance(store: CardpointsStore, account_id: str = "card-1") -> int:
    with store.uow() as uow:
        found = uow.accounts.get(account_id)
        assert found is not None
        return found.balance
