"""Card-points use cases on in-memory fakes: accounts, deductions, reversals and listings.

What these check once held only through a server on both databases; the storage
contract (tests/contract/) proves the fakes behave as SQLite and PostgreSQL do, and
tests/cardpoints/test_rpcs.py keeps what only a server shows: codes, fields, races.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from cardpoints.domain.errors import (
    AccountAlreadyExists,
    AccountClosed,
    AccountFrozen,
    AccountNotFound,
    DeductionNotFound,
    PointsMismatch,
    ReversalExceedsDeduction,
)
from cardpoints.domain.model import (
    AccountState,
    CreditPoints,
    Deduction,
    DeductionState,
    DeductPoints,
    EntryType,
    GetAccount,
    GetDeduction,
    ListAccounts,
    ListDeductions,
    ListTransactions,
    OpenAccount,
    Reversal,
    ReverseDeduction,
    SetAccountState,
)
from cardpoints.service_layer import services
from servicekit import paging
from servicekit.errors import DomainError, InvalidField, RequestIdReused
from tests.cardpoints.fakes import NOW, FakeUnitOfWork, Store, balance, clock, deduct

INT64_MAX = 2**63 - 1


def uow(store: Store) -> FakeUnitOfWork:
    return FakeUnitOfWork(store)


def conserved(store: Store, account_id: str = "card-1") -> bool:
    """I2: the signed ledger of the account sums to its balance, which is never negative."""
    total = sum(e.amount for e in store.ledger if e.account_id == account_id)
    return total == store.accounts[account_id].balance >= 0


def state(store: Store, to: AccountState, account_id: str = "card-1") -> None:
    services.set_account_state(uow(store), SetAccountState(account_id, to, ""), clock)


# --- accounts ---------------------------------------------------------------


def test_open_account_is_idempotent_and_refuses_another_holder() -> None:
    store = Store()
    account = services.open_account(uow(store), OpenAccount("card-1", "Li Lei"), clock)
    assert (account.state, account.balance) == (AccountState.ACTIVE, 0)
    again = services.open_account(uow(store), OpenAccount("card-1", "Li Lei"), clock)
    assert again.create_time == account.create_time
    with pytest.raises(AccountAlreadyExists) as refused:
        services.open_account(uow(store), OpenAccount("card-1", "Han Meimei"), clock)
    assert refused.value.reason == "ACCOUNT_ALREADY_EXISTS"
    assert store.accounts["card-1"].holder_name == "Li Lei"


def test_an_unknown_account_is_not_found(store: Store) -> None:
    with pytest.raises(AccountNotFound) as missing:
        services.get_account(uow(store), GetAccount("nobody"), clock)
    assert missing.value.metadata == {"account_id": "nobody"}


def test_a_credit_replays_its_entry_and_reuse_is_refused(store: Store) -> None:
    credit = CreditPoints("credit-1", "card-1", 500, "spring bonus")
    first, _ = services.credit_points(uow(store), credit, clock)
    replay, _ = services.credit_points(uow(store), credit, clock)
    assert replay.entry_id == first.entry_id
    with pytest.raises(RequestIdReused):
        services.credit_points(uow(store), CreditPoints("credit-1", "card-1", 501, ""), clock)
    assert balance(store) == 1500
    assert conserved(store)


def test_a_refused_overflow_leaves_its_request_id_free(store: Store) -> None:
    with pytest.raises(InvalidField) as bad:
        services.credit_points(uow(store), CreditPoints("big", "card-1", INT64_MAX, ""), clock)
    assert [v.field for v in bad.value.violations] == ["points"]
    services.credit_points(uow(store), CreditPoints("big", "card-1", 5, ""), clock)
    assert balance(store) == 1005


def test_a_frozen_refusal_is_replayed_after_unfreezing(store: Store) -> None:
    state(store, AccountState.FROZEN)
    with pytest.raises(AccountFrozen):
        services.deduct_points(uow(store), deduct("d-frozen", 100), clock)
    state(store, AccountState.ACTIVE)
    with pytest.raises(DomainError) as replay:
        services.deduct_points(uow(store), deduct("d-frozen", 100), clock)
    assert replay.value.reason == "ACCOUNT_FROZEN"
    services.deduct_points(uow(store), deduct("d-active", 100), clock)
    state(store, AccountState.CLOSED)
    with pytest.raises(AccountClosed):
        services.deduct_points(uow(store), deduct("d-closed", 100), clock)
    assert balance(store) == 900
    assert conserved(store)


# --- deductions ---------------------------------------------------------------


def test_a_deduction_writes_its_ledger_entry_and_replays(store: Store) -> None:
    made = services.deduct_points(uow(store), deduct("r1", 600, per=200), clock)
    assert (made.points, made.balance_after, made.state) == (600, 400, DeductionState.COMPLETED)
    assert (made.coupon_quantity, made.points_per_coupon) == (3, 200)
    assert services.deduct_points(uow(store), deduct("r1", 600, per=200), clock) == made
    newest = store.ledger[-1]
    assert (newest.type, newest.amount, newest.balance_after) == (EntryType.DEDUCTION, -600, 400)
    assert newest.reference_id == made.deduction_id
    assert [e.type for e in store.ledger] == [EntryType.CREDIT, EntryType.DEDUCTION]


def test_any_other_parameter_under_a_used_request_id_is_refused(store: Store) -> None:
    services.deduct_points(uow(store), deduct("r1", 300), clock)
    for changed in (
        deduct("r1", 400),
        DeductPoints("r1", "card-1", 300, 1, 300, "shop"),
        DeductPoints("r1", "card-1", 300, 3, 100, "another-shop"),
    ):
        with pytest.raises(RequestIdReused):
            services.deduct_points(uow(store), changed, clock)
    assert balance(store) == 700


def test_points_that_do_not_match_the_coupons_are_refused(store: Store) -> None:
    with pytest.raises(PointsMismatch) as mismatch:
        services.deduct_points(uow(store), DeductPoints("r", "card-1", 2999, 3, 1000, "s"), clock)
    assert mismatch.value.metadata["expected_points"] == "3000"
    assert [v.field for v in mismatch.value.violations] == ["points"]
    with pytest.raises(PointsMismatch) as overflow:
        services.deduct_points(
            uow(store), DeductPoints("r", "card-1", INT64_MAX, 2**62, 4, "s"), clock
        )
    assert overflow.value.violations
    assert balance(store) == 1000
    assert len(store.records) == 1  # only the seed credit


def test_a_deduction_is_found_by_id_or_request_id(store: Store) -> None:
    made = services.deduct_points(uow(store), deduct("r-get", 400), clock)
    by_id = services.get_deduction(uow(store), GetDeduction(made.deduction_id), clock)
    by_request = services.get_deduction(uow(store), GetDeduction(request_id="r-get"), clock)
    assert by_id == by_request == made
    with pytest.raises(DeductionNotFound):
        services.get_deduction(uow(store), GetDeduction(request_id="r-none"), clock)
    with pytest.raises(InvalidField) as empty:
        services.get_deduction(uow(store), GetDeduction(), clock)
    assert [v.field for v in empty.value.violations] == ["lookup"]


# --- reversals ---------------------------------------------------------------


def test_reversals_move_the_deduction_through_its_states(store: Store) -> None:
    services.deduct_points(uow(store), deduct("r-rev", 900, per=300), clock)

    def reverse(request_id: str, points: int, of: str = "r-rev") -> tuple[Reversal, Deduction]:
        return services.reverse_deduction(
            uow(store), ReverseDeduction(request_id, of, points, "refund"), clock
        )

    first, partly = reverse("rev-1", 300)
    assert (first.balance_after, partly.state) == (400, DeductionState.PARTIALLY_REVERSED)
    with pytest.raises(ReversalExceedsDeduction) as too_much:
        reverse("rev-2", 601)
    assert too_much.value.metadata["remaining"] == "600"
    _, fully = reverse("rev-3", 600)
    assert fully.state is DeductionState.REVERSED
    assert [r.request_id for r in fully.reversals] == ["rev-1", "rev-3"]
    with pytest.raises(RequestIdReused):
        reverse("rev-1", 5)
    with pytest.raises(DeductionNotFound):
        reverse("rev-9", 1, of="nope")
    assert balance(store) == 1000
    assert conserved(store)


# --- listings ---------------------------------------------------------------


def test_transactions_list_newest_first_and_check_their_input(store: Store) -> None:
    for i in range(1, 16):
        services.credit_points(uow(store), CreditPoints(f"c-{i}", "card-1", i, ""), clock)
    amounts: list[int] = []
    token = ""
    for _ in range(10):
        page = services.list_transactions(uow(store), ListTransactions("card-1", 7, token), clock)
        amounts += [e.amount for e in page.items]
        token = page.next_page_token
        if not token:
            break
    assert amounts == [*range(15, 0, -1), 1000]
    with pytest.raises(InvalidField) as bad:
        services.list_transactions(uow(store), ListTransactions("card-1", 0, "garbage"), clock)
    assert [v.field for v in bad.value.violations] == ["page_token"]
    with pytest.raises(AccountNotFound):
        services.list_transactions(uow(store), ListTransactions("nobody", 0, ""), clock)


def test_accounts_list_in_id_order_filtered_by_state() -> None:
    store = Store()
    ids = [f"card-{i:02d}" for i in range(12)]
    for account_id in reversed(ids):
        services.open_account(uow(store), OpenAccount(account_id, "Li Lei"), clock)
    for account_id in ids[::3]:
        state(store, AccountState.FROZEN, account_id)

    def listed(only: str = "", size: int = 5) -> list[str]:
        seen: list[str] = []
        token = ""
        for _ in range(10):
            page = services.list_accounts(uow(store), ListAccounts(only, size, token), clock)
            assert len(page.items) <= size
            seen += [a.account_id for a in page.items]
            token = page.next_page_token
            if not token:
                return seen
        raise AssertionError("paging did not end")

    assert listed() == ids
    assert listed(size=12) == ids
    assert listed("FROZEN", size=2) == ids[::3]
    assert listed("ACTIVE") == [i for i in ids if i not in ids[::3]]
    assert listed("CLOSED") == []
    with pytest.raises(InvalidField) as bad:
        services.list_accounts(uow(store), ListAccounts("MELTED", 1001, "garbage"), clock)
    assert [v.field for v in bad.value.violations] == ["state", "page_size", "page_token"]
    with pytest.raises(InvalidField) as wrong:  # a ledger token is not an account key
        services.list_accounts(uow(store), ListAccounts("", 0, paging.encode_token(3)), clock)
    assert [v.field for v in wrong.value.violations] == ["page_token"]


def test_deductions_list_in_a_window_with_their_reversals(store: Store) -> None:
    before = NOW - timedelta(seconds=1)
    for i in range(5):
        services.deduct_points(uow(store), deduct(f"w-{i}", 100), clock)
    services.reverse_deduction(uow(store), ReverseDeduction("w-rev", "w-2", 40, ""), clock)

    def a_moment_later() -> datetime:
        return NOW + timedelta(seconds=1)

    seen = []
    token = ""
    for _ in range(10):
        page = services.list_deductions(
            uow(store), ListDeductions(before, None, 2, token), a_moment_later
        )
        seen += page.items
        token = page.next_page_token
        if not token:
            break
    assert [d.request_id for d in seen] == [f"w-{i}" for i in range(5)]
    assert [r.points for r in seen[2].reversals] == [40]
    later = NOW + timedelta(hours=1)
    assert (
        services.list_deductions(uow(store), ListDeductions(later, None, 0, ""), clock).items == []
    )
    with pytest.raises(InvalidField) as bad:
        services.list_deductions(uow(store), ListDeductions(before, before, 0, ""), clock)
    assert [v.field for v in bad.value.violations] == ["end_time"]
