"""Fake repositories of products, ratios, card links and coupons."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from datetime import datetime

from ecommerce.domain.model import (
    CardLink,
    Coupon,
    CouponProduct,
    CouponState,
    ExchangeRatio,
)
from servicekit.paging import Page
from tests.ecommerce.fakes.state import FakeState


class FakeProducts:
    def __init__(self, state: FakeState) -> None:
        self.s = state

    def add(self, product: CouponProduct) -> None:
        assert product.product_id not in self.s.products, "uq_coupon_products_product_id"
        self.s.products[product.product_id] = (self.s.next_seq(), product)

    def get(self, product_id: str) -> CouponProduct | None:
        found = self.s.products.get(product_id)
        return None if found is None else found[1]

    def page(self, *, include_inactive: bool, after: int | None, limit: int) -> Page[CouponProduct]:
        rows = sorted(
            (seq, p)
            for seq, p in self.s.products.values()
            if (include_inactive or p.active) and (after is None or seq > after)
        )
        return Page.of([(seq, p) for seq, p in sorted(rows, key=lambda r: r[0])], limit)

    def _change(self, product_id: str, **values: object) -> None:
        seq, product = self.s.products[product_id]
        self.s.products[product_id] = (seq, dataclasses.replace(product, **values))  # type: ignore[arg-type]

    def set_ratio(
        self, product_id: str, points_per_coupon: int, version: int, now: datetime
    ) -> None:
        self._change(product_id, points_per_coupon=points_per_coupon, ratio_version=version)

    def set_active(self, product_id: str, active: bool, now: datetime) -> None:
        self._change(product_id, active=active)


class FakeRatios:
    def __init__(self, state: FakeState) -> None:
        self.s = state

    def add(self, ratio: ExchangeRatio) -> None:
        assert all(
            (r.product_id, r.version) != (ratio.product_id, ratio.version) for r in self.s.ratios
        ), "unique (product_id, version)"
        self.s.ratios.append(ratio)

    def latest_version(self, product_id: str) -> int:
        return max((r.version for r in self.s.ratios if r.product_id == product_id), default=0)

    def newest_at(self, product_id: str, points_per_coupon: int) -> ExchangeRatio | None:
        return max(
            (
                r
                for r in self.s.ratios
                if r.product_id == product_id and r.points_per_coupon == points_per_coupon
            ),
            key=lambda r: r.version,
            default=None,
        )

    def page(self, product_id: str, *, before: int | None, limit: int) -> Page[ExchangeRatio]:
        rows = sorted(
            (
                (r.version, r)
                for r in self.s.ratios
                if r.product_id == product_id and (before is None or r.version < before)
            ),
            key=lambda row: -row[0],
        )
        return Page.of(rows, limit)


class FakeLinks:
    def __init__(self, state: FakeState) -> None:
        self.s = state

    def get(self, customer_id: str) -> CardLink | None:
        return self.s.links.get(customer_id)

    def put(self, link: CardLink) -> None:
        self.s.links[link.customer_id] = link


class FakeCoupons:
    def __init__(self, state: FakeState) -> None:
        self.s = state

    def add_all(self, coupons: Iterable[Coupon]) -> None:
        for coupon in coupons:
            assert coupon.code not in self.s.coupons, "uq_coupons_code"
            self.s.coupons[coupon.code] = (self.s.next_seq(), coupon, None)

    def get(self, code: str) -> Coupon | None:
        found = self.s.coupons.get(code)
        return None if found is None else found[1]

    def of_redemptions(self, redemption_ids: Sequence[str]) -> dict[str, list[Coupon]]:
        found: dict[str, list[Coupon]] = {r: [] for r in redemption_ids}
        for _, coupon, _ in sorted(self.s.coupons.values(), key=lambda row: row[0]):
            if coupon.redemption_id in found:
                found[coupon.redemption_id].append(coupon)
        return found

    def page(
        self,
        customer_id: str,
        *,
        state: CouponState | None,
        now: datetime,
        before: int | None,
        limit: int,
    ) -> Page[Coupon]:
        rows = sorted(
            (
                (seq, c)
                for seq, c, _ in self.s.coupons.values()
                if c.customer_id == customer_id
                and (state is None or c.state_at(now) is state)
                and (before is None or seq < before)
            ),
            key=lambda row: -row[0],
        )
        return Page.of(rows, limit)

    def _change_issued(self, code: str, refund_id: str | None = None, **values: object) -> bool:
        seq, coupon, old_refund = self.s.coupons[code]
        if coupon.state is not CouponState.ISSUED:
            return False  # the guard only: the aggregate decided the change
        changed = dataclasses.replace(coupon, **values)  # type: ignore[arg-type]
        self.s.coupons[code] = (seq, changed, refund_id or old_refund)
        return True

    def use(self, coupon: Coupon) -> bool:
        return self._change_issued(
            coupon.code,
            state=CouponState.USED,
            used_order_id=coupon.used_order_id,
            use_time=coupon.use_time,
        )

    def void(self, code: str, refund_id: str) -> bool:
        return self._change_issued(code, refund_id, state=CouponState.VOID)

    def restore(self, refund_id: str) -> int:
        restored = 0
        for code, (seq, coupon, refund) in list(self.s.coupons.items()):
            if refund == refund_id and coupon.state is CouponState.VOID:
                self.s.coupons[code] = (
                    seq,
                    dataclasses.replace(coupon, state=CouponState.ISSUED),
                    None,
                )
                restored += 1
        return restored
