"""The `pointsbridge` command: global options, the exit codes, and every command group."""

from __future__ import annotations

from typing import Annotated

import typer

from pointsbridge_cli.commands import (
    accounts,
    cards,
    coupons,
    events,
    products,
    reconcile,
    redeem,
    redemptions,
    token,
)
from pointsbridge_cli.connection import (
    DEFAULT_CARDPOINTS_ADDRESS,
    DEFAULT_ECOMMERCE_ADDRESS,
    DEFAULT_TIMEOUT_SECONDS,
    Connection,
    Endpoints,
)
from pointsbridge_cli.failures import EXIT_CODE_MEANINGS
from pointsbridge_cli.params import JsonOption
from pointsbridge_cli.session import Session
from servicekit.tls import ClientTransport

# Markdown: one list item per exit code, so the lines wrap with a hanging indent.
_EPILOG = "Exit codes:\n\n" + "\n".join(
    f"- {int(code)}: {meaning}" for code, meaning in EXIT_CODE_MEANINGS.items()
)

app = typer.Typer(
    name="pointsbridge",
    help=(
        "Operate PointsBridge: card accounts and points at the card-points service, coupon "
        "products, redemptions and coupons at the e-commerce service, all over gRPC.\n\n"
        "Every command takes --help and --json. A failed call prints one sentence on stderr, "
        "plus a line per refused field, and exits with the code listed below.\n\n"
        "Example:\n\n"
        "```\npointsbridge --cardpoints localhost:50051 accounts show alice-card\n```"
    ),
    epilog=_EPILOG,
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",
    # Locals could hold credentials once calls carry them.
    pretty_exceptions_show_locals=False,
)


@app.callback()
def root(
    ctx: typer.Context,
    cardpoints: Annotated[
        str,
        typer.Option(
            "--cardpoints",
            metavar="HOST:PORT",
            envvar="POINTSBRIDGE_CLI_CARDPOINTS",
            help="host:port of the card-points service, e.g. --cardpoints bank-host:50051.",
        ),
    ] = DEFAULT_CARDPOINTS_ADDRESS,
    ecommerce: Annotated[
        str,
        typer.Option(
            "--ecommerce",
            metavar="HOST:PORT",
            envvar="POINTSBRIDGE_CLI_ECOMMERCE",
            help="host:port of the e-commerce service, e.g. --ecommerce shop-host:50052.",
        ),
    ] = DEFAULT_ECOMMERCE_ADDRESS,
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout",
            metavar="SECONDS",
            min=0.001,
            help="Seconds any one call may take before it fails with exit 7, e.g. --timeout 30.",
        ),
    ] = DEFAULT_TIMEOUT_SECONDS,
    token: Annotated[
        str,
        typer.Option(
            "--token",
            metavar="TOKEN",
            envvar="POINTSBRIDGE_TOKEN",
            help='Bearer token sent with every call, e.g. --token "$(pointsbridge token '
            '--admin ops-1)". Prefer the environment variable: a flag shows in process lists.',
            show_default=False,
        ),
    ] = "",
    tls_ca: Annotated[
        str,
        typer.Option(
            "--tls-ca",
            metavar="PEM",
            envvar="POINTSBRIDGE_CLI_TLS_CA",
            help="PEM CA to trust; turns on TLS to both services, e.g. --tls-ca certs/ca.pem.",
            show_default=False,
        ),
    ] = "",
    tls_cert: Annotated[
        str,
        typer.Option(
            "--tls-cert",
            metavar="PEM",
            envvar="POINTSBRIDGE_CLI_TLS_CERT",
            help="PEM client certificate, for services that require mutual TLS, "
            "e.g. --tls-cert certs/ops.pem.",
            show_default=False,
        ),
    ] = "",
    tls_key: Annotated[
        str,
        typer.Option(
            "--tls-key",
            metavar="PEM",
            envvar="POINTSBRIDGE_CLI_TLS_KEY",
            help="PEM key of --tls-cert, e.g. --tls-key certs/ops-key.pem.",
            show_default=False,
        ),
    ] = "",
    json: JsonOption = False,
) -> None:
    connection = Connection(
        Endpoints(
            cardpoints=cardpoints,
            ecommerce=ecommerce,
            timeout=timeout,
            token=token,
            transport=ClientTransport(tls_ca, tls_cert, tls_key),
        )
    )
    ctx.obj = Session(connection, json=json)
    ctx.call_on_close(connection.close)


app.add_typer(accounts.app, name="accounts", rich_help_panel="Card points")
app.add_typer(products.app, name="products", rich_help_panel="E-commerce")
app.add_typer(cards.app, name="cards", rich_help_panel="E-commerce")
app.add_typer(redeem.app)
app.add_typer(redemptions.app, name="redemptions", rich_help_panel="Redeem")
app.add_typer(coupons.app, name="coupons", rich_help_panel="Redeem")
app.command("reconcile", rich_help_panel="Operations")(reconcile.reconcile)
app.command("token", rich_help_panel="Operations")(token.token)
app.add_typer(events.app, name="events", rich_help_panel="Operations")
