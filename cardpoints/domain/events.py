"""Facts the card-points use cases record; published after their unit of work commits."""

from __future__ import annotations

from dataclasses import dataclass

from cardpoints.domain.model import Account, AccountState, Deduction, LedgerEntry, Reversal


@dataclass(frozen=True)
class AccountOpened:
    account: Account


@dataclass(frozen=True)
class PointsCredited:
    account_id: str
    points: int
    entry: LedgerEntry


@dataclass(frozen=True)
class PointsDeducted:
    account_id: str
    points: int
    deduction: Deduction


@dataclass(frozen=True)
class DeductionRefused:
    """Only counted: a refusal changes no account, so it is not published."""

    account_id: str
    reason: str


@dataclass(frozen=True)
class PointsReversed:
    account_id: str
    points: int
    reversal: Reversal


@dataclass(frozen=True)
class AccountStateChanged:
    account: Account  # as it is after the change
    previous_state: AccountState
    reason: str


Event = (
    AccountOpened
    | PointsCredited
    | PointsDeducted
    | DeductionRefused
    | PointsReversed
    | AccountStateChanged
)
