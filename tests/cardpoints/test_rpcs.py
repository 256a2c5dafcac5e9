"""Every card-points RPC through a real server, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import grpc
import pytest

from pointsbridge.cardpoints.v1 import cardpoints_pb2 as pb
from pointsbridge.cardpoints.v1 import cardpoints_pb2_grpc as pb_grpc
from servicekit import paging
from servicekit.timestamps import to_timestamp
from tests.support import error_info_count, expect_error

INT64_MAX = 2**63 - 1


class Bank:
    """Both card-points stubs over one channel, with shorthands for the common calls."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.points = pb_grpc.CardPointsServiceStub(channel)
        self.admin = pb_grpc.CardPointsAdminServiceStub(channel)

    async def account(self, account_id: str = "card-1", points: int = 0) -> pb.Account:
        await self.admin.OpenAccount(
            pb.OpenAccountRequest(account_id=account_id, holder_name="Li Lei"), timeout=10
        )
        if points:
            await self.admin.CreditPoints(
                pb.CreditPointsRequest(
                    request_id=f"seed-{account_id}", account_id=account_id, points=points
                ),
                timeout=10,
            )
        return await self.balance_of(account_id)

    async def balance_of(self, account_id: str = "card-1") -> pb.Account:
        response = await self.points.GetAccount(
            pb.GetAccountRequest(account_id=account_id), timeout=10
        )
        return response.account

    def deduct(
        self, request_id: str, points: int, account_id: str = "card-1", per: int = 0
    ) -> pb.DeductPointsRequest:
        per = per or points
        return pb.DeductPointsRequest(
            request_id=request_id,
            account_id=account_id,
            points=points,
            coupon_quantity=points // per,
            points_per_coupon=per,
            merchant_id="shop-1",
        )

    async def ledger(self, account_id: str = "card-1") -> list[pb.LedgerEntry]:
        entries: list[pb.LedgerEntry] = []
        token = ""
        while True:
            page = await self.points.ListTransactions(
                pb.ListTransactionsRequest(account_id=account_id, page_size=7, page_token=token),
                timeout=10,
            )
            entries += page.transactions
            token = page.next_page_token
            if not token:
                return entries


@pytest.fixture
def bank(cardpoints_channel: grpc.aio.Channel) -> Bank:
    return Bank(cardpoints_channel)


async def assert_conserved(bank: Bank, account_id: str = "card-1") -> None:
    """I2: credits - deductions + reversals (the signed ledger) equals the balance."""
    account = await bank.balance_of(account_id)
    entries = await bank.ledger(account_id)
    assert sum(e.amount for e in entries) == account.balance
    assert account.balance >= 0
    if entries:
        assert entries[0].balance_after == account.balance


# --- accounts ---------------------------------------------------------------


async def test_open_account_is_idempotent_and_refuses_another_holder(bank: Bank) -> None:
    account = await bank.account()
    assert account.state == pb.ACCOUNT_STATE_ACTIVE
    assert account.balance == 0
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


async def test_get_unknown_account_is_not_found(bank: Bank) -> None:
    error = await expect_error(
        bank.points.GetAccount(pb.GetAccountRequest(account_id="nobody"), timeout=10)
    )
    assert (error.code, error.reason) == (grpc.StatusCode.NOT_FOUND, "ACCOUNT_NOT_FOUND")
    assert error.domain == "pointsbridge"
    assert error.metadata == {"account_id": "nobody"}


async def test_credit_is_idempotent_and_reuse_is_refused(bank: Bank) -> None:
    await bank.account()
    request = pb.CreditPointsRequest(
        request_id="credit-1", account_id="card-1", points=500, reason="spring bonus"
    )
    first = await bank.admin.CreditPoints(request, timeout=10)
    replay = await bank.admin.CreditPoints(request, timeout=10)
    assert replay.entry.entry_id == first.entry.entry_id
    assert (await bank.balance_of()).balance == 500
    request.points = 501
    error = await expect_error(bank.admin.CreditPoints(request, timeout=10))
    assert (error.code, error.reason) == (grpc.StatusCode.ALREADY_EXISTS, "REQUEST_ID_REUSED")
    assert (await bank.balance_of()).balance == 500
    await assert_conserved(bank)


async def test_credit_past_int64_is_refused_and_changes_nothing(bank: Bank) -> None:
    await bank.account(points=10)
    error = await expect_error(
        bank.admin.CreditPoints(
            pb.CreditPointsRequest(request_id="big", account_id="card-1", points=INT64_MAX),
            timeout=10,
        )
    )
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD")
    assert [v.field for v in error.violations] == ["points"]
    assert (await bank.balance_of()).balance == 10
    # Nothing was recorded under the request_id: a fitting credit may use it.
    await bank.admin.CreditPoints(
        pb.CreditPointsRequest(request_id="big", account_id="card-1", points=5), timeout=10
    )
    assert (await bank.balance_of()).balance == 15


