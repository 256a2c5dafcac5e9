"""Service layer room: the use cases of parameter management, quotes, redemptions and coupons."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import functools
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from ecommerce.domain import coupon_codes
from ecommerce.domain.card_points import DeductionOrder, ReversalOrder
from ecommerce.domain.errors import (
    AccountNotFound,
    CardNotLinked,
    CouponNotFound,
    DomainError,
    FieldViolation,
    NotOwner,
    PointsMismatch,
    PointsSystemUnavailable,
    ProductAlreadyExists,
    ProductNotFound,
    RateChanged,
    RedemptionNotFound,
    RequestIdReused,
)
from ecommerce.domain.events import (
    CouponProductChanged,
    CouponsRestored,
    CouponsVoided,
    CouponUsed,
    ExchangeRatioChanged,
    PointsRefunded,
    ProductChange,
    RedemptionCompleted,
    RedemptionFailed,
)
from ecommerce.domain.model import (
    CardLink,
    Coupon,
    CouponProduct,
    CouponState,
    ExchangeRatio,
    Quote,
    Redemption,
    RedemptionState,
    Refund,
    RefundState,
    UnsettledKind,
    UnsettledOperation,
    new_id,
)
from ecommerce.service_layer.points_gateway import PointsGateway
from ecommerce.service_layer.unit_of_work import StepRunner, UnitOfWork
from servicekit import paging
from servicekit.clock import Clock
from servicekit.errors import counted
from servicekit.paging import Page
from servicekit.validation import CURRENCY_PATTERN, INT32_MAX, Validator, checked_mul

T = TypeVar("T")
log = logging.getLogger("ecommerce.recovery")
_E = TypeVar("_E", bound=enum.StrEnum)

DEFAULT_MERCHANT_ID = "pointsbridge-ecommerce"
MAX_CODES_PER_REFUND = 1000
ORDER_ID_PATTERN = re.compile(r"[A-Za-z0-9._:\-]{1,64}")


@dataclass(frozen=True)
class Dependencies:
    """What the use cases run against; bootstrap builds the real one, tests the fakes.

    Database steps are synchronous functions of a fresh unit of work, run through
    `step`; a step may be rerun from the top after a transient conflict, so each
    one reads before it writes and commits at most once. Use cases that call the
    card-points system commit their first step, call it with no transaction
    open, then commit the outcome in another step.
    """

    runner: StepRunner
    uow: Callable[[], UnitOfWork]
    points: PointsGateway
    clock: Clock
    merchant_id: str = DEFAULT_MERCHANT_ID
    # Receives the domain events of every committed step (metrics, for one).
    publish: Callable[[Sequence[object]], None] = lambda events: None
    # Read-only units of work: on SQLite they neither take the write lock nor wait for
    # it. Without one, reads run in `uow`'s.
    read_uow: Callable[[], UnitOfWork] | None = None

    async def step(self, fn: Callable[[UnitOfWork], T]) -> T:
        uow = self.uow()
        try:
            return await self.runner.write(lambda: fn(uow))
        finally:
            self.publish(uow.committed_events)

    async def read(self, fn: Callable[[UnitOfWork], T]) -> T:
        """A step that only reads (and never commits)."""
        uow = (self.read_uow or self.uow)()
        return await self.runner.run(lambda: fn(uow))


def _state_filter(v: Validator, field: str, name: str, states: type[_E]) -> _E | None:
    if not name:
        return None
    try:
        return states(name)
    except ValueError:
        v.add(field, f"must be one of {', '.join(states)} or unspecified")
        return None


def _product_not_found(product_id: str) -> ProductNotFound:
    return ProductNotFound(f"no coupon product {product_id!r}", metadata={"product_id": product_id})


def _require_product(uow: UnitOfWork, product_id: str) -> CouponProduct:
    product = uow.products.get(product_id)
    if product is None:
        raise _product_not_found(product_id)
    return product


def _as_seen(coupon: Coupon, now: datetime) -> Coupon:
    """The coupon as a reader sees it: ISSUED past its expiry reads as EXPIRED."""
    return dataclasses.replace(coupon, state=coupon.state_at(now))


# ---------------------------------------------------------------- parameter management


async def create_coupon_product(
    deps: Dependencies,
    *,
    product_id: str,
    display_name: str,
    face_value_minor: int,
    currency: str,
    points_per_coupon: int,
    validity_days: int,
    max_quantity_per_redemption: int,
) -> CouponProduct:
    v = Validator()
    v.identifier("product_id", product_id)
    v.text("display_name", display_name, max_len=200, required=True)
    v.positive("face_value_minor", face_value_minor)
    v.pattern(
        "currency", currency, CURRENCY_PATTERN, "an ISO 4217 code of three upper-case letters"
    )
    v.positive("points_per_coupon", points_per_coupon)
    v.in_range("validity_days", validity_days, 1, 3650)
    v.in_range("max_quantity_per_redemption", max_quantity_per_redemption, 1, 1000)
    v.done()
    product = CouponProduct(
        product_id=product_id,
        display_name=display_name,
        face_value_minor=face_value_minor,
        currency=currency,
        points_per_coupon=points_per_coupon,
        ratio_version=1,
        validity_days=validity_days,
        max_quantity_per_redemption=max_quantity_per_redemption,
        active=True,
        create_time=deps.clock(),
    )

    def create(uow: UnitOfWork) -> CouponProduct:
        with uow:
            if uow.products.get(product_id) is not None:
                raise ProductAlreadyExists(
                    f"coupon product {product_id!r} already exists",
                    metadata={"product_id": product_id},
                )
            uow.products.add(product)
            uow.ratios.add(ExchangeRatio(product_id, 1, points_per_coupon, product.create_time))
            uow.events.append(
                CouponProductChanged(product, ProductChange.CREATED, product.create_time)
            )
            uow.commit()
        return product

    return await deps.step(create)


async def set_exchange_ratio(
    deps: Dependencies, *, product_id: str, points_per_coupon: int
) -> tuple[ExchangeRatio, CouponProduct]:
    v = Validator()
    v.identifier("product_id", product_id)
    v.positive("points_per_coupon", points_per_coupon)
    v.done()
    now = deps.clock()

    def set_ratio(uow: UnitOfWork) -> tuple[ExchangeRatio, CouponProduct]:
        with uow:
            product = _require_product(uow, product_id)
            # Two concurrent changes pick the same version; the unique
            # (product_id, version) refuses one, whose rerun takes the next.
            ratio = ExchangeRatio(
                product_id, uow.ratios.latest_version(product_id) + 1, points_per_coupon, now
            )
            uow.ratios.add(ratio)
            uow.products.set_ratio(product_id, points_per_coupon, ratio.version, now)
            uow.events.append(ExchangeRatioChanged(ratio))
            uow.commit()
        return ratio, dataclasses.replace(
            product, points_per_coupon=points_per_coupon, ratio_version=ratio.version
        )

    return await deps.step(set_ratio)


async def list_exchange_ratios(
    deps: Dependencies, *, product_id: str, page_size: int, page_token: str
) -> Page[ExchangeRatio]:
    v = Validator()
    v.identifier("product_id", product_id)
    limit = paging.page_size(v, "page_size", page_size)
    before = paging.decode_token(v, "page_token", page_token)
    v.done()

    def list_ratios(uow: UnitOfWork) -> Page[ExchangeRatio]:
        with uow:
            _require_product(uow, product_id)
            page = uow.ratios.page(product_id, before=before, limit=limit)
        return page

    return await deps.read(list_ratios)


async def set_coupon_product_active(
    deps: Dependencies, *, product_id: str, active: bool
) -> CouponProduct:
    v = Validator()
    v.identifier("product_id", product_id)
    v.done()
    now = deps.clock()

    def set_active(uow: UnitOfWork) -> CouponProduct:
        with uow:
            product = dataclasses.replace(_require_product(uow, product_id), active=active)
            uow.products.set_active(product_id, active, now)
            change = ProductChange.ACTIVATED if active else ProductChange.DEACTIVATED
            uow.events.append(CouponProductChanged(product, change, now))
            uow.commit()
        return product

    return await deps.step(set_active)


async def link_card_account(
    deps: Dependencies, *, customer_id: str, card_account_id: str
) -> CardLink:
    v = Validator()
    v.customer_id("customer_id", customer_id)
    v.identifier("card_account_id", card_account_id)
    v.done()
    account = await deps.points.get_account(card_account_id)
    account.check_active()
    link = CardLink(customer_id, card_account_id, deps.clock())

    def put(uow: UnitOfWork) -> CardLink:
        with uow:
            uow.links.put(link)
            uow.commit()
        return link

    return await deps.step(put)


async def list_coupon_products(
    deps: Dependencies, *, page_size: int, page_token: str, include_inactive: bool
) -> Page[CouponProduct]:
    v = Validator()
    limit = paging.page_size(v, "page_size", page_size)
    after = paging.decode_token(v, "page_token", page_token)
    v.done()

    def list_products(uow: UnitOfWork) -> Page[CouponProduct]:
        with uow:
            page = uow.products.page(include_inactive=include_inactive, after=after, limit=limit)
        return page

    return await deps.read(list_products)


# ---------------------------------------------------------------- quotes and redemptions


def _check_order(v: Validator, customer_id: str, product_id: str, quantity: int) -> None:
    v.customer_id("customer_id", customer_id)
    v.identifier("product_id", product_id)
    v.positive("quantity", quantity, maximum=INT32_MAX)


async def quote_redemption(
    deps: Dependencies, *, customer_id: str, product_id: str, quantity: int
) -> Quote:
    v = Validator()
    _check_order(v, customer_id, product_id, quantity)
    v.done()

    def quote(uow: UnitOfWork) -> tuple[Quote, CardLink | None]:
        with uow:
            return _require_product(uow, product_id).quote(quantity), uow.links.get(customer_id)

    result, link = await deps.read(quote)
    if link is None:
        return result
    result = dataclasses.replace(result, card_linked=True)
    try:
        account = await deps.points.get_account(link.card_account_id)
    except (PointsSystemUnavailable, AccountNotFound):
        # A quote is advice: without the balance it is still worth giving.
        return result
    return dataclasses.replace(result, available_points=account.balance)


def _with_coupons(uow: UnitOfWork, redemption: Redemption, now: datetime) -> Redemption:
    coupons = uow.coupons.of_redemptions([redemption.redemption_id])[redemption.redemption_id]
    return dataclasses.replace(redemption, coupons=tuple(_as_seen(c, now) for c in coupons))


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


async def redeem_points(
    deps: Dependencies,
    *,
    request_id: str,
    customer_id: str,
    product_id: str,
    quantity: int,
    expected_points: int | None,
) -> Redemption:
    """Exactly once per request_id: record PENDING, deduct, then issue the coupons."""
    v = Validator()
    v.request_id("request_id", request_id)
    _check_order(v, customer_id, product_id, quantity)
    if expected_points is not None:
        v.positive("expected_points", expected_points)
    v.done()
    now = deps.clock()

    def record(uow: UnitOfWork) -> Redemption:
        with uow:
            existing = uow.redemptions.get_by_request_id(request_id)
            if existing is not None:
                # A replay is judged by what was recorded, never by today's ratio.
                if not existing.asks_the_same(customer_id, product_id, quantity, expected_points):
                    raise RequestIdReused(request_id)
                return _with_coupons(uow, existing, now)
            quote = _require_product(uow, product_id).quote(quantity)
            link = uow.links.get(customer_id)
            if link is None:
                raise CardNotLinked(
                    f"customer {customer_id!r} has no linked card account",
                    metadata={"customer_id": customer_id},
                )
            if expected_points is not None and expected_points != quote.points_required:
                raise _unexpected_points(uow, quote, expected_points)
            redemption = Redemption(
                redemption_id=new_id("rd"),
                request_id=request_id,
                customer_id=customer_id,
                product_id=product_id,
                quantity=quantity,
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
        return redemption

    redemption = await deps.step(record)
    if redemption.state is RedemptionState.PENDING:
        # Just read in the step above: settle it without loading it again.
        return await _settle(deps, redemption)
    return _outcome(redemption)


def _outcome(redemption: Redemption) -> Redemption:
    """A finished redemption as its caller sees it: FAILED ones replay their refusal."""
    if redemption.state is RedemptionState.FAILED:
        raise redemption.refusal()
    return redemption


async def settle_redemption(deps: Dependencies, redemption_id: str) -> Redemption:
    """Drive a redemption to COMPLETED or FAILED by (re)sending its one DeductPoints.

    Safe to call any number of times, concurrently too: the deduction request_id
    is derived from the redemption, and only the caller that moves the row out
    of PENDING issues coupons.
    """

    def load(uow: UnitOfWork) -> Redemption:
        with uow:
            redemption = uow.redemptions.get(redemption_id)
            if redemption is None:
                raise RedemptionNotFound(
                    f"no redemption {redemption_id!r}", metadata={"redemption_id": redemption_id}
                )
            return _with_coupons(uow, redemption, deps.clock())

    return await _settle(deps, await deps.read(load))


async def _settle(deps: Dependencies, redemption: Redemption) -> Redemption:
    """settle_redemption, from the redemption as a step has just read or created it."""
    redemption_id = redemption.redemption_id
    if redemption.state is not RedemptionState.PENDING:
        return _outcome(redemption)
    order = DeductionOrder(
        request_id=redemption.deduction_request_id,
        account_id=redemption.card_account_id,
        points=redemption.points,
        coupon_quantity=redemption.quantity,
        points_per_coupon=redemption.points_per_coupon,
        merchant_id=deps.merchant_id,
    )
    try:
        deduction = await deps.points.deduct_points(order)
    except PointsSystemUnavailable as error:
        raise type(error)(
            f"{error.message}; redemption {redemption_id} is PENDING: retry with the same "
            "request_id",
            metadata={"redemption_id": redemption_id, "request_id": redemption.request_id},
        ) from error
    except DomainError as refusal:
        reason = refusal.reason

        def fail(uow: UnitOfWork) -> Redemption:
            now = deps.clock()
            with uow:
                failed = uow.redemptions.fail(redemption_id, reason, now)
                current = uow.redemptions.get(redemption_id)
                assert current is not None
                if failed:
                    uow.events.append(RedemptionFailed(reason, current))
                current = _with_coupons(uow, current, now)
                uow.commit()
            return current

        return _outcome(await deps.step(fail))

    def complete(uow: UnitOfWork) -> Redemption:
        now = deps.clock()
        with uow:
            if not uow.redemptions.complete(redemption_id, deduction.deduction_id, now):
                # Another settle got here first and issued the coupons.
                current = uow.redemptions.get(redemption_id)
                assert current is not None
                return _with_coupons(uow, current, now)
            product = uow.products.get(redemption.product_id)
            assert product is not None, "coupon products are never deleted"
            coupons = redemption.issue_coupons(product, now)
            uow.coupons.add_all(coupons)
            completed = dataclasses.replace(
                redemption,
                state=RedemptionState.COMPLETED,
                deduction_id=deduction.deduction_id,
                update_time=now,
                coupons=tuple(coupons),
            )
            uow.events.append(RedemptionCompleted(redemption.points, len(coupons), completed))
            uow.commit()
        return completed

    return _outcome(await deps.step(complete))


async def settle_pending_redemptions(deps: Dependencies, *, limit: int = 100) -> int:
    """Resolve PENDING redemptions (for a recovery loop); returns how many were finished."""

    def pending(uow: UnitOfWork) -> list[str]:
        with uow:
            return uow.redemptions.pending_ids(limit)

    finished = 0
    for redemption_id in await deps.read(pending):
        try:
            await settle_redemption(deps, redemption_id)
        except PointsSystemUnavailable:
            continue
        except DomainError:
            pass  # FAILED is finished too
        finished += 1
    return finished


async def get_redemption(deps: Dependencies, *, customer_id: str, redemption_id: str) -> Redemption:
    v = Validator()
    v.customer_id("customer_id", customer_id)
    v.identifier("redemption_id", redemption_id)
    v.done()

    def get(uow: UnitOfWork) -> Redemption:
        with uow:
            redemption = _customers_redemption(uow, customer_id, redemption_id)
            return _with_coupons(uow, redemption, deps.clock())

    return await deps.read(get)


async def list_redemptions(
    deps: Dependencies,
    *,
    customer_id: str | None,
    page_size: int,
    page_token: str,
    state: str,
) -> Page[Redemption]:
    """A customer's redemptions, or with customer_id None every customer's, newest first."""
    v = Validator()
    if customer_id is not None:
        v.customer_id("customer_id", customer_id)
    only = _state_filter(v, "state", state, RedemptionState)
    limit = paging.page_size(v, "page_size", page_size)
    before = paging.decode_token(v, "page_token", page_token)
    v.done()

    def list_page(uow: UnitOfWork) -> Page[Redemption]:
        now = deps.clock()
        with uow:
            page = uow.redemptions.page(customer_id, state=only, before=before, limit=limit)
            coupons = uow.coupons.of_redemptions([r.redemption_id for r in page.items])
        items = [
            dataclasses.replace(
                r, coupons=tuple(_as_seen(c, now) for c in coupons[r.redemption_id])
            )
            for r in page.items
        ]
        return Page(items, page.next_page_token)

    return await deps.read(list_page)


# ---------------------------------------------------------------- coupons


async def list_coupons(
    deps: Dependencies,
    *,
    customer_id: str,
    state: str,
    page_size: int,
    page_token: str,
) -> Page[Coupon]:
    v = Validator()
    v.customer_id("customer_id", customer_id)
    only = _state_filter(v, "state", state, CouponState)
    limit = paging.page_size(v, "page_size", page_size)
    before = paging.decode_token(v, "page_token", page_token)
    v.done()

    def list_page(uow: UnitOfWork) -> Page[Coupon]:
        now = deps.clock()
        with uow:
            page = uow.coupons.page(customer_id, state=only, now=now, before=before, limit=limit)
        return Page([_as_seen(c, now) for c in page.items], page.next_page_token)

    return await deps.read(list_page)


def _customers_coupon(uow: UnitOfWork, customer_id: str, code: str) -> Coupon:
    coupon = uow.coupons.get(code)
    missing = CouponNotFound(f"there is no coupon {code}", metadata={"code": code})
    if coupon is None:
        raise missing
    if coupon.customer_id != customer_id:
        raise NotOwner(
            f"coupon {code} belongs to another customer than {customer_id!r}",
            concealed=missing,
            metadata={"code": code},
        )
    return coupon


def _customers_redemption(uow: UnitOfWork, customer_id: str, redemption_id: str) -> Redemption:
    redemption = uow.redemptions.get(redemption_id)
    missing = RedemptionNotFound(
        f"there is no redemption {redemption_id!r}", metadata={"redemption_id": redemption_id}
    )
    if redemption is None:
        raise missing
    if redemption.customer_id != customer_id:
        raise NotOwner(
            f"redemption {redemption_id!r} belongs to another customer than {customer_id!r}",
            concealed=missing,
            metadata={"redemption_id": redemption_id},
        )
    return redemption


async def use_coupon(deps: Dependencies, *, customer_id: str, code: str, order_id: str) -> Coupon:
    """Spend a coupon on an order exactly once; the same order replays, another is refused."""
    v = Validator()
    v.customer_id("customer_id", customer_id)
    canonical = coupon_codes.read(v, "code", code)
    v.pattern("order_id", order_id, ORDER_ID_PATTERN, "1-64 characters of [A-Za-z0-9._:-]")
    v.done()
    assert canonical is not None

    def use(uow: UnitOfWork) -> Coupon:
        now = deps.clock()
        with uow:
            coupon = _customers_coupon(uow, customer_id, canonical)
            if coupon.check_usable(order_id, now):
                return _as_seen(coupon, now)
            if not uow.coupons.use(canonical, order_id, now):
                # Lost a race: whoever won decides what this request gets.
                current = _customers_coupon(uow, customer_id, canonical)
                if current.check_usable(order_id, now):
                    return _as_seen(current, now)
                raise RuntimeError(f"coupon {canonical} is ISSUED yet could not be used")
            used = dataclasses.replace(
                coupon, state=CouponState.USED, used_order_id=order_id, use_time=now
            )
            uow.events.append(CouponUsed(canonical, used))
            uow.commit()
        return used

    return await deps.step(use)


def _check_refund_request(
    request_id: str, customer_id: str, redemption_id: str, codes: Sequence[str]
) -> list[str]:
    v = Validator()
    v.request_id("request_id", request_id)
    v.customer_id("customer_id", customer_id)
    v.identifier("redemption_id", redemption_id)
    canonical: list[str] = []
    if not codes:
        v.add("codes", "must name at least one coupon")
    elif len(codes) > MAX_CODES_PER_REFUND:
        v.add("codes", f"must name at most {MAX_CODES_PER_REFUND} coupons")
    else:
        first_seen: dict[str, int] = {}
        for index, raw in enumerate(codes):
            code = coupon_codes.read(v, f"codes[{index}]", raw)
            if code is None:
                continue
            if code in first_seen:
                v.add(f"codes[{index}]", f"repeats codes[{first_seen[code]}]")
                continue
            first_seen[code] = index
            canonical.append(code)
    v.done()
    return canonical


async def refund_coupons(
    deps: Dependencies,
    *,
    request_id: str,
    customer_id: str,
    redemption_id: str,
    codes: Sequence[str],
) -> Refund:
    """VOID unused coupons, then give their points back; idempotent on request_id."""
    canonical = _check_refund_request(request_id, customer_id, redemption_id, codes)

    def record(uow: UnitOfWork) -> Refund:
        now = deps.clock()
        with uow:
            existing = uow.refunds.get_by_request_id(request_id)
            if existing is not None:
                if not existing.asks_the_same(customer_id, redemption_id, canonical):
                    raise RequestIdReused(request_id)
                return existing
            redemption = _customers_redemption(uow, customer_id, redemption_id)
            refund = Refund(
                refund_id=new_id("rf"),
                request_id=request_id,
                customer_id=customer_id,
                redemption_id=redemption_id,
                codes=tuple(canonical),
                points=checked_mul(len(canonical), redemption.points_per_coupon, "codes"),
                state=RefundState.PENDING,
                create_time=now,
                update_time=now,
            )
            # The refund (the idempotency record) is written before any coupon is
            # looked at: a concurrent copy of this request meets its unique request_id,
            # waits for this one to finish, and its rerun returns this refund instead
            # of finding the coupons VOID. A refusal below rolls the record back.
            uow.refunds.add(refund)
            for code in canonical:
                _customers_coupon(uow, customer_id, code).check_refundable(redemption_id, now)
            for code in canonical:
                if not uow.coupons.void(code, refund.refund_id, now):
                    _customers_coupon(uow, customer_id, code).check_refundable(redemption_id, now)
                    raise RuntimeError(f"coupon {code} is ISSUED yet could not be voided")
            uow.events.append(CouponsVoided(len(canonical), refund))
            uow.commit()
        return refund

    refund = await deps.step(record)
    if refund.state is RefundState.PENDING:
        return await settle_refund(deps, refund.refund_id)
    return refund


async def settle_refund(deps: Dependencies, refund_id: str) -> Refund:
    """Drive a PENDING refund to COMPLETED by (re)sending its one ReverseDeduction.

    A definite refusal (for example a closed card account) undoes the refund:
    its coupons are ISSUED again and the refund is forgotten, as if it had been
    refused up front.
    """

    def load(uow: UnitOfWork) -> tuple[Refund, Redemption]:
        with uow:
            refund = uow.refunds.get(refund_id)
            redemption = None if refund is None else uow.redemptions.get(refund.redemption_id)
        if refund is None or redemption is None:
            raise DomainError(f"no refund {refund_id!r}", reason="INTERNAL")
        return refund, redemption

    refund, redemption = await deps.read(load)
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
        reversal = await deps.points.reverse_deduction(order)
    except PointsSystemUnavailable as error:
        raise type(error)(
            f"{error.message}; refund {refund_id} is PENDING: retry with the same request_id",
            metadata=metadata,
        ) from error
    except DomainError as refusal:
        refused = refusal.reason

        def undo(uow: UnitOfWork) -> None:
            with uow:
                if uow.refunds.discard(refund_id):
                    restored = uow.coupons.restore(refund_id)
                    uow.events.append(CouponsRestored(restored, refund, refused, deps.clock()))
                    uow.commit()

        await deps.step(undo)
        raise DomainError(
            refusal.message, reason=refusal.reason, metadata={**refusal.metadata, **metadata}
        ) from refusal

    def complete(uow: UnitOfWork) -> Refund:
        now = deps.clock()
        with uow:
            completed = uow.refunds.complete(refund_id, reversal.reversal_id, now)
            if completed:
                uow.redemptions.add_refunded_points(refund.redemption_id, refund.points, now)
            current = uow.refunds.get(refund_id)
            assert current is not None
            if completed:
                uow.events.append(PointsRefunded(refund.points, current))
            uow.commit()
        assert current is not None
        return current

    return await deps.step(complete)


# ---------------------------------------------------------------- recovery and reconciliation


@dataclass(frozen=True)
class RecoveryPolicy:
    """How the recovery loop sweeps. A row is only taken once nothing has touched it for
    `settle_delay`, so the loop does not race a first attempt still in flight."""

    batch: int = 100
    # How long a claim lasts unless renewed; a sweep renews its claims every third of
    # it while it works, so only a dead sweeper's claims run out, within `lease`.
    lease: timedelta = timedelta(seconds=10)
    settle_delay: timedelta = timedelta(seconds=5)
    review_after: timedelta = timedelta(minutes=15)


@dataclass(frozen=True)
class RecoveryReport:
    settled: int
    unsettled: list[UnsettledOperation]

    @property
    def needs_review(self) -> list[UnsettledOperation]:
        return [op for op in self.unsettled if op.needs_review]


async def recover(deps: Dependencies, policy: RecoveryPolicy) -> RecoveryReport:
    """One sweep: settle every PENDING redemption and refund this replica can claim.

    Claims are leases in the database, so replicas sweeping together never work
    on the same row at once; a claim is released once its attempt is over,
    whatever the outcome, so the next sweep retries what is still unknown.
    """
    now = deps.clock()

    def claim(uow: UnitOfWork) -> tuple[list[str], list[str]]:
        untouched_since, lease_until = now - policy.settle_delay, now + policy.lease
        with uow:
            claimed = (
                uow.redemptions.claim_pending(
                    now=now,
                    untouched_since=untouched_since,
                    lease_until=lease_until,
                    limit=policy.batch,
                ),
                uow.refunds.claim_pending(
                    now=now,
                    untouched_since=untouched_since,
                    lease_until=lease_until,
                    limit=policy.batch,
                ),
            )
            uow.commit()
        return claimed

    redemption_ids, refund_ids = await deps.step(claim)
    held = _Claims(set(redemption_ids), set(refund_ids))
    renewing = asyncio.create_task(_keep_claims(deps, policy.lease, held))
    settled = 0
    try:
        for redemption_id in redemption_ids:
            settled += await _settled(settle_redemption(deps, redemption_id))
            held.redemptions.discard(redemption_id)
        for refund_id in refund_ids:
            settled += await _settled(settle_refund(deps, refund_id))
            held.refunds.discard(refund_id)
    finally:
        # Stopped, and its last renewal finished, before the release: a renewal
        # landing after it would hold the rows for another lease.
        held.done.set()
        await renewing

        def release(uow: UnitOfWork) -> None:
            with uow:
                uow.redemptions.release(redemption_ids)
                uow.refunds.release(refund_ids)
                uow.commit()

        await deps.step(release)
    return RecoveryReport(settled, await list_unsettled(deps, policy.review_after, policy.batch))


@dataclass
class _Claims:
    """The rows a sweep still works on, and whether it is over."""

    redemptions: set[str]
    refunds: set[str]
    done: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)


async def _keep_claims(deps: Dependencies, lease: timedelta, held: _Claims) -> None:
    """Renew `held`'s claims every third of `lease` until the sweep is done.

    A renewal that fails only lets a claim run out: another replica may then settle the
    same row, which is safe (every settle is idempotent), merely redundant.
    """
    every = lease.total_seconds() / 3
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(held.done.wait(), every)
        if held.done.is_set():
            return
        try:
            await deps.step(
                functools.partial(
                    _renew_claims,
                    sorted(held.redemptions),
                    sorted(held.refunds),
                    deps.clock() + lease,
                )
            )
        except Exception:
            log.warning("could not renew recovery claims; they may lapse", exc_info=True)


def _renew_claims(
    redemptions: list[str], refunds: list[str], lease_until: datetime, uow: UnitOfWork
) -> None:
    with uow:
        uow.redemptions.renew(redemptions, lease_until)
        uow.refunds.renew(refunds, lease_until)
        uow.commit()


async def _settled(attempt: Awaitable[object]) -> int:
    """1 if the attempt reached a final state (a refusal is final too), 0 if still unknown."""
    try:
        await attempt
    except PointsSystemUnavailable:
        return 0
    except DomainError:
        return 1
    return 1


async def list_unsettled(
    deps: Dependencies, review_after: timedelta, limit: int
) -> list[UnsettledOperation]:
    """PENDING redemptions and refunds, oldest first; old ones are flagged for review."""
    now = deps.clock()

    def load(uow: UnitOfWork) -> list[UnsettledOperation]:
        with uow:
            redemptions = uow.redemptions.unsettled(limit)
            refunds = uow.refunds.unsettled(limit)
        operations = [
            UnsettledOperation(
                UnsettledKind.REDEMPTION,
                r.redemption_id,
                r.request_id,
                r.customer_id,
                r.points,
                r.create_time,
                now - r.create_time > review_after,
            )
            for r in redemptions
        ] + [
            UnsettledOperation(
                UnsettledKind.REFUND,
                f.refund_id,
                f.request_id,
                f.customer_id,
                f.points,
                f.create_time,
                now - f.create_time > review_after,
            )
            for f in refunds
        ]
        return sorted(operations, key=lambda op: op.create_time)

    return await deps.read(load)


@dataclass(frozen=True)
class ExportedRedemption:
    redemption: Redemption
    refunds: list[Refund]


async def export_redemptions(
    deps: Dependencies,
    *,
    start: datetime | None,
    end: datetime | None,
    page_size: int,
    page_token: str,
) -> Page[ExportedRedemption]:
    """Every customer's redemptions created in [start, end), oldest first, with refunds."""
    v = Validator()
    limit = paging.page_size(v, "page_size", page_size)
    after = paging.decode_token(v, "page_token", page_token)
    if start is not None and end is not None and start >= end:
        v.add("end_time", "must be after start_time")
    v.done()
    now = deps.clock()
    until = end or now

    def export(uow: UnitOfWork) -> Page[ExportedRedemption]:
        with uow:
            page = uow.redemptions.window(start, until, after=after, limit=limit)
            ids = [r.redemption_id for r in page.items]
            coupons = uow.coupons.of_redemptions(ids)
            refunds = uow.refunds.of_redemptions(ids)
        return Page(
            [
                ExportedRedemption(
                    dataclasses.replace(
                        r, coupons=tuple(_as_seen(c, now) for c in coupons[r.redemption_id])
                    ),
                    refunds[r.redemption_id],
                )
                for r in page.items
            ],
            page.next_page_token,
        )

    if start is not None and start >= until:
        return Page([], "")
    return await deps.read(export)
