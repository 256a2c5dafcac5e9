"""Service layer room: quotes and redemptions: record PENDING, deduct, then settle."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime

from ecommerce.domain.card_points import DeductionOrder
from ecommerce.domain.commands import GetRedemption, ListRedemptions, QuoteRedemption, RedeemPoints
from ecommerce.domain.errors import (
    AccountNotFound,
    CardNotLinked,
    DomainError,
    FieldViolation,
    PointsMismatch,
    PointsSystemUnavailable,
    RateChanged,
    RequestIdReused,
)
from ecommerce.domain.model import CardLink, CouponProduct, Quote, Redemption, RedemptionState
from ecommerce.service_layer.lookups import (
    customers_redemption,
    require_product,
    with_coupons,
)
from ecommerce.service_layer.ports import EcommerceSteps, PointsGateway, UnitOfWork
from servicekit import paging
from servicekit.clock import Clock
from servicekit.ids import new_id
from servicekit.paging import Page
from servicekit.validation import INT32_MAX, Validator


def _check_order(v: Validator, customer_id: str, product_id: str, quantity: int) -> None:
    v.customer_id("customer_id", customer_id)
    v.identifier("product_id", product_id)
    v.positive("quantity", quantity, maximum=INT32_MAX)


def _quote(uow: UnitOfWork, cmd: QuoteRedemption, clock: Clock) -> tuple[Quote, CardLink | None]:
    with uow:
        quote = require_product(uow, cmd.product_id).quote(cmd.quantity)
        return quote, uow.links.get(cmd.customer_id)


async def quote_redemption(
    steps: EcommerceSteps, points: PointsGateway, cmd: QuoteRedemption
) -> Quote:
    """What the order costs now, and the customer's balance when a card is linked."""
    v = Validator()
    _check_order(v, cmd.customer_id, cmd.product_id, cmd.quantity)
    v.done()
    quote, link = await steps.read(_quote, cmd)
    if link is None:
        return quote
    quote = dataclasses.replace(quote, card_linked=True)
    try:
        account = await points.get_account(link.card_account_id)
    except (PointsSystemUnavailable, AccountNotFound):
        # A quote is advice: without the balance it is still worth giving.
        return quote
    return dataclasses.replace(quote, available_points=account.balance)


def _unexpected_points(uow: UnitOfWork, quote: Quote, expected_points: int) -> DomainError:
    """Why expected_points is not what the redemption costs now, as exactly as is known.

    When an earlier ratio version priced the order at expected_points, the ratio
    changed since that quote; when none did, the points never were a quote.
    """
    metadata = {
        "expected_points": str(expected_points),
        "points_required": str(quote.points_required),
        "ratio_version": str(quote.ratio_version),
    }
    now = f"at ratio version {quote.ratio_version} it costs {quote.points_required} points"
    per_coupon, remainder = divmod(expected_points, quote.quantity)
    quoted = None if remainder else uow.ratios.newest_at(quote.product_id, per_coupon)
    if quoted is not None and quoted.version != quote.ratio_version:
        return RateChanged(
            f"the quote was {expected_points} points, at ratio version {quoted.version}; "
            f"the ratio has changed since: {now}",
            metadata={**metadata, "quoted_ratio_version": str(quoted.version)},
        )
    return PointsMismatch(
        f"expected_points {expected_points} is not what {quote.quantity} x "
        f"{quote.product_id} cost at any ratio version; {now}",
        metadata=metadata,
        violations=[
            FieldViolation(
                "expected_points", f"must be {quote.points_required}, the quote's points"
            )
        ],
    )


@dataclass(frozen=True)
class _Recorded:
    redemption: Redemption
    # The product a new redemption was priced from; what its coupons take from it
    # (face value, currency, validity) never changes, so settling need not read it again.
    product: CouponProduct | None = None


def _record(uow: UnitOfWork, cmd: RedeemPoints, clock: Clock) -> _Recorded:
    """The redemption of this request_id: the one recorded, or a new PENDING one."""
    now = clock()
    with uow:
        existing = uow.redemptions.get_by_request_id(cmd.request_id)
        if existing is not None:
            # A replay is judged by what was recorded, never by today's ratio.
            if not existing.asks_the_same(
                cmd.customer_id, cmd.product_id, cmd.quantity, cmd.expected_points
            ):
                raise RequestIdReused(cmd.request_id)
            return _Recorded(with_coupons(uow, existing, now))
        product = require_product(uow, cmd.product_id)
        quote = product.quote(cmd.quantity)
        link = uow.links.get(cmd.customer_id)
        if link is None:
            raise CardNotLinked(
                f"customer {cmd.customer_id!r} has no linked card account",
                metadata={"customer_id": cmd.customer_id},
            )
        if cmd.expected_points is not None and cmd.expected_points != quote.points_required:
            raise _unexpected_points(uow, quote, cmd.expected_points)
        redemption = Redemption(
            redemption_id=new_id("rd"),
            request_id=cmd.request_id,
            customer_id=cmd.customer_id,
            product_id=cmd.product_id,
            quantity=cmd.quantity,
            points=quote.points_required,
            points_per_coupon=quote.points_per_coupon,
            ratio_version=quote.ratio_version,
            card_account_id=link.card_account_id,
            state=RedemptionState.PENDING,
            create_time=now,
            update_time=now,
        )
        uow.redemptions.add(redemption)
        uow.commit()
    return _Recorded(redemption, product)


