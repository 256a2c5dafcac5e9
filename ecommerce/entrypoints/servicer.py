"""Entrypoints room: the gRPC servicers, translating protobuf to use-case calls and back."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import Any, TypeVar

import grpc

from ecommerce.domain import commands
from ecommerce.domain.errors import NotOwner
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
)
from ecommerce.service_layer import coupons, products, recovery, redemptions, refunds
from ecommerce.service_layer.ports import EcommerceSteps, PointsGateway
from pointsbridge.ecommerce.v1 import ecommerce_pb2 as pb
from pointsbridge.ecommerce.v1 import ecommerce_pb2_grpc as pb_grpc
from servicekit import paging
from servicekit.auth import ROLE_ADMIN, caller_has
from servicekit.status import rpc
from servicekit.timestamps import optional_time, to_timestamp
from servicekit.validation import Validator

Context = grpc.aio.ServicerContext[Any, Any]

_State = TypeVar("_State")

REDEMPTION_STATES: Mapping[RedemptionState, pb.RedemptionState] = {
    RedemptionState.PENDING: pb.REDEMPTION_STATE_PENDING,
    RedemptionState.COMPLETED: pb.REDEMPTION_STATE_COMPLETED,
    RedemptionState.FAILED: pb.REDEMPTION_STATE_FAILED,
}
COUPON_STATES: Mapping[CouponState, pb.CouponState] = {
    CouponState.ISSUED: pb.COUPON_STATE_ISSUED,
    CouponState.USED: pb.COUPON_STATE_USED,
    CouponState.VOID: pb.COUPON_STATE_VOID,
    CouponState.EXPIRED: pb.COUPON_STATE_EXPIRED,
}
UNSETTLED_KINDS: Mapping[UnsettledKind, pb.UnsettledKind] = {
    UnsettledKind.REDEMPTION: pb.UNSETTLED_KIND_REDEMPTION,
    UnsettledKind.REFUND: pb.UNSETTLED_KIND_REFUND,
}
REFUND_STATES: Mapping[RefundState, pb.RefundState] = {
    RefundState.PENDING: pb.REFUND_STATE_PENDING,
    RefundState.COMPLETED: pb.REFUND_STATE_COMPLETED,
}


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


def state_name(value: int, states: Mapping[_State, int]) -> str:
    """The domain name of a list request's state filter; "" for UNSPECIFIED (no filter).

    An unknown number is passed on as itself, for the use case to refuse with
    the request's other bad fields.
    """
    for state, number in states.items():
        if number == value:
            return str(state)
    return "" if value == 0 else str(value)


def product_pb(product: CouponProduct) -> pb.CouponProduct:
    return pb.CouponProduct(
        product_id=product.product_id,
        display_name=product.display_name,
        face_value_minor=product.face_value_minor,
        currency=product.currency,
        points_per_coupon=product.points_per_coupon,
        ratio_version=product.ratio_version,
        validity_days=product.validity_days,
        max_quantity_per_redemption=product.max_quantity_per_redemption,
        active=product.active,
        create_time=to_timestamp(product.create_time),
    )


def ratio_pb(ratio: ExchangeRatio) -> pb.ExchangeRatio:
    return pb.ExchangeRatio(
        product_id=ratio.product_id,
        version=ratio.version,
        points_per_coupon=ratio.points_per_coupon,
        effective_time=to_timestamp(ratio.effective_time),
    )


def link_pb(link: CardLink) -> pb.CardLink:
    return pb.CardLink(
        customer_id=link.customer_id,
        card_account_id=link.card_account_id,
        link_time=to_timestamp(link.link_time),
    )


def quote_pb(quote: Quote) -> pb.Quote:
    message = pb.Quote(
        product_id=quote.product_id,
        quantity=quote.quantity,
        points_required=quote.points_required,
        points_per_coupon=quote.points_per_coupon,
        ratio_version=quote.ratio_version,
        face_value_total_minor=quote.face_value_total_minor,
        currency=quote.currency,
        card_linked=quote.card_linked,
    )
    if quote.available_points is not None:
        message.available_points = quote.available_points
    return message


def coupon_pb(coupon: Coupon) -> pb.Coupon:
    return pb.Coupon(
        code=coupon.code,
        product_id=coupon.product_id,
        redemption_id=coupon.redemption_id,
        face_value_minor=coupon.face_value_minor,
        currency=coupon.currency,
        state=COUPON_STATES[coupon.state],
        expire_time=to_timestamp(coupon.expire_time),
        used_order_id=coupon.used_order_id,
        customer_id=coupon.customer_id,
        issue_time=to_timestamp(coupon.issue_time),
        use_time=to_timestamp(coupon.use_time),
    )


def redemption_pb(redemption: Redemption) -> pb.Redemption:
    return pb.Redemption(
        redemption_id=redemption.redemption_id,
        request_id=redemption.request_id,
        customer_id=redemption.customer_id,
        product_id=redemption.product_id,
        quantity=redemption.quantity,
        points=redemption.points,
        ratio_version=redemption.ratio_version,
        state=REDEMPTION_STATES[redemption.state],
        failure_reason=redemption.failure_reason,
        deduction_id=redemption.deduction_id,
        coupons=[coupon_pb(c) for c in redemption.coupons],
        points_per_coupon=redemption.points_per_coupon,
        card_account_id=redemption.card_account_id,
        refunded_points=redemption.refunded_points,
        create_time=to_timestamp(redemption.create_time),
        update_time=to_timestamp(redemption.update_time),
    )


def refund_pb(refund: Refund) -> pb.Refund:
    return pb.Refund(
        refund_id=refund.refund_id,
        request_id=refund.request_id,
        redemption_id=refund.redemption_id,
        codes=refund.codes,
        points=refund.points,
        state=REFUND_STATES[refund.state],
        reversal_id=refund.reversal_id,
        create_time=to_timestamp(refund.create_time),
    )


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
        return pb.ListUnsettledResponse(
            operations=[
                pb.UnsettledOperation(
                    kind=UNSETTLED_KINDS[op.kind],
                    id=op.id,
                    request_id=op.request_id,
                    customer_id=op.customer_id,
                    points=op.points,
                    create_time=to_timestamp(op.create_time),
                    needs_review=op.needs_review,
                )
                for op in operations
            ]
        )
