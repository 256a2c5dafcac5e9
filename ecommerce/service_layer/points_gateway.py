"""Service layer room: what the use cases need from the card-points system."""

from __future__ import annotations

from typing import Protocol

from ecommerce.domain.card_points import (
    CardAccount,
    Deduction,
    DeductionOrder,
    Reversal,
    ReversalOrder,
)


class PointsGateway(Protocol):
    """The card-points system as the use cases see it.

    A definite no raises the domain refusal with cardpoints' reason (for example
    InsufficientPoints). An unknown outcome raises PointsSystemUnavailable: the
    request may or may not have been applied, and must be resent unchanged to
    find out.
    """

    async def get_account(self, account_id: str) -> CardAccount: ...

    async def deduct_points(self, order: DeductionOrder) -> Deduction: ...

    async def get_deduction(self, request_id: str) -> Deduction: ...

    async def reverse_deduction(self, order: ReversalOrder) -> Reversal: ...
