"""Refusals of the card-points domain, each with its AIP-193 reason."""

from __future__ import annotations

from servicekit.errors import DomainError


class AccountNotFound(DomainError):
    reason = "ACCOUNT_NOT_FOUND"

    def __init__(self, account_id: str) -> None:
        super().__init__(
            f"account {account_id!r} does not exist", metadata={"account_id": account_id}
        )


class AccountAlreadyExists(DomainError):
    reason = "ACCOUNT_ALREADY_EXISTS"

    def __init__(self, account_id: str) -> None:
        super().__init__(
            f"account {account_id!r} already exists with another holder",
            metadata={"account_id": account_id},
        )


class AccountFrozen(DomainError):
    reason = "ACCOUNT_FROZEN"

    def __init__(self, account_id: str) -> None:
        super().__init__(f"account {account_id!r} is frozen", metadata={"account_id": account_id})


class AccountClosed(DomainError):
    reason = "ACCOUNT_CLOSED"

    def __init__(self, account_id: str) -> None:
        super().__init__(f"account {account_id!r} is closed", metadata={"account_id": account_id})


class InsufficientPoints(DomainError):
    reason = "INSUFFICIENT_POINTS"

    def __init__(self, account_id: str, points: int) -> None:
        super().__init__(
            f"account {account_id!r} has fewer than {points} points",
            metadata={"account_id": account_id, "points": str(points)},
        )


class PointsMismatch(DomainError):
    reason = "POINTS_MISMATCH"


class DeductionNotFound(DomainError):
    reason = "DEDUCTION_NOT_FOUND"

    def __init__(self, key: str) -> None:
        super().__init__(f"no deduction {key!r}", metadata={"deduction": key})


class ReversalExceedsDeduction(DomainError):
    reason = "REVERSAL_EXCEEDS_DEDUCTION"

    def __init__(self, deduction_id: str, points: int, remaining: int) -> None:
        super().__init__(
            f"cannot reverse {points} points: only {remaining} of deduction {deduction_id!r}"
            " remain",
            metadata={
                "deduction_id": deduction_id,
                "points": str(points),
                "remaining": str(remaining),
            },
        )
