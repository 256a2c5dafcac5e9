"""`pointsbridge redemptions`: a customer's redemptions and their coupons."""

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
)
from pointsbridge_cli.session import Session

app = typer.Typer(
    help="Show a customer's redemptions; list one customer's or everyone's (e-commerce service).",
    no_args_is_help=True,
)


class RedemptionStateChoice(enum.StrEnum):
    pending = "pending"
    completed = "completed"
    failed = "failed"


_REDEMPTION_STATES = {
    RedemptionStateChoice.pending: ec.REDEMPTION_STATE_PENDING,
    RedemptionStateChoice.completed: ec.REDEMPTION_STATE_COMPLETED,
    RedemptionStateChoice.failed: ec.REDEMPTION_STATE_FAILED,
}


@app.command("show")
def show(
    ctx: typer.Context,
    customer_id: CustomerIdArgument,
    redemption_id: Annotated[
        str,
        typer.Argument(
            metavar="REDEMPTION_ID",
            help=(
                "The redemption, as `redeem` or `redemptions list` printed it, "
                "e.g. rd_4f1c9a0b2d7e8f3a6c51."
            ),
            show_default=False,
        ),
    ],
    json: Annotated[bool, json_option(".redemption.state")] = False,
) -> None:
    """Show one of a customer's redemptions, with its coupons.

    Example:

    ```
    pointsbridge redemptions show alice@example rd_4f1c9a0b2d7e8f3a6c51
    ```
    """
    session = Session.of(ctx, json)
    request = ec.GetRedemptionRequest(customer_id=customer_id, redemption_id=redemption_id)
    response = session.call(session.connection.redemptions.GetRedemption, request)
    session.emit(response, lambda r: render.redemption(r.redemption))


@app.command("list")
def list_redemptions(
    ctx: typer.Context,
    customer_id: Annotated[
        str,
        typer.Argument(
            metavar="CUSTOMER_ID",
            help=(
                "Only this customer's, 1-64 characters of [A-Za-z0-9._@-], e.g. alice@example. "
                "Left out, every customer's (operator credentials only)."
            ),
            show_default=False,
        ),
    ] = "",
    state: Annotated[
        RedemptionStateChoice | None,
        typer.Option(
            "--state",
            help="Only redemptions in this state, e.g. --state pending. Default: all.",
            show_default=False,
        ),
    ] = None,
    page_size: PageSizeOption = None,
    page_token: PageTokenOption = "",
    all_pages: AllPagesOption = False,
    json: Annotated[bool, json_option("'.redemptions[].redemption_id'")] = False,
) -> None:
    """List a customer's redemptions, or every customer's, newest first.

    Example:

    ```
    pointsbridge redemptions list alice@example --state completed
    pointsbridge redemptions list --state pending
    ```
    """
    session = Session.of(ctx, json)

    def fetch(token: str) -> ec.ListRedemptionsResponse:
        request = ec.ListRedemptionsRequest(
            customer_id=customer_id,
            page_size=page_size or 0,
            page_token=token,
            state=_REDEMPTION_STATES[state] if state else ec.REDEMPTION_STATE_UNSPECIFIED,
        )
        return session.call(session.connection.redemptions.ListRedemptions, request)

    response = session.listing(fetch, page_token, every_page=all_pages, items_field="redemptions")
    session.emit(response, lambda r: render.redemptions(r, customers=not customer_id))