async def redeem_points(
    steps: EcommerceSteps, points: PointsGateway, cmd: RedeemPoints
) -> Redemption:
    """Exactly once per request_id: record PENDING, deduct, then issue the coupons."""
    v = Validator()
    v.request_id("request_id", cmd.request_id)
    _check_order(v, cmd.customer_id, cmd.product_id, cmd.quantity)
    if cmd.expected_points is not None:
        v.positive("expected_points", cmd.expected_points)
    v.done()
    recorded = await steps.write(_record, cmd)
    return await settle(steps, points, recorded.redemption, recorded.product)


@dataclass(frozen=True)
class _Deducted:
    redemption: Redemption  # PENDING, as read before the deduction
    deduction_id: str
    product: CouponProduct | None  # None: read it


@dataclass(frozen=True)
class _Refused:
    redemption: Redemption  # PENDING, as read before the deduction
    reason: str


def _settled(uow: UnitOfWork, redemption_id: str, now: datetime) -> Redemption:
    """The redemption as the settle that moved it out of PENDING left it."""
    current = uow.redemptions.get(redemption_id)
    assert current is not None
    return with_coupons(uow, current, now)


def _complete(uow: UnitOfWork, cmd: _Deducted, clock: Clock) -> Redemption:
    now = clock()
    pending = cmd.redemption
    with uow:
        product = cmd.product or uow.products.get(pending.product_id)
        assert product is not None, "coupon products are never deleted"
        completed, events = pending.complete(
            cmd.deduction_id, pending.issue_coupons(product, now), now
        )
        if not events or not uow.redemptions.save_outcome(completed):
            # Another settle got here first and issued the coupons.
            return _settled(uow, pending.redemption_id, now)
        uow.coupons.add_all(completed.coupons)
        uow.events += events
        uow.commit()
    return completed


def _fail(uow: UnitOfWork, cmd: _Refused, clock: Clock) -> Redemption:
    now = clock()
    with uow:
        failed, events = cmd.redemption.fail(cmd.reason, now)
        if not events or not uow.redemptions.save_outcome(failed):
            # Another settle got here first: its outcome stands.
            return _settled(uow, cmd.redemption.redemption_id, now)
        uow.events += events
        uow.commit()
    return failed


async def settle(
    steps: EcommerceSteps,
    points: PointsGateway,
    redemption: Redemption,
    product: CouponProduct | None = None,
) -> Redemption:
    """Drive a redemption to COMPLETED or FAILED by (re)sending its one DeductPoints.

    Safe to call any number of times, concurrently too: the deduction request_id
    is derived from the redemption, and only the caller that moves the row out
    of PENDING issues coupons. A FAILED redemption replays its refusal. `product`
    is the one the redemption was priced from when the caller holds it (else read).
    """
    if redemption.state is not RedemptionState.PENDING:
        return redemption.answer()
    order = DeductionOrder(
        request_id=redemption.deduction_request_id,
        account_id=redemption.card_account_id,
        points=redemption.points,
        coupon_quantity=redemption.quantity,
        points_per_coupon=redemption.points_per_coupon,
        merchant_id=points.merchant_id,
    )
    try:
        deduction = await points.deduct_points(order)
    except PointsSystemUnavailable as error:
        raise type(error)(
            f"{error.message}; redemption {redemption.redemption_id} is PENDING: retry with "
            "the same request_id",
            metadata={
                "redemption_id": redemption.redemption_id,
                "request_id": redemption.request_id,
            },
        ) from error
    except DomainError as refusal:
        return (await steps.write(_fail, _Refused(redemption, refusal.reason))).answer()
    deducted = _Deducted(redemption, deduction.deduction_id, product)
    return (await steps.write(_complete, deducted)).answer()


def get_redemption(uow: UnitOfWork, cmd: GetRedemption, clock: Clock) -> Redemption:
    v = Validator()
    v.customer_id("customer_id", cmd.customer_id)
    v.identifier("redemption_id", cmd.redemption_id)
    v.done()
    with uow:
        redemption = customers_redemption(uow, cmd.customer_id, cmd.redemption_id)
        return with_coupons(uow, redemption, clock())


def list_redemptions(uow: UnitOfWork, cmd: ListRedemptions, clock: Clock) -> Page[Redemption]:
    """A customer's redemptions, or with customer_id None every customer's, newest first."""
    v = Validator()
    if cmd.customer_id is not None:
        v.customer_id("customer_id", cmd.customer_id)
    only = v.state("state", cmd.state, RedemptionState)
    limit = paging.page_size(v, "page_size", cmd.page_size)
    before = paging.decode_token(v, "page_token", cmd.page_token)
    v.done()
    now = clock()
    with uow:
        page = uow.redemptions.page(cmd.customer_id, state=only, before=before, limit=limit)
        coupons = uow.coupons.of_redemptions([r.redemption_id for r in page.items])
    items = [
        dataclasses.replace(r, coupons=tuple(c.as_seen(now) for c in coupons[r.redemption_id]))
        for r in page.items
    ]
    return Page(items, page.next_page_token)
