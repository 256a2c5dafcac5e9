"""The journal: what the harness's clients asked and what each one was told.

It is the expected-state bookkeeping the checker holds the services to: every
acknowledged success must be visible at the end, every refusal must have changed
nothing, every unknown outcome must have been settled one way or the other.
"""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass, field


class Outcome(enum.StrEnum):
    OK = "ok"
    REFUSED = "refused"
    UNKNOWN = "unknown"  # every attempt ended UNAVAILABLE/DEADLINE_EXCEEDED, or cut short


@dataclass(frozen=True)
class Product:
    product_id: str
    points_per_coupon: int
    max_quantity: int


@dataclass(frozen=True)
class Customer:
    customer_id: str
    account_id: str
    credited: int


@dataclass
class RedeemCall:
    request_id: str
    customer_id: str
    product_id: str
    quantity: int
    expected_points: int | None
    outcome: Outcome = Outcome.UNKNOWN
    reason: str = ""
    redemption_id: str = ""
    state: int = 0  # the Redemption state the client was shown
    codes: tuple[str, ...] = ()
    points: int = 0


@dataclass
class UseCall:
    customer_id: str
    code: str
    order_id: str
    outcome: Outcome = Outcome.UNKNOWN
    reason: str = ""


@dataclass
class RefundCall:
    request_id: str
    customer_id: str
    redemption_id: str
    codes: tuple[str, ...]
    outcome: Outcome = Outcome.UNKNOWN
    reason: str = ""
    refund_id: str = ""
    points: int = 0


@dataclass
class Journal:
    """What the clients asked and what they were told, in the order they asked."""

    redeems: list[RedeemCall] = field(default_factory=list)
    uses: list[UseCall] = field(default_factory=list)
    refunds: list[RefundCall] = field(default_factory=list)
    quotes: int = 0
    ops: int = 0
    attempts: int = 0
    # Answers no correct service gives (an INTERNAL, an unexpected reason, a wrong quote).
    unexpected: list[str] = field(default_factory=list)

    def tally(self) -> str:
        """How the calls ended, e.g. "redeem ok=120 refused=9 unknown=2 ...", for the log."""
        parts = [f"quote {self.quotes}"]
        for name, calls in (("redeem", self.redeems), ("use", self.uses), ("refund", self.refunds)):
            counts = Counter(c.outcome for c in calls)
            reasons = Counter(c.reason for c in calls if c.reason)
            parts.append(
                f"{name} "
                + " ".join(f"{o.value}={counts[o]}" for o in Outcome)
                + "".join(f" {r}={n}" for r, n in sorted(reasons.items()))
            )
        return "; ".join(parts)
