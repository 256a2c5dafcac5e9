"""Card-points use cases on in-memory fakes: the rules, fast and without a server."""

from __future__ import annotations

import pytest

from cardpoints.domain.errors import (
    AccountClosed,
    AccountFrozen,
    InsufficientPoints,
    PointsMismatch,
    ReversalExceedsDeduction,
)
from cardpoints.domain.model import (
    AccountState,
    CreditPoints,
    DeductPoints,
    ListTransactions,
    ReverseDeduction,
    SetAccountState,
)
from cardpoints.service_layer import services
from servicekit.errors import DomainError, InvalidField, RequestIdReused
from tests.cardpoints.fakes import FakeUnitOfWork, Store, balance, clock, deduct


def test_deduct_moves_points_once_and_replays(store: Store) -> None:
    first = services.deduct_points(FakeUnitOfWork(store), deduct("r1", 300), clock)
    again = services.deduct_points(FakeUnitOfWork(store), deduct("r1", 300), clock)
    assert again == first
    assert balance(store) == 700
    assert [e.amount for e in store.ledger] == [1000, -300]
    assert sum(e.amount for e in store.ledger) == balance(store)


def test_reuse_with_other_parameters_is_refused(store: Store) -> None:
    services.deduct_points(FakeUnitOfWork(store), deduct("r1", 300), clock)
    with pytest.raises(RequestIdReused):
        services.deduct_points(FakeUnitOfWork(store), deduct("r1", 400), clock)
    assert balance(store) == 700


def test_insufficient_points_is_recorded_and_replayed(store: Store) -> None:
    with pytest.raises(InsufficientPoints):
        services.deduct_points(FakeUnitOfWork(store), deduct("r-big", 2000), clock)
    services.credit_points(FakeUnitOfWork(store), CreditPoints("top", "card-1", 5000, ""), clock)
    with pytest.raises(DomainError) as replay:
        services.deduct_points(FakeUnitOfWork(store), deduct("r-big", 2000), clock)
    assert replay.value.reason == "INSUFFICIENT_POINTS"
    assert balance(store) == 6000
    assert sum(e.amount for e in store.ledger) == balance(store)


def test_validation_failures_store_nothing(store: Store) -> None:
    uow = FakeUnitOfWork(store)
    with pytest.raises(InvalidField) as bad:
        services.deduct_points(uow, DeductPoints("", "card-1", -1, 0, 0, ""), clock)
    fields = [v.field for v in bad.value.violations]
    assert fields == ["request_id", "points", "coupon_quantity", "points_per_coupon", "merchant_id"]
    with pytest.raises(PointsMismatch):
        services.deduct_points(uow, DeductPoints("r", "card-1", 299, 3, 100, "shop"), clock)
    assert uow.commits == 0
    assert len(store.records) == 1  # only the seed credit


def test_frozen_and_closed_accounts(store: Store) -> None:
    services.set_account_state(
        FakeUnitOfWork(store), SetAccountState("card-1", AccountState.FROZEN, ""), clock
    )
    with pytest.raises(AccountFrozen):
        services.deduct_points(FakeUnitOfWork(store), deduct("r1", 100), clock)
    # Frozen accounts still receive credits.
    services.credit_points(FakeUnitOfWork(store), CreditPoints("c2", "card-1", 5, ""), clock)
    services.set_account_state(
        FakeUnitOfWork(store), SetAccountState("card-1", AccountState.CLOSED, ""), clock
    )
    with pytest.raises(AccountClosed):
        services.credit_points(FakeUnitOfWork(store), CreditPoints("c3", "card-1", 5, ""), clock)
    with pytest.raises(AccountClosed):
        services.set_account_state(
            FakeUnitOfWork(store), SetAccountState("card-1", AccountState.ACTIVE, ""), clock
        )
    assert balance(store) == 1005


def test_reversals_are_partial_idempotent_and_bounded(store: Store) -> None:
    services.deduct_points(FakeUnitOfWork(store), deduct("r1", 600), clock)
    rev, ded = services.reverse_deduction(
        FakeUnitOfWork(store), ReverseDeduction("v1", "r1", 200, ""), clock
    )
    assert (rev.points, ded.reversed_points, ded.remaining) == (200, 200, 400)
    again, _ = services.reverse_deduction(
        FakeUnitOfWork(store), ReverseDeduction("v1", "r1", 200, ""), clock
    )
    assert again == rev
    with pytest.raises(ReversalExceedsDeduction):
        services.reverse_deduction(
            FakeUnitOfWork(store), ReverseDeduction("v2", "r1", 401, ""), clock
        )
    assert balance(store) == 600
    assert sum(e.amount for e in store.ledger) == balance(store)


def test_credit_that_would_overflow_is_refused(store: Store) -> None:
    with pytest.raises(InvalidField):
        services.credit_points(
            FakeUnitOfWork(store), CreditPoints("big", "card-1", 2**63 - 1, ""), clock
        )
    assert balance(store) == 1000
    assert ("credit", "big") not in store.records


def test_paging_walks_every_entry_once(store: Store) -> None:
    for i in range(9):
        services.credit_points(FakeUnitOfWork(store), CreditPoints(f"c{i}", "card-1", 1, ""), clock)
    seen, token = [], ""
    while True:
        cmd = ListTransactions("card-1", 4, token)
        page = services.list_transactions(FakeUnitOfWork(store), cmd, clock)
        seen += page.items
        token = page.next_page_token
        if not token:
            break
    assert len(seen) == 10
    assert len({e.entry_id for e in seen}) == 10
