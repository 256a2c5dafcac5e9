"""Use cases of the e-commerce service against fakes: coupons.

An in-memory store and a fake cardpoints; the world and its helpers are in world.py.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from ecommerce.domain import commands, coupon_codes
from ecommerce.domain.errors import DomainError
from ecommerce.domain.model import (
    CouponState,
)
from ecommerce.service_layer import coupons
from tests.ecommerce.fakes import (
    START,
)
from tests.ecommerce.world import World, redeem, refund_coupons, refused, stored_coupons

# ---------------------------------------------------------------- coupons


async def test_a_coupon_is_used_once_and_the_same_order_replays(shop: World) -> None:
    [coupon] = (await redeem(shop, quantity=1)).coupons
    shop.clock.advance(timedelta(minutes=5))
    used = await shop.steps.write(
        coupons.use_coupon,
        commands.UseCoupon(customer_id="alice", code=coupon.code, order_id="order-1"),
    )
    assert (used.state, used.used_order_id, used.use_time) == (
        CouponState.USED,
        "order-1",
        START + timedelta(minutes=5),
    )
    # Typed by a person: lower case and no dashes are forgiven.
    sloppy = coupon.code.replace("-", "").lower()
    assert (
        await shop.steps.write(
            coupons.use_coupon,
            commands.UseCoupon(customer_id="alice", code=sloppy, order_id="order-1"),
        )
        == used
    )
    with pytest.raises(DomainError) as excinfo:
        await shop.steps.write(
            coupons.use_coupon,
            commands.UseCoupon(customer_id="alice", code=coupon.code, order_id="order-2"),
        )
    assert refused(excinfo) == ("COUPON_ALREADY_USED", {"code": coupon.code})


async def test_unknown_foreign_and_mistyped_codes(shop: World) -> None:
    [coupon] = (await redeem(shop, quantity=1)).coupons
    with pytest.raises(DomainError) as foreign:
        await shop.steps.write(
            coupons.use_coupon,
            commands.UseCoupon(customer_id="bob", code=coupon.code, order_id="o"),
        )
    assert foreign.value.reason == "NOT_OWNER"
    with pytest.raises(DomainError) as unknown:
        await shop.steps.write(
            coupons.use_coupon,
            commands.UseCoupon(customer_id="alice", code=coupon_codes.new_code(), order_id="o"),
        )
    assert unknown.value.reason == "COUPON_NOT_FOUND"
    typo = ("2" if coupon.code[0] != "2" else "3") + coupon.code[1:]
    with pytest.raises(DomainError) as mistyped:
        await shop.steps.write(
            coupons.use_coupon, commands.UseCoupon(customer_id="alice", code=typo, order_id="o")
        )
    assert mistyped.value.reason == "INVALID_FIELD"
    assert [v.field for v in mistyped.value.violations] == ["code"]
    assert {c.state for c in stored_coupons(shop)} == {CouponState.ISSUED}


async def test_expired_coupons_read_as_expired_and_cannot_be_used(shop: World) -> None:
    [coupon] = (await redeem(shop, quantity=1)).coupons
    shop.clock.advance(timedelta(days=30))
    listed = await shop.steps.read(
        coupons.list_coupons,
        commands.ListCoupons(customer_id="alice", state="EXPIRED", page_size=0, page_token=""),
    )
    assert [(c.code, c.state) for c in listed.items] == [(coupon.code, CouponState.EXPIRED)]
    issued = await shop.steps.read(
        coupons.list_coupons,
        commands.ListCoupons(customer_id="alice", state="ISSUED", page_size=0, page_token=""),
    )
    assert issued.items == []
    with pytest.raises(DomainError) as excinfo:
        await shop.steps.write(
            coupons.use_coupon,
            commands.UseCoupon(customer_id="alice", code=coupon.code, order_id="o"),
        )
    assert excinfo.value.reason == "COUPON_EXPIRED"
    with pytest.raises(DomainError) as refund:
        await refund_coupons(shop, coupon.redemption_id, [coupon.code], "rf")
    assert refund.value.reason == "COUPON_EXPIRED"


async def test_coupons_list_newest_first_in_pages(shop: World) -> None:
    first = await redeem(shop, "r-1", quantity=2)
    second = await redeem(shop, "r-2", quantity=1)
    page = await shop.steps.read(
        coupons.list_coupons,
        commands.ListCoupons(customer_id="alice", state="", page_size=2, page_token=""),
    )
    rest = await shop.steps.read(
        coupons.list_coupons,
        commands.ListCoupons(
            customer_id="alice", state="", page_size=2, page_token=page.next_page_token
        ),
    )
    expected = [c.code for c in second.coupons] + [c.code for c in reversed(first.coupons)]
    assert [c.code for c in page.items + rest.items] == expected
    assert rest.next_page_token == ""