async def test_account_states_gate_deductions(bank: Bank) -> None:
    await bank.account(points=1000)
    frozen = await bank.admin.SetAccountState(
        pb.SetAccountStateRequest(account_id="card-1", state=pb.ACCOUNT_STATE_FROZEN), timeout=10
    )
    assert frozen.account.state == pb.ACCOUNT_STATE_FROZEN
    error = await expect_error(bank.points.DeductPoints(bank.deduct("d-frozen", 100), timeout=10))
    assert (error.code, error.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "ACCOUNT_FROZEN")

    await bank.admin.SetAccountState(
        pb.SetAccountStateRequest(account_id="card-1", state=pb.ACCOUNT_STATE_ACTIVE), timeout=10
    )
    # The refusal is the recorded outcome of that request_id, even after unfreezing.
    replay = await expect_error(bank.points.DeductPoints(bank.deduct("d-frozen", 100), timeout=10))
    assert replay.reason == "ACCOUNT_FROZEN"
    await bank.points.DeductPoints(bank.deduct("d-active", 100), timeout=10)

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
    assert (await bank.balance_of()).balance == 900
    await assert_conserved(bank)


# --- deductions ---------------------------------------------------------------


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


async def test_reused_request_id_with_other_parameters_is_refused(bank: Bank) -> None:
    await bank.account(points=5000)
    await bank.points.DeductPoints(bank.deduct("r-1", 1000), timeout=10)
    for changed in (
        bank.deduct("r-1", 2000),
        bank.deduct("r-1", 1000, per=500),
        pb.DeductPointsRequest(
            request_id="r-1",
            account_id="card-1",
            points=1000,
            coupon_quantity=1,
            points_per_coupon=1000,
            merchant_id="another-shop",
        ),
    ):
        error = await expect_error(bank.points.DeductPoints(changed, timeout=10))
        assert (error.code, error.reason) == (grpc.StatusCode.ALREADY_EXISTS, "REQUEST_ID_REUSED")
    assert (await bank.balance_of()).balance == 4000


async def test_insufficient_points_is_refused_and_replayed(bank: Bank) -> None:
    await bank.account(points=100)
    error = await expect_error(bank.points.DeductPoints(bank.deduct("r-big", 1000), timeout=10))
    assert (error.code, error.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "INSUFFICIENT_POINTS",
    )
    await bank.admin.CreditPoints(
        pb.CreditPointsRequest(request_id="top-up", account_id="card-1", points=5000), timeout=10
    )
    replay = await expect_error(bank.points.DeductPoints(bank.deduct("r-big", 1000), timeout=10))
    assert replay.reason == "INSUFFICIENT_POINTS"
    assert (await bank.balance_of()).balance == 5100
    await assert_conserved(bank)


async def test_points_mismatch_is_refused(bank: Bank) -> None:
    await bank.account(points=10_000)
    request = bank.deduct("r-mismatch", 3000, per=1000)
    request.points = 2999
    error = await expect_error(bank.points.DeductPoints(request, timeout=10))
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "POINTS_MISMATCH")
    assert error.metadata["expected_points"] == "3000"
    assert [v.field for v in error.violations] == ["points"]
    assert (await bank.balance_of()).balance == 10_000


async def test_quantity_times_ratio_past_int64_is_refused(bank: Bank) -> None:
    await bank.account(points=10)
    request = pb.DeductPointsRequest(
        request_id="r-overflow",
        account_id="card-1",
        points=INT64_MAX,
        coupon_quantity=2**62,
        points_per_coupon=4,
        merchant_id="shop-1",
    )
    error = await expect_error(bank.points.DeductPoints(request, timeout=10))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.reason == "POINTS_MISMATCH"
    assert error.violations
    assert (await bank.balance_of()).balance == 10


async def test_get_deduction_by_id_and_by_request_id(bank: Bank) -> None:
    await bank.account(points=1000)
    made = (await bank.points.DeductPoints(bank.deduct("r-get", 400), timeout=10)).deduction
    by_id = await bank.points.GetDeduction(
        pb.GetDeductionRequest(deduction_id=made.deduction_id), timeout=10
    )
    by_request = await bank.points.GetDeduction(
        pb.GetDeductionRequest(request_id="r-get"), timeout=10
    )
    assert by_id.deduction == by_request.deduction == made
    missing = await expect_error(
        bank.points.GetDeduction(pb.GetDeductionRequest(request_id="r-none"), timeout=10)
    )
    assert (missing.code, missing.reason) == (grpc.StatusCode.NOT_FOUND, "DEDUCTION_NOT_FOUND")
    empty = await expect_error(bank.points.GetDeduction(pb.GetDeductionRequest(), timeout=10))
    assert empty.reason == "INVALID_FIELD"
    assert [v.field for v in empty.violations] == ["lookup"]


# --- reversals ---------------------------------------------------------------


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


