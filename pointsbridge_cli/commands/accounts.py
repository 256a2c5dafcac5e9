"""`pointsbridge accounts`: card accounts and their points ledger at the card-points service."""

from __future__ import annotations

import enum
import sys
from typing import Annotated

import typer

from pointsbridge.cardpoints.v1 import cardpoints_pb2 as cp
from pointsbridge_cli import render
from pointsbridge_cli.params import (
    AccountIdArgument,
    AllPagesOption,
    PageSizeOption,
    PageTokenOption,
    WholeNumberArguments,
    int64_amount,
    json_option,
    request_id_option,
)
from pointsbridge_cli.session import Session

app = typer.Typer(
    help=(
        "Open, credit, list, inspect, freeze, unfreeze and close card accounts "
        "(card-points service)."
    ),
    no_args_is_help=True,
)

ReasonOption = Annotated[
    str,
    typer.Option(
        "--reason",
        help="Why, up to 200 characters, kept with the change, e.g. --reason 'lost card'.",
    ),
]


@app.command("open")
def open_account(
    ctx: typer.Context,
    account_id: AccountIdArgument,
    holder: Annotated[
        str,
        typer.Option(
            "--holder",
            help="The card holder's name, 1-200 characters, e.g. --holder 'Alice Liu'.",
            show_default=False,
        ),
    ],
    json: Annotated[bool, json_option(".account.state")] = False,
) -> None:
    """Open a card account with a zero balance.

    Opening an account that exists with the same holder returns it unchanged, so this is
    safe to repeat; with another holder it fails (exit 6).

    Example:

    ```
    pointsbridge accounts open alice-card --holder 'Alice Liu'
    ```
    """
    session = Session.of(ctx, json)
    request = cp.OpenAccountRequest(account_id=account_id, holder_name=holder)
    response = session.call(session.connection.cardpoints_admin.OpenAccount, request)
    session.emit(response, lambda r: render.account(r.account))


@app.command("credit", cls=WholeNumberArguments)
def credit(
    ctx: typer.Context,
    account_id: AccountIdArgument,
    points: Annotated[
        int,
        typer.Argument(
            metavar="POINTS",
            parser=int64_amount,
            help="Points earned, a positive whole number, e.g. 5000.",
            show_default=False,
        ),
    ],
    reason: ReasonOption = "",
    request_id: Annotated[str | None, request_id_option("welcome-2026-01")] = None,
    json: Annotated[bool, json_option(".entry.balance_after")] = False,
) -> None:
    """Credit earned points to a card account, exactly once per request id.

    Example:

    ```
    pointsbridge accounts credit alice-card 5000 --reason 'welcome bonus'
    ```
    """
    session = Session.of(ctx, json)
    request = cp.CreditPointsRequest(
        request_id=session.request_id(request_id),
        account_id=account_id,
        points=points,
        reason=reason,
    )
    response = session.call(session.connection.cardpoints_admin.CreditPoints, request)
    session.emit(response, render.credit)


@app.command("show")
def show(
    ctx: typer.Context,
    account_id: AccountIdArgument,
    json: Annotated[bool, json_option(".account.balance")] = False,
) -> None:
    """Show a card account: holder, state and balance.

    Example:

    ```
    pointsbridge accounts show alice-card --json
    ```
    """
    session = Session.of(ctx, json)
    request = cp.GetAccountRequest(account_id=account_id)
    response = session.call(session.connection.cardpoints.GetAccount, request)
    session.emit(response, lambda r: render.account(r.account))


def _set_state(
    ctx: typer.Context, account_id: str, state: cp.AccountState, reason: str, json: bool
) -> None:
    session = Session.of(ctx, json)
    request = cp.SetAccountStateRequest(account_id=account_id, state=state, reason=reason)
    response = session.call(session.connection.cardpoints_admin.SetAccountState, request)
    session.emit(response, lambda r: render.account(r.account))


@app.command("freeze")
def freeze(
    ctx: typer.Context,
    account_id: AccountIdArgument,
    reason: ReasonOption = "",
    json: Annotated[bool, json_option(".account.state")] = False,
) -> None:
    """Freeze a card account: deductions are refused, credits and reversals still apply.

    Example:

    ```
    pointsbridge accounts freeze alice-card --reason 'reported stolen'
    ```
    """
    _set_state(ctx, account_id, cp.ACCOUNT_STATE_FROZEN, reason, json)


