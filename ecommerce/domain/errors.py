"""Domain room: every refusal of the e-commerce service, named by its AIP-193 reason."""

from __future__ import annotations

from collections.abc import Mapping

from servicekit.errors import DomainError, FieldViolation, InvalidField, RequestIdReused

__all__ = [
    "AccountClosed",
    "AccountFrozen",
    "AccountNotFound",
    "CardNotLinked",
    "CouponAlreadyUsed",
    "CouponExpired",
    "CouponNotFound",
    "CouponVoid",
    "DeductionNotFound",
    "DomainError",
    "FieldViolation",
    "InsufficientPoints",
    "InvalidField",
    "PointsMismatch",
    "PointsSystemCredentialsRejected",
    "PointsSystemUnavailable",
    "ProductAlreadyExists",
    "ProductInactive",
    "ProductNotFound",
    "QuantityLimitExceeded",
    "RateChanged",
    "RedemptionNotFound",
    "RequestIdReused",
    "ReversalExceedsDeduction",
]


class ProductNotFound(DomainError):
    reason = "PRODUCT_NOT_FOUND"


class ProductAlreadyExists(DomainError):
    reason = "PRODUCT_ALREADY_EXISTS"


class ProductInactive(DomainError):
    reason = "PRODUCT_INACTIVE"


class QuantityLimitExceeded(DomainError):
    reason = "QUANTITY_LIMIT_EXCEEDED"


class CardNotLinked(DomainError):
    reason = "CARD_NOT_LINKED"


class RateChanged(DomainError):
    reason = "RATE_CHANGED"


class RedemptionNotFound(DomainError):
    reason = "REDEMPTION_NOT_FOUND"


class CouponNotFound(DomainError):
    reason = "COUPON_NOT_FOUND"


class NotOwner(DomainError):
    """The coupon or redemption exists but belongs to another customer.

    Only operators are told so. Anyone else gets `concealed`, the very refusal an
    object that does not exist gets, so that guessing cannot confirm a code or id.
    """

    reason = "NOT_OWNER"

    def __init__(
        self, message: str, *, concealed: DomainError, metadata: Mapping[str, str]
    ) -> None:
        super().__init__(message, metadata=metadata)
        self.concealed = concealed


class CouponAlreadyUsed(DomainError):
    reason = "COUPON_ALREADY_USED"


class CouponVoid(DomainError):
    reason = "COUPON_VOID"


class CouponExpired(DomainError):
    reason = "COUPON_EXPIRED"


# Refusals of the card-points system, carried over with the same reason.


class AccountNotFound(DomainError):
    reason = "ACCOUNT_NOT_FOUND"


class AccountFrozen(DomainError):
    reason = "ACCOUNT_FROZEN"


class AccountClosed(DomainError):
    reason = "ACCOUNT_CLOSED"


class InsufficientPoints(DomainError):
    reason = "INSUFFICIENT_POINTS"


class PointsMismatch(DomainError):
    reason = "POINTS_MISMATCH"


class DeductionNotFound(DomainError):
    reason = "DEDUCTION_NOT_FOUND"


class ReversalExceedsDeduction(DomainError):
    reason = "REVERSAL_EXCEEDS_DEDUCTION"


class PointsSystemUnavailable(DomainError):
    """The card-points system could not be reached, or its answer is unknown.

    Whatever was being done stays PENDING; retrying with the same request_id
    resumes it.
    """

    reason = "POINTS_SYSTEM_UNAVAILABLE"


class PointsSystemCredentialsRejected(PointsSystemUnavailable):
    """The card-points system refused this service's own credentials (an expired or
    wrong token, a certificate without the service identity), before doing anything.

    Not the caller's fault, and not final: what was being done stays PENDING and is
    settled once valid credentials are in place, by a retry or the recovery loop.
    """

    reason = "POINTS_SYSTEM_CREDENTIALS_REJECTED"
