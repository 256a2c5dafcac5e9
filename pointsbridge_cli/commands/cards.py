"""`pointsbridge cards`: binding e-commerce customers to card accounts."""

from __future__ import annotations

from typing import Annotated

import typer

from pointsbridge.ecommerce.v1 import ecommerce_pb2 as ec
from pointsbridge_cli import render
from pointsbridge_cli.params import CustomerIdArgument, json_option
from pointsbridge_cli.session import Session

app = typer.Typer(
    help="Link e-commerce customers to their card accounts (e-commerce service).",
    no_args_is_help=True,
)


@app.command("link")
def link(
    ctx: typer.Context,
    customer_id: CustomerIdArgument,
    card_account_id: Annotated[
        str,
        typer.Argument(
            metavar="CARD_ACCOUNT_ID",
            help="The card account to spend points from, which must exist and be active, "
            "e.g. alice-card.",
            show_default=False,
        ),
    ],
    json: Annotated[bool, json_option(".link.card_account_id")] = False,
) -> None:
    """Link a customer to a card account; relinking replaces the previous card.

    Example:

    ```
    pointsbridge cards link alice@example alice-card
    ```
    """
    session = Session.of(ctx, json)
    request = ec.LinkCardAccountRequest(customer_id=customer_id, card_account_id=card_account_id)
    response = session.call(session.connection.ecommerce_admin.LinkCardAccount, request)
    session.emit(response, lambda r: render.card_link(r.link))
