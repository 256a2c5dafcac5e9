"""Service layer room: parameter management: coupon products, exchange ratios, card links."""

from __future__ import annotations

import dataclasses

from ecommerce.domain.commands import (
    CreateCouponProduct,
    LinkCardAccount,
    ListCouponProducts,
    ListExchangeRatios,
    SetCouponProductActive,
    SetExchangeRatio,
)
from ecommerce.domain.errors import ProductAlreadyExists
from ecommerce.domain.events import CouponProductChanged, ExchangeRatioChanged, ProductChange
from ecommerce.domain.model import CardLink, CouponProduct, ExchangeRatio
from ecommerce.service_layer.lookups import require_product
from ecommerce.service_layer.ports import EcommerceSteps, PointsGateway, UnitOfWork
from servicekit import paging
from servicekit.clock import Clock
from servicekit.paging import Page
from servicekit.validation import CURRENCY_PATTERN, Validator


def create_coupon_product(uow: UnitOfWork, cmd: CreateCouponProduct, clock: Clock) -> CouponProduct:
    v = Validator()
    v.identifier("product_id", cmd.product_id)
    v.text("display_name", cmd.display_name, max_len=200, required=True)
    v.positive("face_value_minor", cmd.face_value_minor)
    v.pattern(
        "currency", cmd.currency, CURRENCY_PATTERN, "an ISO 4217 code of three upper-case letters"
    )
    v.positive("points_per_coupon", cmd.points_per_coupon)
    v.in_range("validity_days", cmd.validity_days, 1, 3650)
    v.in_range("max_quantity_per_redemption", cmd.max_quantity_per_redemption, 1, 1000)
    v.done()
    product = CouponProduct(
        product_id=cmd.product_id,
        display_name=cmd.display_name,
        face_value_minor=cmd.face_value_minor,
        currency=cmd.currency,
        points_per_coupon=cmd.points_per_coupon,
        ratio_version=1,
        validity_days=cmd.validity_days,
        max_quantity_per_redemption=cmd.max_quantity_per_redemption,
        active=True,
        create_time=clock(),
    )
    with uow:
        if uow.products.get(cmd.product_id) is not None:
            raise ProductAlreadyExists(
                f"coupon product {cmd.product_id!r} already exists",
                metadata={"product_id": cmd.product_id},
            )
        uow.products.add(product)
        uow.ratios.add(ExchangeRatio(cmd.product_id, 1, cmd.points_per_coupon, product.create_time))
        uow.events.append(CouponProductChanged(product, ProductChange.CREATED, product.create_time))
        uow.commit()
    return product


def set_exchange_ratio(
    uow: UnitOfWork, cmd: SetExchangeRatio, clock: Clock
) -> tuple[ExchangeRatio, CouponProduct]:
    """A new version of the product's ratio; the history keeps every earlier one."""
    v = Validator()
    v.identifier("product_id", cmd.product_id)
    v.positive("points_per_coupon", cmd.points_per_coupon)
    v.done()
    now = clock()
    with uow:
        product = require_product(uow, cmd.product_id)
        # The unique (product_id, version) refuses one of two concurrent changes.
        version = uow.ratios.latest_version(cmd.product_id) + 1
        ratio = ExchangeRatio(cmd.product_id, version, cmd.points_per_coupon, now)
        uow.ratios.add(ratio)
        uow.products.set_ratio(cmd.product_id, cmd.points_per_coupon, ratio.version, now)
        uow.events.append(ExchangeRatioChanged(ratio))
        uow.commit()
    return ratio, dataclasses.replace(
        product, points_per_coupon=cmd.points_per_coupon, ratio_version=ratio.version
    )


def list_exchange_ratios(
    uow: UnitOfWork, cmd: ListExchangeRatios, clock: Clock
) -> Page[ExchangeRatio]:
    v = Validator()
    v.identifier("product_id", cmd.product_id)
    limit = paging.page_size(v, "page_size", cmd.page_size)
    before = paging.decode_token(v, "page_token", cmd.page_token)
    v.done()
    with uow:
        require_product(uow, cmd.product_id)
        return uow.ratios.page(cmd.product_id, before=before, limit=limit)


def set_coupon_product_active(
    uow: UnitOfWork, cmd: SetCouponProductActive, clock: Clock
) -> CouponProduct:
    v = Validator()
    v.identifier("product_id", cmd.product_id)
    v.done()
    now = clock()
    with uow:
        product = dataclasses.replace(require_product(uow, cmd.product_id), active=cmd.active)
        uow.products.set_active(cmd.product_id, cmd.active, now)
        change = ProductChange.ACTIVATED if cmd.active else ProductChange.DEACTIVATED
        uow.events.append(CouponProductChanged(product, change, now))
        uow.commit()
    return product


def list_coupon_products(
    uow: UnitOfWork, cmd: ListCouponProducts, clock: Clock
) -> Page[CouponProduct]:
    v = Validator()
    limit = paging.page_size(v, "page_size", cmd.page_size)
    after = paging.decode_token(v, "page_token", cmd.page_token)
    v.done()
    with uow:
        return uow.products.page(include_inactive=cmd.include_inactive, after=after, limit=limit)


def _check_link(cmd: LinkCardAccount) -> None:
    v = Validator()
    v.customer_id("customer_id", cmd.customer_id)
    v.identifier("card_account_id", cmd.card_account_id)
    v.done()


def _put_link(uow: UnitOfWork, cmd: LinkCardAccount, clock: Clock) -> CardLink:
    link = CardLink(cmd.customer_id, cmd.card_account_id, clock())
    with uow:
        uow.links.put(link)
        uow.commit()
    return link


async def link_card_account(
    steps: EcommerceSteps, points: PointsGateway, cmd: LinkCardAccount
) -> CardLink:
    """Link a customer to a card account the card-points system holds ACTIVE."""
    _check_link(cmd)
    account = await points.get_account(cmd.card_account_id)
    account.check_active()
    return await steps.write(_put_link, cmd)