@app.command("unfreeze")
def unfreeze(
    ctx: typer.Context,
    account_id: AccountIdArgument,
    reason: ReasonOption = "",
    json: Annotated[bool, json_option(".account.state")] = False,
) -> None:
    """Make a frozen card account active again.

    Example:

    ```
    pointsbridge accounts unfreeze alice-card --reason 'card found'
    ```
    """
    _set_state(ctx, account_id, cp.ACCOUNT_STATE_ACTIVE, reason, json)


@app.command("close")
def close(
    ctx: typer.Context,
    account_id: AccountIdArgument,
    reason: ReasonOption = "",
    yes: Annotated[
        bool,
        typer.Option(
            "--yes",
            help="Close without asking; required when stdin is not a terminal, e.g. --yes.",
        ),
    ] = False,
    json: Annotated[bool, json_option(".account.state")] = False,
) -> None:
    """Close a card account for good: everything but reads is refused afterwards.

    Closing cannot be undone, so it asks first unless --yes is given.

    Example:

    ```
    pointsbridge accounts close alice-card --reason 'customer left' --yes
    ```
    """
    if not yes:
        if not sys.stdin.isatty():
            raise typer.BadParameter(
                "closing an account is final; pass --yes to confirm", param_hint="'--yes'"
            )
        typer.confirm(f"Close {account_id} for good?", abort=True)
    _set_state(ctx, account_id, cp.ACCOUNT_STATE_CLOSED, reason, json)


class AccountStateChoice(enum.StrEnum):
    active = "active"
    frozen = "frozen"
    closed = "closed"


_ACCOUNT_STATES = {
    AccountStateChoice.active: cp.ACCOUNT_STATE_ACTIVE,
    AccountStateChoice.frozen: cp.ACCOUNT_STATE_FROZEN,
    AccountStateChoice.closed: cp.ACCOUNT_STATE_CLOSED,
}


@app.command("list")
def list_accounts(
    ctx: typer.Context,
    state: Annotated[
        AccountStateChoice | None,
        typer.Option(
            "--state",
            help="Only accounts in this state, e.g. --state frozen. Default: all.",
            show_default=False,
        ),
    ] = None,
    page_size: PageSizeOption = None,
    page_token: PageTokenOption = "",
    all_pages: AllPagesOption = False,
    json: Annotated[bool, json_option("'.accounts[].account_id'")] = False,
) -> None:
    """List card accounts in account id order, with their state and balance (operators only).

    Example:

    ```
    pointsbridge accounts list --state frozen --page-size 50
    ```
    """
    session = Session.of(ctx, json)

    def fetch(token: str) -> cp.ListAccountsResponse:
        request = cp.ListAccountsRequest(
            state=_ACCOUNT_STATES[state] if state else cp.ACCOUNT_STATE_UNSPECIFIED,
            page_size=page_size or 0,
            page_token=token,
        )
        return session.call(session.connection.cardpoints_admin.ListAccounts, request)

    response = session.listing(fetch, page_token, every_page=all_pages, items_field="accounts")
    session.emit(response, render.accounts)


@app.command("transactions")
def transactions(
    ctx: typer.Context,
    account_id: AccountIdArgument,
    page_size: PageSizeOption = None,
    page_token: PageTokenOption = "",
    all_pages: AllPagesOption = False,
    json: Annotated[bool, json_option("'.transactions[].amount'")] = False,
) -> None:
    """List a card account's points ledger, newest first: credits, deductions, reversals.

    Example:

    ```
    pointsbridge accounts transactions alice-card --page-size 20
    ```
    """
    session = Session.of(ctx, json)

    def fetch(token: str) -> cp.ListTransactionsResponse:
        request = cp.ListTransactionsRequest(
            account_id=account_id, page_size=page_size or 0, page_token=token
        )
        return session.call(session.connection.cardpoints.ListTransactions, request)

    response = session.listing(fetch, page_token, every_page=all_pages, items_field="transactions")
    session.emit(response, render.transactions)
