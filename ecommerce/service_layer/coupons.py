"""Service layer room: a customer's coupons, and spending one at checkout."""

from __future__ import annotations

import re

from ecommerce.domain import coupon_codes
from ecommerce.domain.commands import ListCoupons, UseCoupon
from ecommerce.domain.model import Coupon, CouponState
from ecommerce.service_layer.lookups import customers_coupon
from ecommerce.service_layer.ports import UnitOfWork
from servicekit import paging
from servicekit.clock import Clock
from servicekit.paging import Page
from servicekit.validation import Validator

ORDER_ID_PATTERN = re.compile(r"[A-Za-z0-9._:\-]{1,64}")


def list_coupons(uow: UnitOfWork, cmd: ListCoupons, clock: Clock) -> Page[Coupon]:
    v = Validator()
    v.customer_id("customer_id", cmd.customer_id)
    only = v.state("state", cmd.state, CouponState)
    limit = paging.page_size(v, "page_size", cmd.page_size)
    before = paging.decode_token(v, "page_token", cmd.page_token)
    v.done()
    now = clock()
    with uow:
        page = uow.coupons.page(cmd.customer_id, state=only, now=now, before=before, limit=limit)
    return Page([c.as_seen(now) for c in page.items], page.next_page_token)


def use_coupon(uow: UnitOfWork, cmd: UseCoupon, clock: Clock) -> Coupon:
    """Spend a coupon on an order exactly once; the same order replays, another is refused."""
    v = Validator()
    v.customer_id("customer_id", cmd.customer_id)
    code = coupon_codes.read(v, "code", cmd.code)
    v.pattern("order_id", cmd.order_id, ORDER_ID_PATTERN, "1-64 characters of [A-Za-z0-9._:-]")
    v.done()
    assert code is not None
    now = clock()
    with uow:
        used, events = customers_coupon(uow, cmd.customer_id, code).use(cmd.order_id, now)
        if not events:
            return used  # spent on this very order already
        if not uow.coupons.use(used):
            # Lost a race: whoever won decides what this request gets.
            current = customers_coupon(uow, cmd.customer_id, code)
            replayed, events = current.use(cmd.order_id, now)
            if events:
                raise RuntimeError(f"coupon {code} is ISSUED yet could not be used")
            return replayed
        uow.events += events
        uow.commit()
    return used
