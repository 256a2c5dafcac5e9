"""Every field of every card-points request, made bad: a clear INVALID_ARGUMENT, nothing stored."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest

from pointsbridge.cardpoints.v1 import cardpoints_pb2 as pb
from pointsbridge.cardpoints.v1 import cardpoints_pb2_grpc as pb_grpc
from tests.support import expect_error

INT64_MAX = 2**63 - 1
LONG_ID = "r" * 129


def _deduct(**changes: Any) -> pb.DeductPointsRequest:
    fields: dict[str, Any] = {
        "request_id": "bad-1",
        "account_id": "card-1",
        "points": 300,
        "coupon_quantity": 3,
        "points_per_coupon": 100,
        "merchant_id": "shop-1",
    }
    return pb.DeductPointsRequest(**{**fields, **changes})


def _reverse(**changes: Any) -> pb.ReverseDeductionRequest:
    fields: dict[str, Any] = {
        "request_id": "bad-rev",
        "deduction_request_id": "seeded",
        "points": 10,
    }
    return pb.ReverseDeductionRequest(**{**fields, **changes})


def _credit(**changes: Any) -> pb.CreditPointsRequest:
    fields: dict[str, Any] = {"request_id": "bad-credit", "account_id": "card-1", "points": 10}
    return pb.CreditPointsRequest(**{**fields, **changes})


# (method, request, the field the violation must name)
CASES: list[tuple[str, Callable[[], Any], str]] = [
    ("DeductPoints", lambda: _deduct(request_id=""), "request_id"),
    ("DeductPoints", lambda: _deduct(request_id=LONG_ID), "request_id"),
    ("DeductPoints", lambda: _deduct(request_id="has space"), "request_id"),
    ("DeductPoints", lambda: _deduct(account_id=""), "account_id"),
    ("DeductPoints", lambda: _deduct(account_id="a" * 65), "account_id"),
    ("DeductPoints", lambda: _deduct(points=0, coupon_quantity=0), "points"),
    ("DeductPoints", lambda: _deduct(points=-300), "points"),
    ("DeductPoints", lambda: _deduct(coupon_quantity=0), "coupon_quantity"),
    ("DeductPoints", lambda: _deduct(coupon_quantity=-3), "coupon_quantity"),
    ("DeductPoints", lambda: _deduct(points_per_coupon=0), "points_per_coupon"),
    ("DeductPoints", lambda: _deduct(merchant_id=""), "merchant_id"),
    ("DeductPoints", lambda: _deduct(merchant_id="shop\u00e9"), "merchant_id"),
    ("GetAccount", lambda: pb.GetAccountRequest(account_id=""), "account_id"),
    ("GetAccount", lambda: pb.GetAccountRequest(account_id="x/y"), "account_id"),
    ("GetDeduction", lambda: pb.GetDeductionRequest(), "lookup"),
    ("GetDeduction", lambda: pb.GetDeductionRequest(request_id=LONG_ID), "request_id"),
    ("GetDeduction", lambda: pb.GetDeductionRequest(deduction_id="bad id"), "deduction_id"),
    ("ReverseDeduction", lambda: _reverse(request_id=""), "request_id"),
    ("ReverseDeduction", lambda: _reverse(deduction_request_id=""), "deduction_request_id"),
    ("ReverseDeduction", lambda: _reverse(points=0), "points"),
    ("ReverseDeduction", lambda: _reverse(points=-INT64_MAX - 1), "points"),
    ("ReverseDeduction", lambda: _reverse(reason="x" * 201), "reason"),
    ("ListTransactions", lambda: pb.ListTransactionsRequest(account_id=""), "account_id"),
    (
        "ListTransactions",
        lambda: pb.ListTransactionsRequest(account_id="card-1", page_size=-1),
        "page_size",
    ),
    (
        "ListTransactions",
        lambda: pb.ListTransactionsRequest(account_id="card-1", page_size=1001),
        "page_size",
    ),
    (
        "ListTransactions",
        lambda: pb.ListTransactionsRequest(account_id="card-1", page_token="!!"),
        "page_token",
    ),
    ("ListDeductions", lambda: pb.ListDeductionsRequest(page_size=-5), "page_size"),
    ("ListDeductions", lambda: pb.ListDeductionsRequest(page_token="cGIxOi0x"), "page_token"),
    ("OpenAccount", lambda: pb.OpenAccountRequest(account_id="", holder_name="A"), "account_id"),
    ("OpenAccount", lambda: pb.OpenAccountRequest(account_id="card-2"), "holder_name"),
    (
        "OpenAccount",
        lambda: pb.OpenAccountRequest(account_id="card-2", holder_name="h" * 201),
        "holder_name",
    ),
    (
        "OpenAccount",
        lambda: pb.OpenAccountRequest(account_id="card-2", holder_name="bell\x07"),
        "holder_name",
    ),
    ("CreditPoints", lambda: _credit(request_id=""), "request_id"),
    ("CreditPoints", lambda: _credit(account_id=""), "account_id"),
    ("CreditPoints", lambda: _credit(points=0), "points"),
    ("CreditPoints", lambda: _credit(points=-1), "points"),
    ("CreditPoints", lambda: _credit(points=INT64_MAX), "points"),
    ("CreditPoints", lambda: _credit(reason="r" * 201), "reason"),
    (
        "SetAccountState",
        lambda: pb.SetAccountStateRequest(account_id="card-1"),
        "state",
    ),
    (
        "SetAccountState",
        lambda: pb.SetAccountStateRequest(account_id="card-1", state=99),  # type: ignore[arg-type]
        "state",
    ),
    (
        "SetAccountState",
        lambda: pb.SetAccountStateRequest(account_id="", state=pb.ACCOUNT_STATE_FROZEN),
        "account_id",
    ),
]


async def _snapshot(points: pb_grpc.CardPointsServiceAsyncStub) -> tuple[Any, ...]:
    account = (
        await points.GetAccount(pb.GetAccountRequest(account_id="card-1"), timeout=10)
    ).account
    ledger = await points.ListTransactions(
        pb.ListTransactionsRequest(account_id="card-1", page_size=1000), timeout=10
    )
    deductions = await points.ListDeductions(pb.ListDeductionsRequest(page_size=1000), timeout=10)
    return account.balance, account.state, list(ledger.transactions), list(deductions.deductions)


async def test_every_bad_field_is_refused_and_nothing_changes(
    cardpoints_channel: grpc.aio.Channel,
) -> None:
    points = pb_grpc.CardPointsServiceStub(cardpoints_channel)
    admin = pb_grpc.CardPointsAdminServiceStub(cardpoints_channel)
    await admin.OpenAccount(pb.OpenAccountRequest(account_id="card-1", holder_name="A"), timeout=10)
    await admin.CreditPoints(_credit(request_id="seed", points=1000), timeout=10)
    await points.DeductPoints(_deduct(request_id="seeded"), timeout=10)
    before = await _snapshot(points)

    for method, make, field in CASES:
        stub = admin if hasattr(admin, method) else points
        error = await expect_error(getattr(stub, method)(make(), timeout=10))
        where = f"{method} with bad {field}"
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT, where
        assert error.reason == "INVALID_FIELD", where
        assert field in [v.field for v in error.violations], (where, error.violations)
        assert all(v.description for v in error.violations), where

    assert await _snapshot(points) == before
    # The refused request_ids were not consumed: each can still be used properly.
    await points.DeductPoints(_deduct(request_id="bad-1"), timeout=10)
    await admin.CreditPoints(_credit(), timeout=10)


@pytest.mark.parametrize(
    ("method", "request_factory", "reason"),
    [
        ("GetAccount", lambda: pb.GetAccountRequest(account_id="ghost"), "ACCOUNT_NOT_FOUND"),
        ("DeductPoints", lambda: _deduct(account_id="ghost"), "ACCOUNT_NOT_FOUND"),
        ("CreditPoints", lambda: _credit(account_id="ghost"), "ACCOUNT_NOT_FOUND"),
        (
            "SetAccountState",
            lambda: pb.SetAccountStateRequest(account_id="ghost", state=pb.ACCOUNT_STATE_FROZEN),
            "ACCOUNT_NOT_FOUND",
        ),
        (
            "ListTransactions",
            lambda: pb.ListTransactionsRequest(account_id="ghost"),
            "ACCOUNT_NOT_FOUND",
        ),
        ("ReverseDeduction", lambda: _reverse(deduction_request_id="ghost"), "DEDUCTION_NOT_FOUND"),
    ],
)
async def test_unknown_things_are_not_found_and_store_nothing(
    cardpoints_channel: grpc.aio.Channel,
    method: str,
    request_factory: Callable[[], Any],
    reason: str,
) -> None:
    points = pb_grpc.CardPointsServiceStub(cardpoints_channel)
    admin = pb_grpc.CardPointsAdminServiceStub(cardpoints_channel)
    stub = admin if hasattr(admin, method) else points
    error = await expect_error(getattr(stub, method)(request_factory(), timeout=10))
    assert (error.code, error.reason) == (grpc.StatusCode.NOT_FOUND, reason)
    # The same request_id works once the account exists: nothing was recorded.
    await admin.OpenAccount(pb.OpenAccountRequest(account_id="ghost", holder_name="G"), timeout=10)
    await admin.CreditPoints(_credit(account_id="ghost", request_id="bad-credit"), timeout=10)
    balance = (
        await points.GetAccount(pb.GetAccountRequest(account_id="ghost"), timeout=10)
    ).account
    assert balance.balance == 10
