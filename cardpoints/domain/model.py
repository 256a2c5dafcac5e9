"""Card-points entities and commands, with the rules that need no storage to decide."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from cardpoints.domain.errors import AccountClosed, AccountFrozen, PointsMismatch
from servicekit.errors import FieldViolation, InvalidField
from servicekit.validation import INT64_MAX, Validator, checked_mul


class AccountState(StrEnum):
    ACTIVE = "ACTIVE"
    FROZEN = "FROZEN"
    CLOSED = "CLOSED"


class EntryType(StrEnum):
    CREDIT = "CREDIT"
    DEDUCTION = "DEDUCTION"
    REVERSAL = "REVERSAL"


class DeductionState(StrEnum):
    COMPLETED = "COMPLETED"
    PARTIALLY_REVERSED = "PARTIALLY_REVERSED"
    REVERSED = "REVERSED"


@dataclass(frozen=True)
class Account:
    account_id: str
    holder_name: str
    state: AccountState
    balance: int
    create_time: datetime
    update_time: datetime

    def check_can_deduct(self) -> None:
        if self.state is AccountState.FROZEN:
            raise AccountFrozen(self.account_id)
        self.check_open()

    def check_open(self) -> None:
        if self.state is AccountState.CLOSED:
            raise AccountClosed(self.account_id)


@dataclass(frozen=True)
class LedgerEntry:
    """One immutable line of the ledger; `amount` is signed, negative for deductions."""

    entry_id: str
    account_id: str
    type: EntryType
    amount: int
    balance_after: int
    request_id: str
    reference_id: str
    reason: str
    create_time: datetime


@dataclass(frozen=True)
class Reversal:
    reversal_id: str
    request_id: str
    deduction_id: str
    deduction_request_id: str
    points: int
    balance_after: int
    create_time: datetime


@dataclass(frozen=True)
class Deduction:
    deduction_id: str
    request_id: str
    account_id: str
    points: int
    balance_after: int
    reversed_points: int
    coupon_quantity: int
    points_per_coupon: int
    merchant_id: str
    create_time: datetime
    update_time: datetime
    reversals: tuple[Reversal, ...] = ()

    @property
    def remaining(self) -> int:
        return self.points - self.reversed_points

    @property
    def state(self) -> DeductionState:
        if self.reversed_points == 0:
            return DeductionState.COMPLETED
        if self.reversed_points < self.points:
            return DeductionState.PARTIALLY_REVERSED
        return DeductionState.REVERSED


# Commands. Each validates its own fields and names them as the proto does.


@dataclass(frozen=True)
class OpenAccount:
    account_id: str
    holder_name: str

    def validate(self) -> None:
        v = Validator()
        v.identifier("account_id", self.account_id)
        v.text("holder_name", self.holder_name, max_len=200, required=True)
        v.done()


@dataclass(frozen=True)
class CreditPoints:
    request_id: str
    account_id: str
    points: int
    reason: str

    def validate(self) -> None:
        v = Validator()
        v.request_id("request_id", self.request_id)
        v.identifier("account_id", self.account_id)
        v.positive("points", self.points)
        v.text("reason", self.reason, max_len=200, required=False)
        v.done()

    def fingerprint(self) -> str:
        return f"{self.account_id}|{self.points}|{self.reason}"


@dataclass(frozen=True)
class DeductPoints:
    request_id: str
    account_id: str
    points: int
    coupon_quantity: int
    points_per_coupon: int
    merchant_id: str

    def validate(self) -> None:
        v = Validator()
        v.request_id("request_id", self.request_id)
        v.identifier("account_id", self.account_id)
        v.positive("points", self.points)
        v.positive("coupon_quantity", self.coupon_quantity)
        v.positive("points_per_coupon", self.points_per_coupon)
        v.identifier("merchant_id", self.merchant_id)
        v.done()
        # The e-commerce side's arithmetic is recomputed here, never trusted.
        try:
            expected = checked_mul(self.coupon_quantity, self.points_per_coupon, "points")
        except InvalidField as overflow:
            raise PointsMismatch(
                "coupon_quantity x points_per_coupon does not fit in int64",
                violations=overflow.violations,
                metadata={"points": str(self.points)},
            ) from None
        if expected != self.points:
            raise PointsMismatch(
                f"points {self.points} != coupon_quantity {self.coupon_quantity}"
                f" x points_per_coupon {self.points_per_coupon} = {expected}",
                metadata={"points": str(self.points), "expected_points": str(expected)},
                violations=[FieldViolation("points", f"must equal {expected}")],
            )

    def fingerprint(self) -> str:
        return (
            f"{self.account_id}|{self.points}|{self.coupon_quantity}|"
            f"{self.points_per_coupon}|{self.merchant_id}"
        )


@dataclass(frozen=True)
class ReverseDeduction:
    request_id: str
    deduction_request_id: str
    points: int
    reason: str

    def validate(self) -> None:
        v = Validator()
        v.request_id("request_id", self.request_id)
        v.request_id("deduction_request_id", self.deduction_request_id)
        v.positive("points", self.points)
        v.text("reason", self.reason, max_len=200, required=False)
        v.done()

    def fingerprint(self) -> str:
        return f"{self.deduction_request_id}|{self.points}|{self.reason}"


@dataclass(frozen=True)
class SetAccountState:
    account_id: str
    state: AccountState | None
    reason: str

    def validate(self) -> None:
        v = Validator()
        v.identifier("account_id", self.account_id)
        if self.state is None:
            v.add(
                "state",
                "must be ACCOUNT_STATE_ACTIVE, ACCOUNT_STATE_FROZEN or ACCOUNT_STATE_CLOSED",
            )
        v.text("reason", self.reason, max_len=200, required=False)
        v.done()


@dataclass(frozen=True)
class GetAccount:
    account_id: str


@dataclass(frozen=True)
class GetDeduction:
    """By deduction_id, or by the request_id that made it."""

    deduction_id: str = ""
    request_id: str = ""


@dataclass(frozen=True)
class ListTransactions:
    account_id: str
    page_size: int = 0
    page_token: str = ""


@dataclass(frozen=True)
class ListAccounts:
    state: str = ""  # a state's name, or "" for every state
    page_size: int = 0
    page_token: str = ""


@dataclass(frozen=True)
class ListDeductions:
    start: datetime | None = None
    end: datetime | None = None
    page_size: int = 0
    page_token: str = ""


def credited_balance(balance: int, points: int) -> int:
    """The balance after a credit, refused rather than wrapped past int64 (I7)."""
    if balance > INT64_MAX - points:
        raise InvalidField(
            "the credit would overflow the balance",
            violations=[
                FieldViolation("points", f"balance {balance} + {points} does not fit in int64")
            ],
        )
    return balance + points


@dataclass(frozen=True)
class IdempotencyRecord:
    """The first outcome of a mutating request: the resource it made, or the refusal it got."""

    operation: str
    request_id: str
    fingerprint: str
    resource_id: str | None
    refusal_reason: str | None
    refusal_message: str
    refusal_metadata: dict[str, str]
    create_time: datetime
