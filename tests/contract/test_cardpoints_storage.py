"""The card-points storage contract: what the use cases rely on, held by every store."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from cardpoints.domain.events import AccountOpened
from cardpoints.domain.model import AccountState, Deduction, LedgerEntry
from servicekit.validation import INT64_MAX
from tests.contract.cardpoints_rows import (
    LATER,
    T0,
    account,
    balance,
    deduction,
    entry,
    record,
    reversal,
    with_account,
)
from tests.contract.conftest import CardpointsStore

# --- accounts ---------------------------------------------------------------


def test_an_account_reads_back_as_it_was_added(cardpoints: CardpointsStore) -> None:
    with_account(cardpoints)
    with cardpoints.uow() as uow:
        assert uow.accounts.get("card-1") == account()
        assert uow.accounts.get("nobody") is None


def test_a_second_account_of_one_id_is_refused(cardpoints: CardpointsStore) -> None:
    with_account(cardpoints)
    with pytest.raises(cardpoints.refusal), cardpoints.uow() as uow:
        uow.accounts.add(account(holder_name="Han Meimei"))
    with cardpoints.uow() as uow:
        assert uow.accounts.get("card-1") == account()


def test_a_debit_takes_points_only_from_an_active_account_that_holds_them(
    cardpoints: CardpointsStore,
) -> None:
    with_account(cardpoints)
    with cardpoints.uow() as uow:
        assert uow.accounts.debit_if_covered("card-1", 300, LATER) == 700
        assert uow.accounts.debit_if_covered("card-1", 701, LATER) is None
        assert uow.accounts.debit_if_covered("card-1", 700, LATER) == 0
        assert uow.accounts.debit_if_covered("card-1", 1, LATER) is None
        uow.commit()
    with cardpoints.uow() as uow:
        assert uow.accounts.get("card-1") == account(balance=0, update_time=LATER)


@pytest.mark.parametrize("state", [AccountState.FROZEN, AccountState.CLOSED])
def test_a_debit_of_an_account_that_is_not_active_is_refused(
    cardpoints: CardpointsStore, state: AccountState
) -> None:
    with_account(cardpoints, account(state=state))
    with cardpoints.uow() as uow:
        assert uow.accounts.debit_if_covered("card-1", 1, LATER) is None
        uow.commit()
    assert balance(cardpoints) == 1000


def test_a_credit_stops_at_int64(cardpoints: CardpointsStore) -> None:
    with_account(cardpoints, account(state=AccountState.FROZEN))  # frozen accounts are credited
    with cardpoints.uow() as uow:
        assert uow.accounts.credit_within_int64("card-1", 5, LATER) == 1005
        assert uow.accounts.credit_within_int64("card-1", INT64_MAX - 1004, LATER) is None
        assert uow.accounts.credit_within_int64("card-1", INT64_MAX - 1005, LATER) == INT64_MAX
        uow.commit()
    with cardpoints.uow() as uow:
        assert uow.accounts.get("card-1") == account(
            balance=INT64_MAX, state=AccountState.FROZEN, update_time=LATER
        )


def test_a_state_change_is_stored(cardpoints: CardpointsStore) -> None:
    with_account(cardpoints)
    with cardpoints.uow() as uow:
        uow.accounts.set_state("card-1", AccountState.CLOSED, LATER)
        uow.commit()
    with cardpoints.uow() as uow:
        assert uow.accounts.get("card-1") == account(state=AccountState.CLOSED, update_time=LATER)


def test_accounts_list_in_id_order_after_a_key_filtered_by_state(
    cardpoints: CardpointsStore,
) -> None:
    ids = [f"card-{i:02d}" for i in range(7)]
    with_account(
        cardpoints,
        *(
            account(i, state=AccountState.FROZEN if n % 3 == 0 else AccountState.ACTIVE)
            for n, i in reversed(list(enumerate(ids)))
        ),
    )
    with cardpoints.uow() as uow:
        every = uow.accounts.list(None, None, 100)
        assert [key for key, _ in every] == ids
        assert [a.account_id for _, a in every] == ids
        assert [k for k, _ in uow.accounts.list(None, "card-02", 3)] == ids[3:6]
        assert [k for k, _ in uow.accounts.list(AccountState.FROZEN, None, 100)] == ids[::3]
        frozen_after = uow.accounts.list(AccountState.FROZEN, "card-00", 1)
        assert [k for k, _ in frozen_after] == ["card-03"]
        assert uow.accounts.list(AccountState.CLOSED, None, 100) == []


# --- the ledger ---------------------------------------------------------------


def test_ledger_entries_read_back_and_page_newest_first_per_account(
    cardpoints: CardpointsStore,
) -> None:
    with_account(cardpoints, account("card-1"), account("card-2"))
    mine = [entry("card-1", amount) for amount in (1, 2, 3, 4, 5)]
    with cardpoints.uow() as uow:
        for one in mine:
            uow.ledger.add(one)
            uow.ledger.add(entry("card-2", 100))  # interleaved: never in card-1's pages
        uow.commit()
    with cardpoints.uow() as uow:
        assert uow.ledger.get(mine[2].entry_id) == mine[2]
        assert uow.ledger.get("none") is None
        seen: list[LedgerEntry] = []
        before = None
        for _ in range(10):
            page = uow.ledger.list("card-1", before, 2)
            if not page:
                break
            seen += [e for _, e in page]
            before = page[-1][0]
        assert seen == mine[::-1]
        assert uow.ledger.list("nobody", None, 10) == []


def test_a_ledger_entry_id_is_unique(cardpoints: CardpointsStore) -> None:
    with_account(cardpoints)
    with pytest.raises(cardpoints.refusal), cardpoints.uow() as uow:
        uow.ledger.add(entry(entry_id="same"))
        uow.ledger.add(entry(entry_id="same", amount=7))


# --- deductions and reversals ---------------------------------------------------------


def test_a_deduction_reads_back_by_id_and_by_request_id(cardpoints: CardpointsStore) -> None:
    with_account(cardpoints)
    made = deduction()
    with cardpoints.uow() as uow:
        uow.deductions.add(made)
        uow.commit()
    with cardpoints.uow() as uow:
        assert uow.deductions.get("d-r1") == made
        assert uow.deductions.get_by_request_id("r1") == made
        assert uow.deductions.get("none") is None
        assert uow.deductions.get_by_request_id("none") is None


def test_a_second_deduction_of_one_request_id_is_refused(cardpoints: CardpointsStore) -> None:
    with_account(cardpoints)
    with cardpoints.uow() as uow:
        uow.deductions.add(deduction())
        uow.commit()
    other = deduction()
    with pytest.raises(cardpoints.refusal), cardpoints.uow() as uow:
        uow.deductions.add(dataclasses.replace(other, deduction_id="d-other"))
    with cardpoints.uow() as uow:
        assert uow.deductions.get("d-other") is None


def test_reversals_never_pass_the_deduction_and_read_back_in_order(
    cardpoints: CardpointsStore,
) -> None:
    with_account(cardpoints)
    made = deduction(points=300)
    first, rest = reversal("v1", made, 100), reversal("v2", made, 200)
    with cardpoints.uow() as uow:
        uow.deductions.add(made)
        assert uow.deductions.reverse_within("d-r1", 100, LATER)
        uow.deductions.add_reversal(first)
        assert not uow.deductions.reverse_within("d-r1", 201, LATER)
        assert uow.deductions.reverse_within("d-r1", 200, LATER)
        uow.deductions.add_reversal(rest)
        assert not uow.deductions.reverse_within("d-r1", 1, LATER)
        uow.commit()
    with cardpoints.uow() as uow:
        expected = dataclasses.replace(
            made, reversed_points=300, update_time=LATER, reversals=(first, rest)
        )
        assert uow.deductions.get("d-r1") == expected
        assert uow.deductions.get_by_request_id("r1") == expected
        assert uow.deductions.get_reversal("v-v2") == rest
        assert uow.deductions.get_reversal("none") is None


def test_a_second_reversal_of_one_request_id_is_refused(cardpoints: CardpointsStore) -> None:
    with_account(cardpoints)
    made = deduction()
    with cardpoints.uow() as uow:
        uow.deductions.add(made)
        uow.deductions.add_reversal(reversal("v1", made, 10))
        uow.commit()
    with pytest.raises(cardpoints.refusal), cardpoints.uow() as uow:
        uow.deductions.add_reversal(dataclasses.replace(reversal("v1", made, 10), reversal_id="x"))


def test_deductions_list_oldest_first_in_a_half_open_window(
    cardpoints: CardpointsStore,
) -> None:
    with_account(cardpoints)
    made = [deduction(f"w{i}", 30, T0 + timedelta(minutes=i)) for i in range(6)]
    back = reversal("v1", made[2], 10)
    with cardpoints.uow() as uow:
        for one in made:
            uow.deductions.add(one)
        uow.deductions.reverse_within(made[2].deduction_id, 10, LATER)
        uow.deductions.add_reversal(back)
        uow.commit()
    start, end = T0 + timedelta(minutes=1), T0 + timedelta(minutes=5)
    with cardpoints.uow() as uow:
        seen: list[Deduction] = []
        after = None
        for _ in range(10):
            page = uow.deductions.list_window(start, end, after, 2)
            if not page:
                break
            seen += [d for _, d in page]
            after = page[-1][0]
        assert [d.request_id for d in seen] == ["w1", "w2", "w3", "w4"]
        assert seen[1].reversals == (back,)
        assert seen[1].reversed_points == 10
        everything = uow.deductions.list_window(None, end, None, 100)
        assert [d.request_id for _, d in everything] == ["w0", "w1", "w2", "w3", "w4"]


# --- idempotency records ---------------------------------------------------------------


def test_an_idempotency_record_reads_back_refusal_and_all(cardpoints: CardpointsStore) -> None:
    refused = record(
        request_id="r-big",
        resource_id=None,
        refusal_reason="INSUFFICIENT_POINTS",
        refusal_message="balance 100 < 1000",
        refusal_metadata={"account_id": "card-1", "balance": "100"},
    )
    with cardpoints.uow() as uow:
        uow.idempotency.add(record())
        uow.idempotency.add(refused)
        uow.idempotency.add(record("credit", "r1", resource_id="e1"))  # another operation
        uow.commit()
    with cardpoints.uow() as uow:
        assert uow.idempotency.get("deduct", "r1") == record()
        assert uow.idempotency.get("deduct", "r-big") == refused
        assert uow.idempotency.get("credit", "r1") == record("credit", "r1", resource_id="e1")
        assert uow.idempotency.get("reverse", "r1") is None


def test_a_second_record_of_one_operation_and_request_id_is_refused(
    cardpoints: CardpointsStore,
) -> None:
    with cardpoints.uow() as uow:
        uow.idempotency.add(record())
        uow.commit()
    with pytest.raises(cardpoints.refusal), cardpoints.uow() as uow:
        uow.idempotency.add(record(fingerprint="other"))
    with cardpoints.uow() as uow:
        assert uow.idempotency.get("deduct", "r1") == record()


# --- the unit of work ---------------------------------------------------------------


def test_what_was_not_committed_is_rolled_back(cardpoints: CardpointsStore) -> None:
    with_account(cardpoints)
    with cardpoints.uow() as uow:
        uow.accounts.add(account("card-2"))
        assert uow.accounts.debit_if_covered("card-1", 400, LATER) == 600
        uow.ledger.add(entry(amount=-400))
        assert uow.accounts.get("card-1") == account(balance=600, update_time=LATER)
    with pytest.raises(RuntimeError), cardpoints.uow() as uow:
        uow.idempotency.add(record())
        raise RuntimeError("the use case failed")
    with cardpoints.uow() as uow:
        assert uow.accounts.get("card-1") == account()
        assert uow.accounts.get("card-2") is None
        assert uow.ledger.list("card-1", None, 10) == []
        assert uow.idempotency.get("deduct", "r1") is None


def test_what_follows_a_commit_is_rolled_back_unless_committed(
    cardpoints: CardpointsStore,
) -> None:
    with cardpoints.uow() as uow:
        uow.accounts.add(account())
        uow.commit()
        uow.accounts.add(account("card-2"))
    with cardpoints.uow() as uow:
        assert [key for key, _ in uow.accounts.list(None, None, 10)] == ["card-1"]


def test_only_committed_events_are_committed_events(cardpoints: CardpointsStore) -> None:
    opened = AccountOpened(account())
    uow = cardpoints.uow()
    with uow:
        uow.accounts.add(account())
        uow.events.append(opened)
        assert uow.committed_events == []
        uow.commit()
        assert uow.committed_events == [opened]
        assert uow.events == []
    with uow:  # the same unit of work, run again, rolled back this time
        uow.events.append(AccountOpened(account("card-2")))
    assert uow.committed_events == [opened]
