"""Entrypoints room: the gRPC servicers, translating protobuf to use-case calls and back."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

import grpc

from ecommerce.domain import commands
from ecommerce.domain.errors import NotOwner
from ecommerce.entrypoints.messages import (
    COUPON_STATES,
    REDEMPTION_STATES,
    coupon_pb,
    link_pb,
    product_pb,
    quote_pb,
    ratio_pb,
    redemption_pb,
    refund_pb,
    unsettled_pb,
)
from ecommerce.service_layer import coupons, products, recovery, redemptions, refunds
from ecommerce.service_layer.ports import EcommerceSteps, PointsGateway
from pointsbridge.ecommerce.v1 import ecommerce_pb2 as pb
from pointsbridge.ecommerce.v1 import ecommerce_pb2_grpc as pb_grpc
from servicekit import paging
from servicekit.auth import ROLE_ADMIN, caller_has
from servicekit.states import state_name
from servicekit.status import rpc
from servicekit.timestamps import optional_time
from servicekit.validation import Validator

Context = grpc.aio.ServicerContext[Any, Any]

_Request = TypeVar("_Request")
_Response = TypeVar("_Response")
_Method = Callable[[Any, _Request, Context], Awaitable[_Response]]


def conceals_owners(method: _Method[_Request, _Response]) -> _Method[_Request, _Response]:
    """To anyone but an operator, another customer's coupon or redemption does not exist.

    Telling a customer NOT_OWNER would confirm that a guessed code is real.
    """

    @functools.wraps(method)
    async def guarded(self: Any, request: _Request, context: Context) -> _Response:
        try:
            return await method(self, request, context)
        except NotOwner as error:
            if caller_has(ROLE_ADMIN):
                raise
            raise error.concealed from None

    return guarded


class RedemptionServicer(pb_grpc.RedemptionServiceServicer):
    """RedemptionService: what storefronts and customers call."""

    def __init__(self, steps: EcommerceSteps, points: PointsGateway) -> None:
        self._steps = steps
        self._points = points

    @rpc
    async def ListCouponProducts(
        self, request: pb.ListCouponProductsRequest, context: Context
    ) -> pb.ListCouponProductsResponse:
        listing = await self._steps.read(
            products.list_coupon_products,
            commands.ListCouponProducts(
                page_size=request.page_size,
                page_token=request.page_token,
                include_inactive=request.include_inactive,
            ),
        )
        return pb.ListCouponProductsResponse(
            products=[product_pb(p) for p in listing.items],
            next_page_token=listing.next_page_token,
        )

    @rpc
    async def QuoteRedemption(
        self, request: pb.QuoteRedemptionRequest, context: Context
    ) -> pb.QuoteRedemptionResponse:
        quote = await redemptions.quote_redemption(
            self._steps,
            self._points,
            commands.QuoteRedemption(
                customer_id=request.customer_id,
                product_id=request.product_id,
                quantity=request.quantity,
            ),
        )
        return pb.QuoteRedemptionResponse(quote=quote_pb(quote))

    @rpc
    async def RedeemPoints(
        self, request: pb.RedeemPointsRequest, context: Context
    ) -> pb.RedeemPointsResponse:
        redemption = await redemptions.redeem_points(
            self._steps,
            self._points,
            commands.RedeemPoints(
                request_id=request.request_id,
                customer_id=request.customer_id,
                product_id=request.product_id,
                quantity=request.quantity,
                expected_points=(
                    request.expected_points if request.HasField("expected_points") else None
                ),
            ),
        )
        return pb.RedeemPointsResponse(redemption=redemption_pb(redemption))

    @rpc
    @conceals_owners
    async def GetRedemption(
        self, request: pb.GetRedemptionRequest, context: Context
    ) -> pb.GetRedemptionResponse:
        redemption = await self._steps.read(
            redemptions.get_redemption,
            commands.GetRedemption(
                customer_id=request.customer_id, redemption_id=request.redemption_id
            ),
        )
        return pb.GetRedemptionResponse(redemption=redemption_pb(redemption))

    @rpc
    async def ListRedemptions(
        self, request: pb.ListRedemptionsRequest, context: Context
    ) -> pb.ListRedemptionsResponse:
        listing = await self._steps.read(
            redemptions.list_redemptions,
            commands.ListRedemptions(
                # Empty lists every customer's; only operators get past the access rule so.
                customer_id=request.customer_id or None,
                page_size=request.page_size,
                page_token=request.page_token,
                state=state_name(request.state, REDEMPTION_STATES),
            ),
        )
        return pb.ListRedemptionsResponse(
            redemptions=[redemption_pb(r) for r in listing.items],
            next_page_token=listing.next_page_token,
        )

    @rpc
    async def ListCoupons(
        self, request: pb.ListCouponsRequest, context: Context
    ) -> pb.ListCouponsResponse:
        listing = await self._steps.read(
            coupons.list_coupons,
            commands.ListCoupons(
                customer_id=request.customer_id,
                state=state_name(request.state, COUPON_STATES),
                page_size=request.page_size,
                page_token=request.page_token,
            ),
        )
        return pb.ListCouponsResponse(
            coupons=[coupon_pb(c) for c in listing.items],
            next_page_token=listing.next_page_token,
        )

    @rpc
    @conceals_owners
    async def UseCoupon(
        self, request: pb.UseCouponRequest, context: Context
    ) -> pb.UseCouponResponse:
        coupon = await self._steps.write(
            coupons.use_coupon,
            commands.UseCoupon(
                customer_id=request.customer_id, code=request.code, order_id=request.order_id
            ),
        )
        return pb.UseCouponResponse(coupon=coupon_pb(coupon))

    @rpc
    @conceals_owners
    async def RefundCoupons(
        self, request: pb.RefundCouponsRequest, context: Context
    ) -> pb.RefundCouponsResponse:
        refund = await refunds.refund_coupons(
            self._steps,
            self._points,
            commands.RefundCoupons(
                request_id=request.request_id,
                customer_id=request.customer_id,
                redemption_id=request.redemption_id,
                codes=list(request.codes),
            ),
        )
        return pb.RefundCouponsResponse(refund=refund_pb(refund))


class EcommerceAdminServicer(pb_grpc.EcommerceAdminServiceServicer):
    """EcommerceAdminService: parameter management for the platform's operators."""

    def __init__(
        self, steps: EcommerceSteps, points: PointsGateway, review_after: timedelta
    ) -> None:
        self._steps = steps
        self._points = points
        self._review_after = review_after

    @rpc
    async def CreateCouponProduct(
        self, request: pb.CreateCouponProductRequest, context: Context
    ) -> pb.CreateCouponProductResponse:
        product = await self._steps.write(
            products.create_coupon_product,
            commands.CreateCouponProduct(
                product_id=request.product_id,
                display_name=request.display_name,
                face_value_minor=request.face_value_minor,
                currency=request.currency,
                points_per_coupon=request.points_per_coupon,
                validity_days=request.validity_days,
                max_quantity_per_redemption=request.max_quantity_per_redemption,
            ),
        )
        return pb.CreateCouponProductResponse(product=product_pb(product))

    @rpc
    async def SetExchangeRatio(
        self, request: pb.SetExchangeRatioRequest, context: Context
    ) -> pb.SetExchangeRatioResponse:
        ratio, product = await self._steps.write(
            products.set_exchange_ratio,
            commands.SetExchangeRatio(
                product_id=request.product_id, points_per_coupon=request.points_per_coupon
            ),
        )
        return pb.SetExchangeRatioResponse(ratio=ratio_pb(ratio), product=product_pb(product))

    @rpc
    async def ListExchangeRatios(
        self, request: pb.ListExchangeRatiosRequest, context: Context
    ) -> pb.ListExchangeRatiosResponse:
        listing = await self._steps.read(
            products.list_exchange_ratios,
            commands.ListExchangeRatios(
                product_id=request.product_id,
                page_size=request.page_size,
                page_token=request.page_token,
            ),
        )
        return pb.ListExchangeRatiosResponse(
            ratios=[ratio_pb(r) for r in listing.items],
            next_page_token=listing.next_page_token,
        )

    @rpc
    async def SetCouponProductActive(
        self, request: pb.SetCouponProductActiveRequest, context: Context
    ) -> pb.SetCouponProductActiveResponse:
        product = await self._steps.write(
            products.set_coupon_product_active,
            commands.SetCouponProductActive(product_id=request.product_id, active=request.active),
        )
        return pb.SetCouponProductActiveResponse(product=product_pb(product))

    @rpc
    async def LinkCardAccount(
        self, request: pb.LinkCardAccountRequest, context: Context
    ) -> pb.LinkCardAccountResponse:
        link = await products.link_card_account(
            self._steps,
            self._points,
            commands.LinkCardAccount(
                customer_id=request.customer_id, card_account_id=request.card_account_id
            ),
        )
        return pb.LinkCardAccountResponse(link=link_pb(link))

    @rpc
    async def ExportRedemptions(
        self, request: pb.ExportRedemptionsRequest, context: Context
    ) -> pb.ExportRedemptionsResponse:
        page = await self._steps.read(
            recovery.export_redemptions,
            commands.ExportRedemptions(
                start=optional_time(request, "start_time"),
                end=optional_time(request, "end_time"),
                page_size=request.page_size,
                page_token=request.page_token,
            ),
        )
        return pb.ExportRedemptionsResponse(
            redemptions=[
                pb.ExportedRedemption(
                    redemption=redemption_pb(item.redemption),
                    refunds=[refund_pb(f) for f in item.refunds],
                )
                for item in page.items
            ],
            next_page_token=page.next_page_token,
        )

    @rpc
    async def ListUnsettled(
        self, request: pb.ListUnsettledRequest, context: Context
    ) -> pb.ListUnsettledResponse:
        v = Validator()
        limit = paging.page_size(v, "page_size", request.page_size)
        v.done()
        operations = await self._steps.read(
            recovery.list_unsettled, commands.ListUnsettled(self._review_after, limit)
        )
        return pb.ListUnsettledResponse(operations=[unsettled_pb(op) for op in operations])
