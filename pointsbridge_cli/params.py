"""Command-line values: whole-number parsers and the options every command shares."""

from __future__ import annotations

import re
from typing import Annotated, Any

import typer
import typer.core
from typer import _click as click

from servicekit.validation import INT32_MAX, INT64_MAX

_display_type_rich = typer.core.TyperOption.display_type_rich


def _no_type_for_flags(self: typer.core.TyperOption, ctx: typer.Context) -> str | None:
    # The pinned typer labels every option with its type, so that --json and --help read
    # "--json <bool>" as if they took a value; a flag takes none, so it shows none.
    return None if self.is_flag else _display_type_rich(self, ctx)


typer.core.TyperOption.display_type_rich = _no_type_for_flags  # type: ignore[method-assign,assignment]

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


_NEGATIVE_NUMBER = re.compile(r"-[0-9]+")


class WholeNumberArguments(typer.core.TyperCommand):
    """A command with whole-number arguments: `-2` among them is a bad number, not an option.

    Click reads any word that starts with a dash as an option and answers "No such
    option: -2"; here such a word reaches the argument's own parser, which says what
    the argument must be.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if any(_NEGATIVE_NUMBER.fullmatch(arg) for arg in args):
            ctx.ignore_unknown_options = True
        return super().parse_args(ctx, args)


def int64_amount(value: object) -> int:
    """Points or minor units of money: an int64 proto field, so at most 2**63 - 1."""
    return _whole_number(value, INT64_MAX, "500")


def int32_count(value: object) -> int:
    """A quantity, a number of days or a page size: an int32 proto field."""
    return _whole_number(value, INT32_MAX, "2")


_PROTOBUF_JSON = "the response as protobuf JSON (proto field names, int64 as strings)"


def json_option(example: str, what: str = _PROTOBUF_JSON) -> Any:
    """A command's --json; `example` is a jq filter that reads something from its output."""
    return typer.Option(
        "--json", help=f"Print {what} instead of text, e.g. `... --json | jq {example}`."
    )


# The global --json: it turns JSON on for whichever command follows.
JsonOption = Annotated[
    bool,
    typer.Option(
        "--json",
        help=(
            "Print every command's output as JSON instead of text, as the command's own "
            "--json does, e.g. `pointsbridge --json accounts show alice-card`."
        ),
    ),
]


def request_id_option(example: str) -> Any:
    """A command's --request-id; `example` is an id that names what the command does."""
    return typer.Option(
        "--request-id",
        help=(
            f"Idempotency key, 1-128 characters of [A-Za-z0-9._:-], e.g. --request-id "
            f"{example}. Left out, a fresh random one is made and printed on stderr once "
            "answered; rerunning with the same id never repeats the change."
        ),
        show_default=False,
    )


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
