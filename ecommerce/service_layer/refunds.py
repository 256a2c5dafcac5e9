"""Service layer room: refunds: VOID unused coupons, then give their points back."""

from __future__ import annotations

from dataclasses import dataclass

from ecommerce.domain import coupon_codes
from ecommerce.domain.card_points import ReversalOrder
from ecommerce.domain.commands import RefundCoupons
from ecommerce.domain.errors import DomainError, PointsSystemUnavailable, RequestIdReused
from ecommerce.domain.events import CouponsVoided
from ecommerce.domain.model import Redemption, Refund, RefundState
from ecommerce.service_layer.lookups import customers_coupon, customers_redemption
from ecommerce.service_layer.ports import EcommerceSteps, PointsGateway, UnitOfWork
from servicekit.clock import Clock
from servicekit.errors import counted
from servicekit.ids import new_id
from servicekit.validation import Validator, checked_mul

MAX_CODES_PER_REFUND = 1000


def _canonical_codes(cmd: RefundCoupons) -> tuple[str, ...]:
    v = Validator()
    v.request_id("request_id", cmd.request_id)
    v.customer_id("customer_id", cmd.customer_id)
    v.identifier("redemption_id", cmd.redemption_id)
    canonical: list[str] = []
    if not cmd.codes:
        v.add("codes", "must name at least one coupon")
    elif len(cmd.codes) > MAX_CODES_PER_REFUND:
        v.add("codes", f"must name at most {MAX_CODES_PER_REFUND} coupons")
    else:
        first_seen: dict[str, int] = {}
        for index, raw in enumerate(cmd.codes):
            code = coupon_codes.read(v, f"codes[{index}]", raw)
            if code is None:
                continue
            if code in first_seen:
                v.add(f"codes[{index}]", f"repeats codes[{first_seen[code]}]")
                continue
            first_seen[code] = index
            canonical.append(code)
    v.done()
    return tuple(canonical)


def _record(uow: UnitOfWork, cmd: RefundCoupons, clock: Clock) -> Refund:
    """The refund of this request_id: the one recorded, or a new PENDING one, coupons VOID."""
    codes = _canonical_codes(cmd)
    now = clock()
    with uow:
        existing = uow.refunds.get_by_request_id(cmd.request_id)
        if existing is not None:
            if not existing.asks_the_same(cmd.customer_id, cmd.redemption_id, codes):
                raise RequestIdReused(cmd.request_id)
            return existing
        redemption = customers_redemption(uow, cmd.customer_id, cmd.redemption_id)
        refund = Refund(
            refund_id=new_id("rf"),
            request_id=cmd.request_id,
            customer_id=cmd.customer_id,
            redemption_id=cmd.redemption_id,
            codes=codes,
            points=checked_mul(len(codes), redemption.points_per_coupon, "codes"),
            state=RefundState.PENDING,
            create_time=now,
            update_time=now,
        )
        # The refund (the idempotency record) is written before any coupon is
        # looked at: a concurrent copy of this request meets its unique request_id,
        # waits for this one to finish, and its rerun returns this refund instead
        # of finding the coupons VOID. A refusal below rolls the record back.
        uow.refunds.add(refund)
        for code in codes:
            customers_coupon(uow, cmd.customer_id, code).check_refundable(cmd.redemption_id, now)
        for code in codes:
            if not uow.coupons.void(code, refund.refund_id):
                coupon = customers_coupon(uow, cmd.customer_id, code)
                coupon.check_refundable(cmd.redemption_id, now)
                raise RuntimeError(f"coupon {code} is ISSUED yet could not be voided")
        uow.events.append(CouponsVoided(len(codes), refund))
        uow.commit()
    return refund


async def refund_coupons(
    steps: EcommerceSteps, points: PointsGateway, cmd: RefundCoupons
) -> Refund:
    """VOID unused coupons, then give their points back; idempotent on request_id."""
    _canonical_codes(cmd)
    refund = await steps.write(_record, cmd)
    if refund.state is RefundState.PENDING:
        return await settle(steps, points, refund.refund_id)
    return refund


@dataclass(frozen=True)
class _RefundId:
    refund_id: str


@dataclass(frozen=True)
class _Reversed:
    refund: Refund  # PENDING, as read before the reversal
    reversal_id: str


@dataclass(frozen=True)
class _Refused:
    refund: Refund  # PENDING, as read before the reversal
    reason: str


def _load(uow: UnitOfWork, cmd: _RefundId, clock: Clock) -> tuple[Refund, Redemption]:
    with uow:
        refund = uow.refunds.get(cmd.refund_id)
        redemption = None if refund is None else uow.redemptions.get(refund.redemption_id)
    if refund is None or redemption is None:
        # Only ids this service recorded get here: a missing one is a bug.
        raise LookupError(f"no refund {cmd.refund_id!r} or no redemption of it")
    return refund, redemption


def _undo(uow: UnitOfWork, cmd: _Refused, clock: Clock) -> None:
    """Forget a refund the card-points system refused: its coupons are ISSUED again."""
    with uow:
        events = cmd.refund.discard(cmd.reason, clock())
        if events and uow.refunds.forget(cmd.refund):
            uow.coupons.restore(cmd.refund.refund_id)
            uow.events += events
            uow.commit()


def _complete(uow: UnitOfWork, cmd: _Reversed, clock: Clock) -> Refund:
    now = clock()
    pending = cmd.refund
    with uow:
        completed, events = pending.complete(cmd.reversal_id, now)
        if not events or not uow.refunds.save_outcome(completed):
            # Another settle got here first and gave the points back.
            current = uow.refunds.get(pending.refund_id)
            assert current is not None
            return current
        uow.redemptions.add_refunded_points(pending.redemption_id, pending.points, now)
        uow.events += events
        uow.commit()
    return completed


async def settle(steps: EcommerceSteps, points: PointsGateway, refund_id: str) -> Refund:
    """Drive a PENDING refund to COMPLETED by (re)sending its one ReverseDeduction.

    A definite refusal (for example a closed card account) undoes the refund:
    its coupons are ISSUED again and the refund is forgotten, as if it had been
    refused up front.
    """
    refund, redemption = await steps.read(_load, _RefundId(refund_id))
    if refund.state is RefundState.COMPLETED:
        return refund
    metadata = {
        "refund_id": refund_id,
        "request_id": refund.request_id,
        "redemption_id": refund.redemption_id,
    }
    order = ReversalOrder(
        request_id=refund.reversal_request_id,
        deduction_request_id=redemption.deduction_request_id,
        points=refund.points,
        reason=f"refund {refund_id} of {counted(len(refund.codes), 'coupon')}",
    )
    try:
        reversal = await points.reverse_deduction(order)
    except PointsSystemUnavailable as error:
        raise type(error)(
            f"{error.message}; refund {refund_id} is PENDING: retry with the same request_id",
            metadata=metadata,
        ) from error
    except DomainError as refusal:
        await steps.write(_undo, _Refused(refund, refusal.reason))
        raise DomainError(
            refusal.message, reason=refusal.reason, metadata={**refusal.metadata, **metadata}
        ) from refusal
    return await steps.write(_complete, _Reversed(refund, reversal.reversal_id))
