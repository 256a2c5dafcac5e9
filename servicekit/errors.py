"""The error model: domain errors carry an AIP-193 reason; the gRPC edge picks the code."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


def counted(count: int, noun: str) -> str:
    """A count and its noun for a message: "1 coupon", "2 coupons"."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


@dataclass(frozen=True)
class FieldViolation:
    """One bad field of a request, named by its proto field path."""

    field: str
    description: str


class DomainError(Exception):
    """A refusal the caller can act on, named by an UPPER_SNAKE reason.

    Subclasses fix the reason; a refusal replayed from storage or received from
    another service passes it in.
    """

    reason: str = "INTERNAL"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
        violations: Sequence[FieldViolation] = (),
    ) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason
        self.message = message
        self.metadata: dict[str, str] = dict(metadata or {})
        self.violations: tuple[FieldViolation, ...] = tuple(violations)


class InvalidField(DomainError):
    reason = "INVALID_FIELD"


class RequestIdReused(DomainError):
    reason = "REQUEST_ID_REUSED"

    def __init__(self, request_id: str) -> None:
        super().__init__(
            f"request_id {request_id!r} was already used with different parameters",
            metadata={"request_id": request_id},
        )
