"""Field checks for incoming requests; every violation is collected, then raised at once."""

from __future__ import annotations

import enum
import re
from typing import TypeVar

from servicekit.errors import FieldViolation, InvalidField

INT64_MAX = 2**63 - 1
INT32_MAX = 2**31 - 1

REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
IDENTIFIER_PATTERN = re.compile(r"[A-Za-z0-9._\-]{1,64}")
CUSTOMER_ID_PATTERN = re.compile(r"[A-Za-z0-9._@\-]{1,64}")
CURRENCY_PATTERN = re.compile(r"[A-Z]{3}")

_E = TypeVar("_E", bound=enum.StrEnum)


def checked_mul(a: int, b: int, field: str) -> int:
    """Exact product, refused as INVALID_FIELD when it leaves int64."""
    product = a * b
    if not -INT64_MAX - 1 <= product <= INT64_MAX:
        raise InvalidField(
            f"{field} overflows int64",
            violations=[FieldViolation(field, f"{a} x {b} does not fit in a 64-bit integer")],
        )
    return product


class Validator:
    """Collects FieldViolations; `done()` raises INVALID_FIELD if there are any."""

    def __init__(self) -> None:
        self.violations: list[FieldViolation] = []

    def add(self, field: str, description: str) -> None:
        self.violations.append(FieldViolation(field, description))

    def pattern(self, field: str, value: str, pattern: re.Pattern[str], what: str) -> None:
        if not value:
            self.add(field, "is required")
        elif pattern.fullmatch(value) is None:
            self.add(field, f"must be {what}")

    def request_id(self, field: str, value: str) -> None:
        self.pattern(field, value, REQUEST_ID_PATTERN, "1-128 characters of [A-Za-z0-9._:-]")

    def identifier(self, field: str, value: str) -> None:
        self.pattern(field, value, IDENTIFIER_PATTERN, "1-64 characters of [A-Za-z0-9._-]")

    def customer_id(self, field: str, value: str) -> None:
        self.pattern(field, value, CUSTOMER_ID_PATTERN, "1-64 characters of [A-Za-z0-9._@-]")

    def text(self, field: str, value: str, *, max_len: int, required: bool) -> None:
        if required and not value.strip():
            self.add(field, "is required")
        elif len(value) > max_len:
            self.add(field, f"must be at most {max_len} characters")
        elif any(ord(c) < 32 and c not in "\t" for c in value):
            self.add(field, "must not contain control characters")

    def positive(self, field: str, value: int, *, maximum: int = INT64_MAX) -> None:
        if value <= 0:
            self.add(field, "must be positive")
        elif value > maximum:
            self.add(field, f"must be at most {maximum}")

    def in_range(self, field: str, value: int, low: int, high: int) -> None:
        if not low <= value <= high:
            self.add(field, f"must be between {low} and {high}")

    def state(self, field: str, name: str, states: type[_E]) -> _E | None:
        """A listing's state filter: "" is none, an unknown name a bad field."""
        if not name:
            return None
        try:
            return states(name)
        except ValueError:
            self.add(field, f"must be one of {', '.join(states)} or unspecified")
            return None

    def done(self, message: str = "the request has invalid fields") -> None:
        if self.violations:
            raise InvalidField(message, violations=self.violations)
