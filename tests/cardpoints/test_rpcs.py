"""Every card-points RPC through a real server: the codes, reasons and fields on the wire.

The rules behind these answers are checked on fakes (test_services.py,
test_service_rules.py), and the fakes against both databases by tests/contract/. What
only a server shows is checked here: the status each refusal becomes, the fields of each
message, page tokens across calls, on SQLite. Races need the real database's guards, so
those run on SQLite and on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import grpc
import pytest

from pointsbridge.cardpoints.v1 import cardpoints_pb2 as pb
from servicekit import paging
from servicekit.timestamps import to_timestamp
from tests.cardpoints.bank import Bank, assert_conserved
from tests.support import error_info_count, expect_error

INT64_MAX = 2**63 - 1
# The wire is the same on either database; the storage contract covers PostgreSQL.
ON_SQLITE = pytest.mark.parametrize("backend", ["sqlite"])


# --- accounts ---------------------------------------------------------------


@ON_SQLITE
async def test_account_rpcs_answer_with_their_codes_and_fields(bank: Bank) -> None:
    account = await bank.account()
    assert account.state == pb.ACCOUNT_STATE_ACTIVE
    assert (account.holder_name, account.balance) == ("Li Lei", 0)
    again = await bank.admin.OpenAccount(
        pb.OpenAccountRequest(account_id="card-1", holder_name="Li Lei"), timeout=10
    )
    assert again.account.create_time == account.create_time
    error = await expect_error(
        bank.admin.OpenAccount(
            pb.OpenAccountRequest(account_id="card-1", holder_name="Han Meimei"), timeout=10
        )
    )
    assert (error.code, error.reason) == (grpc.StatusCode.ALREADY_EXISTS, "ACCOUNT_ALREADY_EXISTS")

    missing = await expect_error(
        bank.points.GetAccount(pb.GetAccountRequest(account_id="nobody"), timeout=10)
    )
    assert (missing.code, missing.reason) == (grpc.StatusCode.NOT_FOUND, "ACCOUNT_NOT_FOUND")
    assert missing.domain == "pointsbridge"
    assert missing.metadata == {"account_id": "nobody"}

    credit = pb.CreditPointsRequest(
        request_id="credit-1", account_id="card-1", points=500, reason="spring bonus"
    )
    first = await bank.admin.CreditPoints(credit, timeout=10)
    assert (first.entry.type, first.entry.amount, first.entry.balance_after) == (
        pb.ENTRY_TYPE_CREDIT,
        500,
        500,
    )
    replay = await bank.admin.CreditPoints(credit, timeout=10)
    assert replay.entry.entry_id == first.entry.entry_id
    credit.points = 501
    reused = await expect_error(bank.admin.CreditPoints(credit, timeout=10))
    assert (reused.code, reused.reason) == (grpc.StatusCode.ALREADY_EXISTS, "REQUEST_ID_REUSED")
    overflow = await expect_error(
        bank.admin.CreditPoints(
            pb.CreditPointsRequest(request_id="big", account_id="card-1", points=INT64_MAX),
            timeout=10,
        )
    )
    assert (overflow.code, overflow.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD")
    assert [v.field for v in overflow.violations] == ["points"]
    assert (await bank.balance_of()).balance == 500

    frozen = await bank.admin.SetAccountState(
        pb.SetAccountStateRequest(account_id="card-1", state=pb.ACCOUNT_STATE_FROZEN), timeout=10
    )
    assert frozen.account.state == pb.ACCOUNT_STATE_FROZEN
    refused = await expect_error(bank.points.DeductPoints(bank.deduct("d-frozen", 100), timeout=10))
    assert (refused.code, refused.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "ACCOUNT_FROZEN")
    await bank.admin.SetAccountState(
        pb.SetAccountStateRequest(account_id="card-1", state=pb.ACCOUNT_STATE_CLOSED), timeout=10
    )
    closed = await expect_error(bank.points.DeductPoints(bank.deduct("d-closed", 100), timeout=10))
    assert closed.reason == "ACCOUNT_CLOSED"
    reopen = await expect_error(
        bank.admin.SetAccountState(
            pb.SetAccountStateRequest(account_id="card-1", state=pb.ACCOUNT_STATE_ACTIVE),
            timeout=10,
        )
    )
    assert (reopen.code, reopen.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "ACCOUNT_CLOSED")
    await assert_conserved(bank)


# --- deductions ---------------------------------------------------------------


@ON_SQLITE
async def test_deduct_writes_ledger_and_replay_returns_the_same_deduction(bank: Bank) -> None:
    await bank.account(points=5000)
    request = bank.deduct("redemption:r1", 3000, per=1000)
    first = (await bank.points.DeductPoints(request, timeout=10)).deduction
    assert first.points == 3000
    assert first.balance_after == 2000
    assert first.state == pb.DEDUCTION_STATE_COMPLETED
    assert (first.coupon_quantity, first.points_per_coupon) == (3, 1000)

    replay = (await bank.points.DeductPoints(request, timeout=10)).deduction
    assert replay.deduction_id == first.deduction_id
    assert (await bank.balance_of()).balance == 2000

    entries = await bank.ledger()
    assert [(e.type, e.amount, e.balance_after) for e in entries] == [
        (pb.ENTRY_TYPE_DEDUCTION, -3000, 2000),
        (pb.ENTRY_TYPE_CREDIT, 5000, 5000),
    ]
    assert entries[0].reference_id == first.deduction_id
    await assert_conserved(bank)

    by_id = await bank.points.GetDeduction(
        pb.GetDeductionRequest(deduction_id=first.deduction_id), timeout=10
    )
    by_request = await bank.points.GetDeduction(
        pb.GetDeductionRequest(request_id="redemption:r1"), timeout=10
    )
    assert by_id.deduction == by_request.deduction == first
    missing = await expect_error(
        bank.points.GetDeduction(pb.GetDeductionRequest(request_id="r-none"), timeout=10)
    )
    assert (missing.code, missing.reason) == (grpc.StatusCode.NOT_FOUND, "DEDUCTION_NOT_FOUND")
    empty = await expect_error(bank.points.GetDeduction(pb.GetDeductionRequest(), timeout=10))
    assert empty.reason == "INVALID_FIELD"
    assert [v.field for v in empty.violations] == ["lookup"]


@ON_SQLITE
async def test_deduction_refusals_answer_with_their_codes(bank: Bank) -> None:
    await bank.account(points=100)
    error = await expect_error(bank.points.DeductPoints(bank.deduct("r-big", 1000), timeout=10))
    assert (error.code, error.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "INSUFFICIENT_POINTS",
    )
    replay = await expect_error(bank.points.DeductPoints(bank.deduct("r-big", 1000), timeout=10))
    assert replay.reason == "INSUFFICIENT_POINTS"
    reused = await expect_error(bank.points.DeductPoints(bank.deduct("r-big", 10), timeout=10))
    assert (reused.code, reused.reason) == (grpc.StatusCode.ALREADY_EXISTS, "REQUEST_ID_REUSED")

    request = bank.deduct("r-mismatch", 3000, per=1000)
    request.points = 2999
    mismatch = await expect_error(bank.points.DeductPoints(request, timeout=10))
    assert (mismatch.code, mismatch.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "POINTS_MISMATCH")
    assert mismatch.metadata["expected_points"] == "3000"
    assert [v.field for v in mismatch.violations] == ["points"]
    overflow = pb.DeductPointsRequest(
        request_id="r-overflow",
        account_id="card-1",
        points=INT64_MAX,
        coupon_quantity=2**62,
        points_per_coupon=4,
        merchant_id="shop-1",
    )
    wrapped = await expect_error(bank.points.DeductPoints(overflow, timeout=10))
    assert (wrapped.code, wrapped.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "POINTS_MISMATCH")
    assert wrapped.violations
    assert (await bank.balance_of()).balance == 100


# --- reversals ---------------------------------------------------------------


@ON_SQLITE
async def test_partial_reversals_never_exceed_the_deduction(bank: Bank) -> None:
    await bank.account(points=5000)
    await bank.points.DeductPoints(bank.deduct("r-rev", 3000, per=1000), timeout=10)

    def reverse(request_id: str, points: int) -> pb.ReverseDeductionRequest:
        return pb.ReverseDeductionRequest(
            request_id=request_id, deduction_request_id="r-rev", points=points, reason="refund"
        )

    first = await bank.points.ReverseDeduction(reverse("rev-1", 1000), timeout=10)
    assert first.reversal.balance_after == 3000
    assert first.deduction.state == pb.DEDUCTION_STATE_PARTIALLY_REVERSED
    assert first.deduction.reversed_points == 1000
    replay = await bank.points.ReverseDeduction(reverse("rev-1", 1000), timeout=10)
    assert replay.reversal.reversal_id == first.reversal.reversal_id
    assert (await bank.balance_of()).balance == 3000

    too_much = await expect_error(bank.points.ReverseDeduction(reverse("rev-2", 2001), timeout=10))
    assert (too_much.code, too_much.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "REVERSAL_EXCEEDS_DEDUCTION",
    )
    assert too_much.metadata["remaining"] == "2000"
    rest = await bank.points.ReverseDeduction(reverse("rev-3", 2000), timeout=10)
    assert rest.deduction.state == pb.DEDUCTION_STATE_REVERSED
    assert [r.request_id for r in rest.deduction.reversals] == ["rev-1", "rev-3"]
    assert (await bank.balance_of()).balance == 5000

    reused = await expect_error(bank.points.ReverseDeduction(reverse("rev-1", 5), timeout=10))
    assert reused.reason == "REQUEST_ID_REUSED"
    unknown = pb.ReverseDeductionRequest(request_id="rev-9", deduction_request_id="nope", points=1)
    missing = await expect_error(bank.points.ReverseDeduction(unknown, timeout=10))
    assert missing.reason == "DEDUCTION_NOT_FOUND"
    await assert_conserved(bank)


# --- listing ---------------------------------------------------------------


@ON_SQLITE
async def test_list_transactions_pages_newest_first(bank: Bank) -> None:
    await bank.account()
    for i in range(1, 16):
        await bank.admin.CreditPoints(
            pb.CreditPointsRequest(request_id=f"c-{i}", account_id="card-1", points=i), timeout=10
        )
    entries = await bank.ledger()  # pages of 7, by their tokens
    assert [e.amount for e in entries] == list(range(15, 0, -1))
    bad = await expect_error(
        bank.points.ListTransactions(
            pb.ListTransactionsRequest(account_id="card-1", page_token="garbage"), timeout=10
        )
    )
    assert (bad.code, bad.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD")
    assert [v.field for v in bad.violations] == ["page_token"]
    missing = await expect_error(
        bank.points.ListTransactions(pb.ListTransactionsRequest(account_id="nobody"), timeout=10)
    )
    assert (missing.code, missing.reason) == (grpc.StatusCode.NOT_FOUND, "ACCOUNT_NOT_FOUND")


@ON_SQLITE
async def test_list_accounts_pages_in_id_order_filtered_by_state(bank: Bank) -> None:
    ids = [f"card-{i:02d}" for i in range(5)]
    for account_id in reversed(ids):
        await bank.account(account_id)
    for account_id in ids[::3]:
        await bank.admin.SetAccountState(
            pb.SetAccountStateRequest(account_id=account_id, state=pb.ACCOUNT_STATE_FROZEN),
            timeout=10,
        )

    async def listed(
        state: pb.AccountState = pb.ACCOUNT_STATE_UNSPECIFIED, page_size: int = 2
    ) -> list[str]:
        seen: list[str] = []
        token = ""
        for _ in range(10):
            page = await bank.admin.ListAccounts(
                pb.ListAccountsRequest(state=state, page_size=page_size, page_token=token),
                timeout=10,
            )
            assert len(page.accounts) <= page_size
            seen += [a.account_id for a in page.accounts]
            token = page.next_page_token
            if not token:
                return seen
        raise AssertionError("paging did not end")

    assert await listed() == ids
    assert await listed(pb.ACCOUNT_STATE_FROZEN, page_size=1) == ids[::3]
    assert await listed(pb.ACCOUNT_STATE_ACTIVE) == [i for i in ids if i not in ids[::3]]
    first = await bank.admin.ListAccounts(pb.ListAccountsRequest(page_size=1), timeout=10)
    assert first.accounts[0].holder_name == "Li Lei"
    assert first.accounts[0].state == pb.ACCOUNT_STATE_FROZEN

    bad = await expect_error(
        bank.admin.ListAccounts(
            pb.ListAccountsRequest(state=cast(Any, 9), page_size=1001, page_token="garbage"),
            timeout=10,
        )
    )
    assert (bad.code, bad.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD")
    assert [v.field for v in bad.violations] == ["state", "page_size", "page_token"]
    # A token of another listing (the ledger's sequence numbers) is not an account key.
    ledger_token = paging.encode_token(3)
    wrong = await expect_error(
        bank.admin.ListAccounts(pb.ListAccountsRequest(page_token=ledger_token), timeout=10)
    )
    assert [v.field for v in wrong.violations] == ["page_token"]


@ON_SQLITE
async def test_list_deductions_in_a_window_with_reversals(bank: Bank) -> None:
    await bank.account(points=10_000)
    before = datetime.now(UTC) - timedelta(seconds=1)
    for i in range(5):
        await bank.points.DeductPoints(bank.deduct(f"w-{i}", 100), timeout=10)
    await bank.points.ReverseDeduction(
        pb.ReverseDeductionRequest(request_id="w-rev", deduction_request_id="w-2", points=40),
        timeout=10,
    )
    seen: list[pb.Deduction] = []
    token = ""
    while True:
        page = await bank.points.ListDeductions(
            pb.ListDeductionsRequest(
                start_time=to_timestamp(before), page_size=2, page_token=token
            ),
            timeout=10,
        )
        seen += page.deductions
        token = page.next_page_token
        if not token:
            break
    assert [d.request_id for d in seen] == [f"w-{i}" for i in range(5)]
    assert [r.points for r in seen[2].reversals] == [40]
    future = await bank.points.ListDeductions(
        pb.ListDeductionsRequest(start_time=to_timestamp(datetime.now(UTC) + timedelta(hours=1))),
        timeout=10,
    )
    assert future.deductions == []  # start after "now" would be an empty, invalid window
    bad = await expect_error(
        bank.points.ListDeductions(
            pb.ListDeductionsRequest(
                start_time=to_timestamp(before), end_time=to_timestamp(before)
            ),
            timeout=10,
        )
    )
    assert [v.field for v in bad.violations] == ["end_time"]


# --- the error model ---------------------------------------------------------------


@ON_SQLITE
async def test_every_error_carries_exactly_one_error_info(bank: Bank) -> None:
    await bank.account(points=10)
    calls: list[Awaitable[Any]] = [
        bank.points.GetAccount(pb.GetAccountRequest(account_id="nobody"), timeout=10),
        bank.points.DeductPoints(bank.deduct("x-1", 1000), timeout=10),
        bank.points.DeductPoints(pb.DeductPointsRequest(), timeout=10),
    ]
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert error_info_count(caught.value) == 1