async def test_concurrent_reversals_cannot_exceed_the_deduction(bank: Bank) -> None:
    await bank.account(points=1000)
    await bank.points.DeductPoints(bank.deduct("r-race", 1000, per=100), timeout=10)
    calls = [
        bank.points.ReverseDeduction(
            pb.ReverseDeductionRequest(
                request_id=f"race-{i}", deduction_request_id="r-race", points=300
            ),
            timeout=30,
        )
        for i in range(8)
    ]
    results = await asyncio.gather(*calls, return_exceptions=True)
    ok = [r for r in results if isinstance(r, pb.ReverseDeductionResponse)]
    assert len(ok) == 3
    assert (await bank.balance_of()).balance == 900
    await assert_conserved(bank)


# --- listing ---------------------------------------------------------------


async def test_list_transactions_pages_newest_first(bank: Bank) -> None:
    await bank.account()
    for i in range(1, 16):
        await bank.admin.CreditPoints(
            pb.CreditPointsRequest(request_id=f"c-{i}", account_id="card-1", points=i), timeout=10
        )
    entries = await bank.ledger()
    assert [e.amount for e in entries] == list(range(15, 0, -1))
    bad = await expect_error(
        bank.points.ListTransactions(
            pb.ListTransactionsRequest(account_id="card-1", page_token="garbage"), timeout=10
        )
    )
    assert [v.field for v in bad.violations] == ["page_token"]
    missing = await expect_error(
        bank.points.ListTransactions(pb.ListTransactionsRequest(account_id="nobody"), timeout=10)
    )
    assert missing.reason == "ACCOUNT_NOT_FOUND"


async def test_list_accounts_pages_in_id_order_filtered_by_state(bank: Bank) -> None:
    ids = [f"card-{i:02d}" for i in range(12)]
    for account_id in reversed(ids):
        await bank.account(account_id)
    for account_id in ids[::3]:
        await bank.admin.SetAccountState(
            pb.SetAccountStateRequest(account_id=account_id, state=pb.ACCOUNT_STATE_FROZEN),
            timeout=10,
        )

    async def listed(
        state: pb.AccountState = pb.ACCOUNT_STATE_UNSPECIFIED, page_size: int = 5
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
    assert await listed(page_size=12) == ids
    assert await listed(pb.ACCOUNT_STATE_FROZEN, page_size=2) == ids[::3]
    active = await listed(pb.ACCOUNT_STATE_ACTIVE)
    assert active == [i for i in ids if i not in ids[::3]]
    assert await listed(pb.ACCOUNT_STATE_CLOSED) == []
    first = await bank.admin.ListAccounts(pb.ListAccountsRequest(page_size=1), timeout=10)
    assert first.accounts[0].holder_name == "Li Lei"
    assert first.accounts[0].state == pb.ACCOUNT_STATE_FROZEN

    bad = await expect_error(
        bank.admin.ListAccounts(
            pb.ListAccountsRequest(state=cast(Any, 9), page_size=1001, page_token="garbage"),
            timeout=10,
        )
    )
    assert bad.reason == "INVALID_FIELD"
    assert [v.field for v in bad.violations] == ["state", "page_size", "page_token"]
    # A token of another listing (the ledger's sequence numbers) is not an account key.
    ledger_token = paging.encode_token(3)
    wrong = await expect_error(
        bank.admin.ListAccounts(pb.ListAccountsRequest(page_token=ledger_token), timeout=10)
    )
    assert [v.field for v in wrong.violations] == ["page_token"]


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


# --- concurrency ---------------------------------------------------------------


async def test_fifty_concurrent_deductions_cannot_overdraw(bank: Bank) -> None:
    await bank.account(points=2000)
    calls = [bank.points.DeductPoints(bank.deduct(f"c-{i}", 100), timeout=60) for i in range(50)]
    results = await asyncio.gather(*calls, return_exceptions=True)
    ok = [r for r in results if isinstance(r, pb.DeductPointsResponse)]
    refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(ok) == 20
    assert len(refused) == 30
    from servicekit.status import remote_error

    assert {remote_error(e).reason for e in refused} == {"INSUFFICIENT_POINTS"}
    assert (await bank.balance_of()).balance == 0
    balances = sorted(r.deduction.balance_after for r in ok)
    assert balances == list(range(0, 2000, 100))  # every step seen once, none negative
    await assert_conserved(bank)


async def test_concurrent_duplicates_make_one_deduction(bank: Bank) -> None:
    await bank.account(points=2000)
    request = bank.deduct("dup-1", 100)
    results = await asyncio.gather(
        *(bank.points.DeductPoints(request, timeout=60) for _ in range(20))
    )
    assert len({r.deduction.deduction_id for r in results}) == 1
    assert (await bank.balance_of()).balance == 1900
    assert len(await bank.ledger()) == 2
    await assert_conserved(bank)


# --- the error model ---------------------------------------------------------------


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
