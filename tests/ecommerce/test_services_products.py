"""Use cases of the e-commerce service against fakes: products, links and quotes.

An in-memory store and a fake cardpoints; the world and its helpers are in world.py.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from ecommerce.domain import commands
from ecommerce.domain.card_points import AccountState
from ecommerce.domain.errors import AccountNotFound, DomainError, PointsSystemUnavailable
from ecommerce.service_layer import products, redemptions
from tests.ecommerce.fakes import (
    START,
)
from tests.ecommerce.world import World, add_customer, add_product

# ---------------------------------------------------------------- parameter management


async def test_product_starts_at_ratio_version_1_and_each_change_adds_a_version(
    world: World,
) -> None:
    product = await add_product(world)
    assert (product.ratio_version, product.points_per_coupon, product.active) == (1, 1000, True)
    world.clock.advance(timedelta(hours=1))
    ratio, changed = await world.steps.write(
        products.set_exchange_ratio,
        commands.SetExchangeRatio(product_id="coupon-10", points_per_coupon=1200),
    )
    assert (ratio.version, ratio.points_per_coupon, ratio.effective_time) == (
        2,
        1200,
        START + timedelta(hours=1),
    )
    assert (changed.ratio_version, changed.points_per_coupon) == (2, 1200)
    await world.steps.write(
        products.set_exchange_ratio,
        commands.SetExchangeRatio(product_id="coupon-10", points_per_coupon=900),
    )

    first = await world.steps.read(
        products.list_exchange_ratios,
        commands.ListExchangeRatios(product_id="coupon-10", page_size=2, page_token=""),
    )
    assert [r.version for r in first.items] == [3, 2]
    rest = await world.steps.read(
        products.list_exchange_ratios,
        commands.ListExchangeRatios(
            product_id="coupon-10", page_size=2, page_token=first.next_page_token
        ),
    )
    assert [(r.version, r.points_per_coupon) for r in rest.items] == [(1, 1000)]
    assert rest.next_page_token == ""


async def test_duplicate_product_is_refused(world: World) -> None:
    await add_product(world)
    with pytest.raises(DomainError) as excinfo:
        await add_product(world, points_per_coupon=5)
    assert excinfo.value.reason == "PRODUCT_ALREADY_EXISTS"
    assert world.database.state.products["coupon-10"][1].points_per_coupon == 1000


async def test_every_bad_product_field_is_named_and_nothing_is_stored(world: World) -> None:
    with pytest.raises(DomainError) as excinfo:
        await world.steps.write(
            products.create_coupon_product,
            commands.CreateCouponProduct(
                product_id="no spaces",
                display_name="",
                face_value_minor=0,
                currency="cny",
                points_per_coupon=-1,
                validity_days=0,
                max_quantity_per_redemption=1001,
            ),
        )
    assert excinfo.value.reason == "INVALID_FIELD"
    assert [v.field for v in excinfo.value.violations] == [
        "product_id",
        "display_name",
        "face_value_minor",
        "currency",
        "points_per_coupon",
        "validity_days",
        "max_quantity_per_redemption",
    ]
    assert world.database.commits == 0


async def test_inactive_products_are_listed_only_on_request(world: World) -> None:
    await add_product(world, "a")
    await add_product(world, "b")
    await add_product(world, "c")
    await world.steps.write(
        products.set_coupon_product_active,
        commands.SetCouponProductActive(product_id="b", active=False),
    )
    active = await world.steps.read(
        products.list_coupon_products,
        commands.ListCouponProducts(page_size=0, page_token="", include_inactive=False),
    )
    assert [p.product_id for p in active.items] == ["a", "c"]
    first = await world.steps.read(
        products.list_coupon_products,
        commands.ListCouponProducts(page_size=2, page_token="", include_inactive=True),
    )
    second = await world.steps.read(
        products.list_coupon_products,
        commands.ListCouponProducts(
            page_size=2, page_token=first.next_page_token, include_inactive=True
        ),
    )
    assert [p.product_id for p in first.items + second.items] == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("state", "reason"),
    [(AccountState.FROZEN, "ACCOUNT_FROZEN"), (AccountState.CLOSED, "ACCOUNT_CLOSED")],
)
async def test_link_needs_an_active_account(world: World, state: AccountState, reason: str) -> None:
    world.points.open("card-x", 100, state)
    with pytest.raises(DomainError) as excinfo:
        await products.link_card_account(
            world.steps,
            world.points,
            commands.LinkCardAccount(customer_id="bob", card_account_id="card-x"),
        )
    assert excinfo.value.reason == reason
    with pytest.raises(AccountNotFound):
        await products.link_card_account(
            world.steps,
            world.points,
            commands.LinkCardAccount(customer_id="bob", card_account_id="nope"),
        )
    assert world.database.state.links == {}


async def test_relinking_replaces_the_card(world: World) -> None:
    await add_customer(world, "bob")
    world.points.open("card-new", 5)
    link = await products.link_card_account(
        world.steps,
        world.points,
        commands.LinkCardAccount(customer_id="bob", card_account_id="card-new"),
    )
    assert link.card_account_id == "card-new"
    assert world.database.state.links["bob"].card_account_id == "card-new"


async def test_link_when_cardpoints_is_down_is_unavailable(world: World) -> None:
    world.points.open("card-x", 100)
    world.points.unreachable = 1
    with pytest.raises(PointsSystemUnavailable):
        await products.link_card_account(
            world.steps,
            world.points,
            commands.LinkCardAccount(customer_id="bob", card_account_id="card-x"),
        )


# ---------------------------------------------------------------- quotes


async def test_quote_is_exact_and_shows_the_balance_when_linked(shop: World) -> None:
    quote = await redemptions.quote_redemption(
        shop.steps,
        shop.points,
        commands.QuoteRedemption(customer_id="alice", product_id="coupon-10", quantity=7),
    )
    assert (quote.points_required, quote.face_value_total_minor, quote.available_points) == (
        7000,
        7000,
        10_000,
    )
    assert (quote.points_per_coupon, quote.ratio_version, quote.currency) == (1000, 1, "CNY")
    assert quote.card_linked
    unlinked = await redemptions.quote_redemption(
        shop.steps,
        shop.points,
        commands.QuoteRedemption(customer_id="nobody", product_id="coupon-10", quantity=1),
    )
    # Redeeming would be refused with CARD_NOT_LINKED: the quote says so up front.
    assert (unlinked.available_points, unlinked.card_linked) == (None, False)


async def test_quote_without_cardpoints_leaves_the_balance_out(shop: World) -> None:
    shop.points.unreachable = 1
    quote = await redemptions.quote_redemption(
        shop.steps,
        shop.points,
        commands.QuoteRedemption(customer_id="alice", product_id="coupon-10", quantity=2),
    )
    assert (quote.points_required, quote.available_points, quote.card_linked) == (2000, None, True)


async def test_quote_overflow_is_refused_not_wrapped(world: World) -> None:
    await add_product(world, "huge", points_per_coupon=2**62, max_quantity=10)
    with pytest.raises(DomainError) as excinfo:
        await redemptions.quote_redemption(
            world.steps,
            world.points,
            commands.QuoteRedemption(customer_id="alice", product_id="huge", quantity=2),
        )
    assert excinfo.value.reason == "INVALID_FIELD"
    assert [v.field for v in excinfo.value.violations] == ["quantity"]
