"""`pointsbridge quote` and `pointsbridge redeem`: spending card points on coupons."""

from __future__ import annotations

from typing import Annotated

import typer

from pointsbridge.ecommerce.v1 import ecommerce_pb2 as ec
from pointsbridge_cli import render
from pointsbridge_cli.params import (
    CustomerIdArgument,
    ProductIdArgument,
    WholeNumberArguments,
    int32_count,
    int64_amount,
    json_option,
    request_id_option,
)
from pointsbridge_cli.session import Session

# No group name: `quote` and `redeem` are top-level commands, listed in the Redeem panel.
app = typer.Typer()
PANEL = "Redeem"

QuantityArgument = Annotated[
    int,
    typer.Argument(
        metavar="QUANTITY",
        parser=int32_count,
        help="How many coupons, from 1 to the product's maximum per redemption, e.g. 2.",
        show_default=False,
    ),
]


@app.command("quote", rich_help_panel=PANEL, cls=WholeNumberArguments)
def quote(
    ctx: typer.Context,
    customer_id: CustomerIdArgument,
    product_id: ProductIdArgument,
    quantity: QuantityArgument,
    json: Annotated[bool, json_option(".quote.points_required")] = False,
) -> None:
    """Show what QUANTITY coupons would cost in points at the current exchange ratio.

    With a linked card, the quote also shows the points available on it. Nothing is
    deducted: pass the quoted points to `redeem --expected-points` to lock the price in.

    Example:

    ```
    pointsbridge quote alice@example coffee-10 2
    ```
    """
    session = Session.of(ctx, json)
    request = ec.QuoteRedemptionRequest(
        customer_id=customer_id, product_id=product_id, quantity=quantity
    )
    response = session.call(session.connection.redemptions.QuoteRedemption, request)
    session.emit(response, lambda r: render.quote(r.quote))


@app.command("redeem", rich_help_panel=PANEL, cls=WholeNumberArguments)
def redeem(
    ctx: typer.Context,
    customer_id: CustomerIdArgument,
    product_id: ProductIdArgument,
    quantity: QuantityArgument,
    expected_points: Annotated[
        int | None,
        typer.Option(
            "--expected-points",
            parser=int64_amount,
            help=(
                "The points the quote gave; if the redemption costs otherwise now, nothing is "
                "deducted: exit 5 when the ratio changed since the quote, exit 3 when no "
                "ratio ever cost that, e.g. --expected-points 2000."
            ),
            show_default=False,
        ),
    ] = None,
    request_id: Annotated[str | None, request_id_option("order-1001")] = None,
    json: Annotated[bool, json_option("'.redemption.coupons[].code'")] = False,
) -> None:
    """Spend the linked card's points on QUANTITY coupons, exactly once per request id.

    If the card-points system does not answer (exit 7), the redemption stays PENDING:
    run the same command with the same --request-id to resume it; it is never charged
    twice.

    Example:

    ```
    pointsbridge redeem alice@example coffee-10 2 --expected-points 2000 \\
        --request-id order-1001
    ```
    """
    session = Session.of(ctx, json)
    request = ec.RedeemPointsRequest(
        request_id=session.request_id(request_id),
        customer_id=customer_id,
        product_id=product_id,
        quantity=quantity,
        expected_points=expected_points,
    )
    response = session.call(session.connection.redemptions.RedeemPoints, request)
    session.emit(response, lambda r: render.redemption(r.redemption))
