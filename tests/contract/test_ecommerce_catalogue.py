"""The e-commerce storage contract, part one: products, ratios, card links, the unit of work."""

from __future__ import annotations

import dataclasses

import pytest

from ecommerce.domain.events import CouponProductChanged, ProductChange
from ecommerce.domain.model import CardLink, CouponProduct, ExchangeRatio
from tests.contract.conftest import EcommerceStore
from tests.contract.ecommerce_rows import LATER, T0, product, redemption, walk


def ratio(version: int, points: int, product_id: str = "tea") -> ExchangeRatio:
    return ExchangeRatio(product_id, version, points, T0)


def with_products(store: EcommerceStore, *products: CouponProduct) -> None:
    with store.uow() as uow:
        for one in products or (product(),):
            uow.products.add(one)
        uow.commit()


# --- products ---------------------------------------------------------------


def test_a_product_reads_back_as_it_was_added(ecommerce: EcommerceStore) -> None:
    with_products(ecommerce)
    with ecommerce.uow() as uow:
        assert uow.products.get("tea") == product()
        assert uow.products.get("coffee") is None


def test_a_second_product_of_one_id_is_refused(ecommerce: EcommerceStore) -> None:
    with_products(ecommerce)
    with pytest.raises(ecommerce.refusal), ecommerce.uow() as uow:
        uow.products.add(product(display_name="Another"))
    with ecommerce.uow() as uow:
        assert uow.products.get("tea") == product()


def test_ratio_and_active_changes_are_stored(ecommerce: EcommerceStore) -> None:
    with_products(ecommerce)
    with ecommerce.uow() as uow:
        uow.products.set_ratio("tea", 1200, 2, LATER)
        uow.products.set_active("tea", False, LATER)
        uow.commit()
    with ecommerce.uow() as uow:
        assert uow.products.get("tea") == product(
            points_per_coupon=1200, ratio_version=2, active=False
        )


def test_products_page_in_the_order_added_and_hide_inactive_ones(
    ecommerce: EcommerceStore,
) -> None:
    ids = ["p5", "p1", "p4", "p2", "p3"]
    with_products(ecommerce, *(product(i, active=i != "p4") for i in ids))
    with ecommerce.uow() as uow:
        every = walk(lambda after: uow.products.page(include_inactive=True, after=after, limit=2))
        assert [[p.product_id for p in page] for page in every] == [
            ["p5", "p1"],
            ["p4", "p2"],
            ["p3"],
        ]
        shown = walk(lambda after: uow.products.page(include_inactive=False, after=after, limit=2))
        assert [[p.product_id for p in page] for page in shown] == [["p5", "p1"], ["p2", "p3"]]
        whole = uow.products.page(include_inactive=True, after=None, limit=5)
        assert (len(whole.items), whole.next_page_token) == (5, "")


# --- exchange ratios ---------------------------------------------------------------


def test_ratio_versions_page_newest_first(ecommerce: EcommerceStore) -> None:
    with_products(ecommerce, product("tea"), product("coffee"))
    with ecommerce.uow() as uow:
        assert uow.ratios.latest_version("tea") == 0
        for version, points in [(1, 1000), (2, 1200), (3, 1000), (4, 900)]:
            uow.ratios.add(ratio(version, points))
        uow.ratios.add(ratio(1, 1000, "coffee"))
        uow.commit()
    with ecommerce.uow() as uow:
        assert uow.ratios.latest_version("tea") == 4
        assert uow.ratios.newest_at("tea", 1000) == ratio(3, 1000)
        assert uow.ratios.newest_at("tea", 1100) is None
        pages = walk(lambda before: uow.ratios.page("tea", before=before, limit=3))
        assert [[r.version for r in page] for page in pages] == [[4, 3, 2], [1]]
        assert uow.ratios.page("milk", before=None, limit=3).items == []


def test_a_second_ratio_of_one_version_is_refused(ecommerce: EcommerceStore) -> None:
    with_products(ecommerce)
    with ecommerce.uow() as uow:
        uow.ratios.add(ratio(1, 1000))
        uow.commit()
    with pytest.raises(ecommerce.refusal), ecommerce.uow() as uow:
        uow.ratios.add(ratio(1, 1200))
    with ecommerce.uow() as uow:
        assert uow.ratios.newest_at("tea", 1000) == ratio(1, 1000)


# --- card links ---------------------------------------------------------------


def test_a_link_is_put_and_replaced(ecommerce: EcommerceStore) -> None:
    with ecommerce.uow() as uow:
        assert uow.links.get("alice") is None
        uow.links.put(CardLink("alice", "card-1", T0))
        uow.commit()
    with ecommerce.uow() as uow:
        assert uow.links.get("alice") == CardLink("alice", "card-1", T0)
        uow.links.put(CardLink("alice", "card-2", LATER))
        uow.commit()
    with ecommerce.uow() as uow:
        assert uow.links.get("alice") == CardLink("alice", "card-2", LATER)


# --- the unit of work ---------------------------------------------------------------


def test_what_was_not_committed_is_rolled_back(ecommerce: EcommerceStore) -> None:
    with_products(ecommerce)
    with ecommerce.uow() as uow:
        uow.links.put(CardLink("x", "y", T0))
        uow.products.set_active("tea", False, LATER)
        uow.redemptions.add(redemption())
        assert uow.links.get("x") == CardLink("x", "y", T0)  # seen inside, before the commit
    with pytest.raises(RuntimeError), ecommerce.uow() as uow:
        uow.ratios.add(ratio(1, 1000))
        raise RuntimeError("the use case failed")
    with ecommerce.uow() as uow:
        assert uow.links.get("x") is None
        assert uow.products.get("tea") == product()
        assert uow.redemptions.get("red-1") is None
        assert uow.ratios.latest_version("tea") == 0


def test_what_follows_a_commit_is_rolled_back_unless_committed(
    ecommerce: EcommerceStore,
) -> None:
    with ecommerce.uow() as uow:
        uow.links.put(CardLink("alice", "card-1", T0))
        uow.commit()
        uow.links.put(CardLink("bob", "card-2", T0))
    with ecommerce.uow() as uow:
        assert uow.links.get("alice") is not None
        assert uow.links.get("bob") is None


def test_only_committed_events_are_committed_events(ecommerce: EcommerceStore) -> None:
    created = CouponProductChanged(product(), ProductChange.CREATED, T0)
    uow = ecommerce.uow()
    with uow:
        uow.products.add(product())
        uow.events.append(created)
        assert uow.committed_events == []
        uow.commit()
        assert uow.committed_events == [created]
        assert uow.events == []
    with uow:  # the same unit of work, run again, rolled back this time
        uow.events.append(dataclasses.replace(created, change=ProductChange.DEACTIVATED))
    assert uow.committed_events == [created]
