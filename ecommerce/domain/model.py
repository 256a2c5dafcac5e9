"""Domain room: coupon products, exchange ratios, redemptions, coupons and refunds."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ecommerce.domain import coupon_codes
from ecommerce.domain.errors import (
    CouponAlreadyUsed,
    CouponExpired,
    CouponNotFound,
    CouponVoid,
    DomainError,
    ProductInactive,
    QuantityLimitExceeded,
)
from ecommerce.domain.events import (
    CouponsRestored,
    CouponUsed,
    PointsRefunded,
    RedemptionCompleted,
    RedemptionFailed,
)
from servicekit.errors import counted
from servicekit.validation import checked_mul


class RedemptionState(enum.StrEnum):
    PENDING = "PENDING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


class CouponState(enum.StrEnum):
    ISSUED = "ISSUED"
    USED = "USED"
    VOID = "VOID"
    # Never stored: an ISSUED coupon reads as EXPIRED once its expire_time has passed.
    EXPIRED = "EXPIRED"


class RefundState(enum.StrEnum):
    PENDING = "PENDING"
    COMPLETED = "COMPLETED"


@dataclass(frozen=True)
class Quote:
    product_id: str
    quantity: int
    points_required: int
    points_per_coupon: int
    ratio_version: int
    face_value_total_minor: int
    currency: str
    available_points: int | None = None
    card_linked: bool = False


@dataclass(frozen=True)
class CouponProduct:
    product_id: str
    display_name: str
    face_value_minor: int
    currency: str
    points_per_coupon: int
    ratio_version: int
    validity_days: int
    max_quantity_per_redemption: int
    active: bool
    create_time: datetime

    def check_redeemable(self, quantity: int) -> None:
        if not self.active:
            raise ProductInactive(
                f"coupon product {self.product_id!r} is not on offer",
                metadata={"product_id": self.product_id},
            )
        if quantity > self.max_quantity_per_redemption:
            raise QuantityLimitExceeded(
                f"at most {counted(self.max_quantity_per_redemption, 'coupon')} of "
                f"{self.product_id!r} per redemption",
                metadata={
                    "product_id": self.product_id,
                    "max_quantity_per_redemption": str(self.max_quantity_per_redemption),
                },
            )

    def quote(self, quantity: int) -> Quote:
        """What `quantity` coupons cost now; exact, and refused rather than wrapped on overflow."""
        self.check_redeemable(quantity)
        return Quote(
            product_id=self.product_id,
            quantity=quantity,
            points_required=checked_mul(quantity, self.points_per_coupon, "quantity"),
            points_per_coupon=self.points_per_coupon,
            ratio_version=self.ratio_version,
            face_value_total_minor=checked_mul(quantity, self.face_value_minor, "quantity"),
            currency=self.currency,
        )


@dataclass(frozen=True)
class ExchangeRatio:
    product_id: str
    version: int
    points_per_coupon: int
    effective_time: datetime


@dataclass(frozen=True)
class CardLink:
    customer_id: str
    card_account_id: str
    link_time: datetime


@dataclass(frozen=True)
class Coupon:
    code: str
    customer_id: str
    product_id: str
    redemption_id: str
    face_value_minor: int
    currency: str
    state: CouponState
    issue_time: datetime
    expire_time: datetime
    used_order_id: str = ""
    use_time: datetime | None = None

    def state_at(self, now: datetime) -> CouponState:
        """The one expiry rule: an ISSUED coupon is EXPIRED from its expire_time on."""
        if self.state is CouponState.ISSUED and now >= self.expire_time:
            return CouponState.EXPIRED
        return self.state

    def as_seen(self, now: datetime) -> Coupon:
        """The coupon as a reader sees it at `now`: ISSUED past its expiry reads as EXPIRED."""
        return dataclasses.replace(self, state=self.state_at(now))

    def use(self, order_id: str, now: datetime) -> tuple[Coupon, list[object]]:
        """Spend the coupon on `order_id`: the USED coupon and its event.

        The same order again is an idempotent replay: the coupon as it is, and no
        event. Anything but a live ISSUED coupon is refused.
        """
        state = self.state_at(now)
        if state is CouponState.USED and self.used_order_id == order_id:
            return self.as_seen(now), []
        self._refuse_unless_issued(state)
        used = dataclasses.replace(
            self, state=CouponState.USED, used_order_id=order_id, use_time=now
        )
        return used, [CouponUsed(self.code, used)]

    def check_refundable(self, redemption_id: str, now: datetime) -> None:
        if self.redemption_id != redemption_id:
            raise CouponNotFound(
                f"coupon {self.code} is not part of redemption {redemption_id}",
                metadata={"code": self.code, "redemption_id": redemption_id},
            )
        self._refuse_unless_issued(self.state_at(now))

    def _refuse_unless_issued(self, state: CouponState) -> None:
        metadata = {"code": self.code}
        if state is CouponState.USED:
            raise CouponAlreadyUsed(f"coupon {self.code} was already used", metadata=metadata)
        if state is CouponState.VOID:
            raise CouponVoid(f"coupon {self.code} was refunded", metadata=metadata)
        if state is CouponState.EXPIRED:
            raise CouponExpired(f"coupon {self.code} has expired", metadata=metadata)


@dataclass(frozen=True)
class CouponFilter:
    """A listing's state filter in stored terms: EXPIRED is never stored, so a listing of
    ISSUED or EXPIRED coupons also compares expire_time with the cutoff the rule sets."""

    stored_state: CouponState | None
    live_after: datetime | None = None  # expire_time > live_after
    expired_by: datetime | None = None  # expire_time <= expired_by

    @classmethod
    def of(cls, state: CouponState | None, now: datetime) -> CouponFilter:
        if state is CouponState.EXPIRED:
            return cls(CouponState.ISSUED, expired_by=now)
        if state is CouponState.ISSUED:
            return cls(CouponState.ISSUED, live_after=now)
        return cls(state)


@dataclass(frozen=True)
class Redemption:
    redemption_id: str
    request_id: str
    customer_id: str
    product_id: str
    quantity: int
    points: int
    points_per_coupon: int
    ratio_version: int
    card_account_id: str
    state: RedemptionState
    create_time: datetime
    update_time: datetime
    failure_reason: str = ""
    deduction_id: str = ""
    refunded_points: int = 0
    coupons: tuple[Coupon, ...] = field(default=(), compare=False)

    @property
    def deduction_request_id(self) -> str:
        """Stable across every resend, so the card-points system deducts at most once."""
        return f"redemption:{self.redemption_id}"

    def asks_the_same(
        self, customer_id: str, product_id: str, quantity: int, expected_points: int | None
    ) -> bool:
        """Whether a replayed request matches this one; the recorded ratio is what counts."""
        return (
            self.customer_id == customer_id
            and self.product_id == product_id
            and self.quantity == quantity
            and (expected_points is None or expected_points == self.points)
        )

    def refusal(self) -> DomainError:
        """The card-points refusal that failed this redemption, to be replayed as it was."""
        return DomainError(
            f"redemption {self.redemption_id} was refused: {self.failure_reason}",
            reason=self.failure_reason,
            metadata={"redemption_id": self.redemption_id},
        )

    def complete(
        self, deduction_id: str, coupons: Sequence[Coupon], now: datetime
    ) -> tuple[Redemption, list[object]]:
        """PENDING -> COMPLETED once the points are deducted: the redemption and its events.

        A redemption already out of PENDING is left as it is, with no event.
        """
        if self.state is not RedemptionState.PENDING:
            return self, []
        completed = dataclasses.replace(
            self,
            state=RedemptionState.COMPLETED,
            deduction_id=deduction_id,
            update_time=now,
            coupons=tuple(coupons),
        )
        return completed, [RedemptionCompleted(self.points, len(coupons), completed)]

    def fail(self, reason: str, now: datetime) -> tuple[Redemption, list[object]]:
        """PENDING -> FAILED on a definite refusal: the redemption and its events."""
        if self.state is not RedemptionState.PENDING:
            return self, []
        failed = dataclasses.replace(
            self, state=RedemptionState.FAILED, failure_reason=reason, update_time=now
        )
        return failed, [RedemptionFailed(reason, failed)]

    def answer(self) -> Redemption:
        """The redemption as its caller sees it: a FAILED one replays its refusal."""
        if self.state is RedemptionState.FAILED:
            raise self.refusal()
        return self

    def issue_coupons(self, product: CouponProduct, now: datetime) -> list[Coupon]:
        expire_time = now + timedelta(days=product.validity_days)
        return [
            Coupon(
                code=coupon_codes.new_code(),
                customer_id=self.customer_id,
                product_id=self.product_id,
                redemption_id=self.redemption_id,
                face_value_minor=product.face_value_minor,
                currency=product.currency,
                state=CouponState.ISSUED,
                issue_time=now,
                expire_time=expire_time,
            )
            for _ in range(self.quantity)
        ]


@dataclass(frozen=True)
class Refund:
    refund_id: str
    request_id: str
    customer_id: str
    redemption_id: str
    codes: tuple[str, ...]
    points: int
    state: RefundState
    create_time: datetime
    update_time: datetime
    reversal_id: str = ""

    @property
    def reversal_request_id(self) -> str:
        return f"refund:{self.refund_id}"

    def asks_the_same(self, customer_id: str, redemption_id: str, codes: Sequence[str]) -> bool:
        return (
            self.customer_id == customer_id
            and self.redemption_id == redemption_id
            and sorted(self.codes) == sorted(codes)
        )

    def complete(self, reversal_id: str, now: datetime) -> tuple[Refund, list[object]]:
        """PENDING -> COMPLETED once the points are given back: the refund and its events.

        A refund already out of PENDING is left as it is, with no event.
        """
        if self.state is not RefundState.PENDING:
            return self, []
        completed = dataclasses.replace(
            self, state=RefundState.COMPLETED, reversal_id=reversal_id, update_time=now
        )
        return completed, [PointsRefunded(self.points, completed)]

    def discard(self, reason: str, now: datetime) -> list[object]:
        """Forget a PENDING refund the card-points system refused: its coupons, all
        VOID for it, are ISSUED again. A refund out of PENDING is kept, with no event."""
        if self.state is not RefundState.PENDING:
            return []
        return [CouponsRestored(len(self.codes), self, reason, now)]


class UnsettledKind(enum.StrEnum):
    REDEMPTION = "REDEMPTION"
    REFUND = "REFUND"


@dataclass(frozen=True)
class UnsettledOperation:
    """A redemption or refund whose outcome at the card-points system is not known yet."""

    kind: UnsettledKind
    id: str
    request_id: str
    customer_id: str
    points: int
    create_time: datetime
    needs_review: bool
