"""Command-line values: whole-number parsers and the options every command shares."""

from __future__ import annotations

import re
from typing import Annotated

import typer

from servicekit.validation import INT32_MAX, INT64_MAX

# ASCII digits only: int() alone would also take "1_000", " 7", "+7" and other scripts' digits.
_WHOLE_NUMBER = re.compile(r"[0-9]+")


def _whole_number(value: object, maximum: int, example: str) -> int:
    # Typer passes defaults through the parser as ints, command-line values as text.
    text = str(value)
    if _WHOLE_NUMBER.fullmatch(text) is None or not 1 <= int(text) <= maximum:
        raise typer.BadParameter(
            f"must be a whole number from 1 to {maximum}, e.g. {example}; got {text!r}"
        )
    return int(text)


def int64_amount(value: object) -> int:
    """Points or minor units of money: an int64 proto field, so at most 2**63 - 1."""
    return _whole_number(value, INT64_MAX, "500")


def int32_count(value: object) -> int:
    """A quantity, a number of days or a page size: an int32 proto field."""
    return _whole_number(value, INT32_MAX, "2")


JsonOption = Annotated[
    bool,
    typer.Option(
        "--json",
        help=(
            "Print the response as protobuf JSON (proto field names, int64 as strings) "
            "instead of tables, e.g. `... --json | jq .account.balance`."
        ),
    ),
]

RequestIdOption = Annotated[
    str | None,
    typer.Option(
        "--request-id",
        help=(
            "Idempotency key, 1-128 characters of [A-Za-z0-9._:-], e.g. --request-id "
            "welcome-2026-01. Left out, a fresh random one is made and printed on stderr; "
            "rerunning with the same id never repeats the change."
        ),
        show_default=False,
    ),
]

PageSizeOption = Annotated[
    int | None,
    typer.Option(
        "--page-size",
        parser=int32_count,
        help="How many items per page, 1-1000, e.g. --page-size 20. Default: the server's (100).",
        show_default=False,
    ),
]

PageTokenOption = Annotated[
    str,
    typer.Option(
        "--page-token",
        help=(
            "Continue a listing from the token the previous page printed, e.g. "
            "--page-token cGIxOjEwMA."
        ),
    ),
]

AllPagesOption = Annotated[
    bool,
    typer.Option(
        "--all",
        help="Fetch every page and print them as one list, e.g. `... --all --json`.",
    ),
]

CustomerIdArgument = Annotated[
    str,
    typer.Argument(
        metavar="CUSTOMER_ID",
        help="The e-commerce customer, 1-64 characters of [A-Za-z0-9._@-], e.g. alice@example.",
        show_default=False,
    ),
]

ProductIdArgument = Annotated[
    str,
    typer.Argument(
        metavar="PRODUCT_ID",
        help="The coupon product, 1-64 characters of [A-Za-z0-9._-], e.g. coffee-10.",
        show_default=False,
    ),
]

AccountIdArgument = Annotated[
    str,
    typer.Argument(
        metavar="ACCOUNT_ID",
        help="The card account, 1-64 characters of [A-Za-z0-9._-], e.g. alice-card.",
        show_default=False,
    ),
]
