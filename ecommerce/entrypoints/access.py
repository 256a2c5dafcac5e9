"""Entrypoints room: who may call each e-commerce RPC."""

from __future__ import annotations

from servicekit.auth import Rule, admin_only, customer_owned, customers_and_admins

_SHOP = "/pointsbridge.ecommerce.v1.RedemptionService/"
_ADMIN = "/pointsbridge.ecommerce.v1.EcommerceAdminService/"

RULES: dict[str, Rule] = {
    _SHOP + "ListCouponProducts": customers_and_admins(),
    # A customer acts for themself only; operators (admin) may act for anyone.
    **{
        _SHOP + method: customer_owned("customer_id")
        for method in (
            "QuoteRedemption",
            "RedeemPoints",
            "GetRedemption",
            "ListRedemptions",
            "ListCoupons",
            "UseCoupon",
            "RefundCoupons",
        )
    },
    **{
        _ADMIN + method: admin_only()
        for method in (
            "CreateCouponProduct",
            "SetExchangeRatio",
            "ListExchangeRatios",
            "SetCouponProductActive",
            "LinkCardAccount",
            "ExportRedemptions",
            "ListUnsettled",
        )
    },
}
