"""`pointsbridge coupons`: listing, spending and refunding a customer's e-coupons."""

from __future__ import annotations

import enum
from typing import Annotated

import typer

from pointsbridge.ecommerce.v1 import ecommerce_pb2 as ec
from pointsbridge_cli import render
from pointsbridge_cli.params import (
    AllPagesOption,
    CustomerIdArgument,
    PageSizeOption,
    PageTokenOption,
    json_option,
    request_id_option,
)
from pointsbridge_cli.session import Session

app = typer.Typer(
    help="List, use and refund a customer's coupons (e-commerce service).", no_args_is_help=True
)


class CouponStateChoice(enum.StrEnum):
    issued = "issued"
    used = "used"
    void = "void"
    expired = "expired"


_COUPON_STATES = {
    CouponStateChoice.issued: ec.COUPON_STATE_ISSUED,
    CouponStateChoice.used: ec.COUPON_STATE_USED,
    CouponStateChoice.void: ec.COUPON_STATE_VOID,
    CouponStateChoice.expired: ec.COUPON_STATE_EXPIRED,
}


@app.command("list")
def list_coupons(
    ctx: typer.Context,
    customer_id: CustomerIdArgument,
    state: Annotated[
        CouponStateChoice | None,
        typer.Option(
            "--state",
            help="Only coupons in this state, e.g. --state issued. Default: all.",
            show_default=False,
        ),
    ] = None,
    page_size: PageSizeOption = None,
    page_token: PageTokenOption = "",
    all_pages: AllPagesOption = False,
    json: Annotated[bool, json_option("'.coupons[].code'")] = False,
) -> None:
    """List a customer's coupons, newest first.

    Example:

    ```
    pointsbridge coupons list alice@example --state issued
    ```
    """
    session = Session.of(ctx, json)

    def fetch(token: str) -> ec.ListCouponsResponse:
        request = ec.ListCouponsRequest(
            customer_id=customer_id,
            state=_COUPON_STATES[state] if state else ec.COUPON_STATE_UNSPECIFIED,
            page_size=page_size or 0,
            page_token=token,
        )
        return session.call(session.connection.redemptions.ListCoupons, request)

    response = session.listing(fetch, page_token, every_page=all_pages, items_field="coupons")
    session.emit(response, render.coupons)


@app.command("use")
def use(
    ctx: typer.Context,
    customer_id: CustomerIdArgument,
    code: Annotated[
        str,
        typer.Argument(
            metavar="CODE",
            help="The coupon code, e.g. 7KQW-M3XR-Z9PT-HC4V-NA.",
            show_default=False,
        ),
    ],
    order_id: Annotated[
        str,
        typer.Argument(
            metavar="ORDER_ID",
            help="The checkout order it pays for, 1-64 characters of [A-Za-z0-9._:-], "
            "e.g. order-1001.",
            show_default=False,
        ),
    ],
    json: Annotated[bool, json_option(".coupon.state")] = False,
) -> None:
    """Spend a coupon on an order, exactly once.

    Repeating it for the same order returns the coupon again; another order is refused
    (exit 5).

    Example:

    ```
    pointsbridge coupons use alice@example 7KQW-M3XR-Z9PT-HC4V-NA order-1001
    ```
    """
    session = Session.of(ctx, json)
    request = ec.UseCouponRequest(customer_id=customer_id, code=code, order_id=order_id)
    response = session.call(session.connection.redemptions.UseCoupon, request)
    session.emit(response, lambda r: render.coupon(r.coupon))


@app.command("refund")
def refund(
    ctx: typer.Context,
    customer_id: CustomerIdArgument,
    redemption_id: Annotated[
        str,
        typer.Argument(
            metavar="REDEMPTION_ID",
            help=(
                "The redemption the coupons came from, as `redeem` printed it, "
                "e.g. rd_4f1c9a0b2d7e8f3a6c51."
            ),
            show_default=False,
        ),
    ],
    codes: Annotated[
        list[str],
        typer.Argument(
            metavar="CODE...",
            help="One or more unused coupon codes of that redemption, e.g. 7KQW-M3XR-Z9PT-HC4V-NA.",
            show_default=False,
        ),
    ],
    request_id: Annotated[str | None, request_id_option("order-1001-refund-1")] = None,
    json: Annotated[bool, json_option(".refund.points")] = False,
) -> None:
    """Refund unused coupons: they become VOID and their points go back to the card.

    Exactly once per request id: repeating it with the same --request-id gives back
    nothing more.

    Example:

    ```
    pointsbridge coupons refund alice@example rd_4f1c9a0b2d7e8f3a6c51 \\
        7KQW-M3XR-Z9PT-HC4V-NA
    ```
    """
    session = Session.of(ctx, json)
    request = ec.RefundCouponsRequest(
        request_id=session.request_id(request_id),
        customer_id=customer_id,
        redemption_id=redemption_id,
        codes=codes,
    )
    response = session.call(session.connection.redemptions.RefundCoupons, request)
    session.emit(response, lambda r: render.refund(r.refund))
