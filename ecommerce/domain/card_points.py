"""Domain room: what the e-commerce service knows of card accounts, deductions and reversals."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ecommerce.domain.errors import AccountClosed, AccountFrozen


class AccountState(enum.StrEnum):
    ACTIVE = "ACTIVE"
    FROZEN = "FROZEN"
    CLOSED = "CLOSED"


@dataclass(frozen=True)
class CardAccount:
    account_id: str
    state: AccountState
    balance: int

    def check_active(self) -> None:
        metadata = {"card_account_id": self.account_id}
        if self.state is AccountState.FROZEN:
            raise AccountFrozen(f"card account {self.account_id!r} is frozen", metadata=metadata)
        if self.state is AccountState.CLOSED:
            raise AccountClosed(f"card account {self.account_id!r} is closed", metadata=metadata)


@dataclass(frozen=True)
class DeductionOrder:
    """What DeductPoints is asked; resent unchanged until an outcome is known."""

    request_id: str
    account_id: str
    points: int
    coupon_quantity: int
    points_per_coupon: int
    merchant_id: str


@dataclass(frozen=True)
class Deduction:
    deduction_id: str
    request_id: str
    account_id: str
    points: int
    balance_after: int
    reversed_points: int = 0


@dataclass(frozen=True)
class ReversalOrder:
    request_id: str
    deduction_request_id: str
    points: int
    reason: str


@dataclass(frozen=True)
class Reversal:
    reversal_id: str
    request_id: str
    points: int
