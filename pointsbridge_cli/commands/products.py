"""`pointsbridge products`: coupon products and their exchange-ratio history (e-commerce)."""

from __future__ import annotations

from typing import Annotated

import typer

from pointsbridge.ecommerce.v1 import ecommerce_pb2 as ec
from pointsbridge_cli import render
from pointsbridge_cli.params import (
    AllPagesOption,
    PageSizeOption,
    PageTokenOption,
    ProductIdArgument,
    WholeNumberArguments,
    int32_count,
    int64_amount,
    json_option,
)
from pointsbridge_cli.session import Session

app = typer.Typer(
    help=(
        "Create and list coupon products, set their exchange ratio and read its history, "
        "activate and deactivate them (e-commerce service)."
    ),
    no_args_is_help=True,
)

PointsPerCouponArgument = Annotated[
    int,
    typer.Argument(
        metavar="POINTS_PER_COUPON",
        parser=int64_amount,
        help="Points one coupon costs from now on, a positive whole number, e.g. 1200.",
        show_default=False,
    ),
]


@app.command("create")
def create(
    ctx: typer.Context,
    product_id: ProductIdArgument,
    name: Annotated[
        str,
        typer.Option(
            "--name",
            help="Display name, 1-200 characters, e.g. --name 'Coffee voucher 10 CNY'.",
            show_default=False,
        ),
    ],
    face_value: Annotated[
        int,
        typer.Option(
            "--face-value",
            parser=int64_amount,
            help=(
                "Face value of one coupon in minor units (fen, cents), a positive whole "
                "number, e.g. --face-value 1000 for 10.00."
            ),
            show_default=False,
        ),
    ],
    currency: Annotated[
        str,
        typer.Option(
            "--currency",
            help="ISO 4217 code, three upper-case letters, e.g. --currency CNY.",
            show_default=False,
        ),
    ],
    points_per_coupon: Annotated[
        int,
        typer.Option(
            "--points-per-coupon",
            parser=int64_amount,
            help="Points one coupon costs; becomes ratio version 1, e.g. --points-per-coupon 1000.",
            show_default=False,
        ),
    ],
    validity_days: Annotated[
        int,
        typer.Option(
            "--validity-days",
            parser=int32_count,
            help="Days a coupon stays usable after it is issued, 1-3650, e.g. --validity-days 90.",
        ),
    ] = 365,
    max_quantity: Annotated[
        int,
        typer.Option(
            "--max-quantity",
            parser=int32_count,
            help="Most coupons one redemption may take, 1-1000, e.g. --max-quantity 5.",
        ),
    ] = 10,
    json: Annotated[bool, json_option(".product.ratio_version")] = False,
) -> None:
    """Create a coupon product; its first exchange ratio is version 1.

    Example:

    ```
    pointsbridge products create coffee-10 --name 'Coffee voucher' \\
        --face-value 1000 --currency CNY --points-per-coupon 1000
    ```
    """
    session = Session.of(ctx, json)
    request = ec.CreateCouponProductRequest(
        product_id=product_id,
        display_name=name,
        face_value_minor=face_value,
        currency=currency,
        points_per_coupon=points_per_coupon,
        validity_days=validity_days,
        max_quantity_per_redemption=max_quantity,
    )
    response = session.call(session.connection.ecommerce_admin.CreateCouponProduct, request)
    session.emit(response, lambda r: render.product(r.product))


@app.command("list")
def list_products(
    ctx: typer.Context,
    include_inactive: Annotated[
        bool,
        typer.Option(
            "--include-inactive",
            help="Also list deactivated products, e.g. --include-inactive.",
        ),
    ] = False,
    page_size: PageSizeOption = None,
    page_token: PageTokenOption = "",
    all_pages: AllPagesOption = False,
    json: Annotated[bool, json_option("'.products[].product_id'")] = False,
) -> None:
    """List coupon products with their current exchange ratio.

    Example:

    ```
    pointsbridge products list --include-inactive
    ```
    """
    session = Session.of(ctx, json)

    def fetch(token: str) -> ec.ListCouponProductsResponse:
        request = ec.ListCouponProductsRequest(
            page_size=page_size or 0, page_token=token, include_inactive=include_inactive
        )
        return session.call(session.connection.redemptions.ListCouponProducts, request)

    response = session.listing(fetch, page_token, every_page=all_pages, items_field="products")
    session.emit(response, render.products)


@app.command("set-ratio", cls=WholeNumberArguments)
def set_ratio(
    ctx: typer.Context,
    product_id: ProductIdArgument,
    points_per_coupon: PointsPerCouponArgument,
    json: Annotated[bool, json_option(".ratio.version")] = False,
) -> None:
    """Set a product's exchange ratio: a new version, the earlier ones stay in the history.

    Quotes made before the change no longer match; a redeem that passes their
    --expected-points is refused with nothing deducted (exit 5).

    Example:

    ```
    pointsbridge products set-ratio coffee-10 1200
    ```
    """
    session = Session.of(ctx, json)
    request = ec.SetExchangeRatioRequest(product_id=product_id, points_per_coupon=points_per_coupon)
    response = session.call(session.connection.ecommerce_admin.SetExchangeRatio, request)
    session.emit(response, render.ratio_set)


@app.command("ratios")
def ratios(
    ctx: typer.Context,
    product_id: ProductIdArgument,
    page_size: PageSizeOption = None,
    page_token: PageTokenOption = "",
    all_pages: AllPagesOption = False,
    json: Annotated[bool, json_option("'.ratios[].points_per_coupon'")] = False,
) -> None:
    """Show a product's exchange-ratio history, newest version first.

    Example:

    ```
    pointsbridge products ratios coffee-10
    ```
    """
    session = Session.of(ctx, json)

    def fetch(token: str) -> ec.ListExchangeRatiosResponse:
        request = ec.ListExchangeRatiosRequest(
            product_id=product_id, page_size=page_size or 0, page_token=token
        )
        return session.call(session.connection.ecommerce_admin.ListExchangeRatios, request)

    response = session.listing(fetch, page_token, every_page=all_pages, items_field="ratios")
    session.emit(response, render.ratios)


def _set_active(ctx: typer.Context, product_id: str, active: bool, json: bool) -> None:
    session = Session.of(ctx, json)
    request = ec.SetCouponProductActiveRequest(product_id=product_id, active=active)
    response = session.call(session.connection.ecommerce_admin.SetCouponProductActive, request)
    session.emit(response, lambda r: render.product(r.product))


@app.command("activate")
def activate(
    ctx: typer.Context,
    product_id: ProductIdArgument,
    json: Annotated[bool, json_option(".product.active")] = False,
) -> None:
    """Let customers redeem points for a product again.

    Example:

    ```
    pointsbridge products activate coffee-10
    ```
    """
    _set_active(ctx, product_id, True, json)


@app.command("deactivate")
def deactivate(
    ctx: typer.Context,
    product_id: ProductIdArgument,
    json: Annotated[bool, json_option(".product.active")] = False,
) -> None:
    """Stop redemptions of a product; coupons already issued stay usable.

    Example:

    ```
    pointsbridge products deactivate coffee-10
    ```
    """
    _set_active(ctx, product_id, False, json)
