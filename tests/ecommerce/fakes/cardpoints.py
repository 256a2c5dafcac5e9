"""A fake cardpoints behind the e-commerce points gateway port."""

from __future__ import annotations

from dataclasses import dataclass

from ecommerce.adapters.points_gateway import DEFAULT_MERCHANT_ID
from ecommerce.domain.card_points import (
    AccountState,
    CardAccount,
    Deduction,
    DeductionOrder,
    Reversal,
    ReversalOrder,
)
from ecommerce.domain.errors import (
    AccountClosed,
    AccountFrozen,
    AccountNotFound,
    DeductionNotFound,
    DomainError,
    InsufficientPoints,
    PointsMismatch,
    PointsSystemUnavailable,
    ReversalExceedsDeduction,
)
from tests.ecommerce.fakes.state import T


@dataclass
class FakeAccount:
    state: AccountState
    balance: int


class FakePointsGateway:
    """A cardpoints that keeps its promises: idempotent deductions and reversals, no overdraft.

    `unreachable` makes the next calls fail before reaching it; `lose_replies`
    makes the next calls take effect but lose the answer on the way back.
    """

    merchant_id = DEFAULT_MERCHANT_ID

    def __init__(self) -> None:
        self.accounts: dict[str, FakeAccount] = {}
        self.deductions: dict[str, tuple[DeductionOrder, Deduction | DomainError]] = {}
        self.reversals: dict[str, tuple[ReversalOrder, Reversal]] = {}
        self.reversed: dict[str, int] = {}
        self.unreachable = 0
        self.lose_replies = 0
        self.calls: list[str] = []

    def open(
        self, account_id: str, balance: int, state: AccountState = AccountState.ACTIVE
    ) -> None:
        self.accounts[account_id] = FakeAccount(state, balance)

    def _reach(self, what: str) -> None:
        self.calls.append(what)
        if self.unreachable:
            self.unreachable -= 1
            raise PointsSystemUnavailable(f"{what}: connection refused")

    def _reply(self, what: str, answer: T) -> T:
        if self.lose_replies:
            self.lose_replies -= 1
            raise PointsSystemUnavailable(f"{what}: deadline exceeded")
        return answer

    async def get_account(self, account_id: str) -> CardAccount:
        self._reach("GetAccount")
        account = self.accounts.get(account_id)
        if account is None:
            raise AccountNotFound(f"no account {account_id}")
        return self._reply("GetAccount", CardAccount(account_id, account.state, account.balance))

    def _deduct(self, order: DeductionOrder) -> Deduction:
        account = self.accounts.get(order.account_id)
        if account is None:
            raise AccountNotFound(f"no account {order.account_id}")
        if account.state is AccountState.FROZEN:
            raise AccountFrozen("frozen")
        if account.state is AccountState.CLOSED:
            raise AccountClosed("closed")
        if order.points != order.coupon_quantity * order.points_per_coupon:
            raise PointsMismatch("points mismatch")
        if account.balance < order.points:
            raise InsufficientPoints(f"balance {account.balance} < {order.points}")
        account.balance -= order.points
        return Deduction(
            f"d-{len(self.deductions) + 1}",
            order.request_id,
            order.account_id,
            order.points,
            account.balance,
        )

    async def deduct_points(self, order: DeductionOrder) -> Deduction:
        self._reach("DeductPoints")
        if order.request_id not in self.deductions:
            try:
                outcome: Deduction | DomainError = self._deduct(order)
            except DomainError as refusal:
                outcome = refusal
            self.deductions[order.request_id] = (order, outcome)
        stored, outcome = self.deductions[order.request_id]
        assert stored == order, "REQUEST_ID_REUSED"
        if isinstance(outcome, DomainError):
            raise outcome
        return self._reply("DeductPoints", outcome)

    async def reverse_deduction(self, order: ReversalOrder) -> Reversal:
        self._reach("ReverseDeduction")
        if order.request_id not in self.reversals:
            found = self.deductions.get(order.deduction_request_id)
            if found is None or isinstance(found[1], DomainError):
                raise DeductionNotFound(order.deduction_request_id)
            deduction = found[1]
            account = self.accounts[deduction.account_id]
            if account.state is AccountState.CLOSED:
                raise AccountClosed("closed")
            already = self.reversed.get(order.deduction_request_id, 0)
            if already + order.points > deduction.points:
                raise ReversalExceedsDeduction("too much")
            self.reversed[order.deduction_request_id] = already + order.points
            account.balance += order.points
            reversal = Reversal(f"r-{len(self.reversals) + 1}", order.request_id, order.points)
            self.reversals[order.request_id] = (order, reversal)
        stored, reversal = self.reversals[order.request_id]
        assert stored == order, "REQUEST_ID_REUSED"
        return self._reply("ReverseDeduction", reversal)

    def successful_deductions(self) -> list[Deduction]:
        return [d for _, d in self.deductions.values() if isinstance(d, Deduction)]
