"""How values and listings look to people: enum labels, times, money, records, tables."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper
from google.protobuf.message import Message
from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.measure import Measurement
from rich.panel import Panel
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from servicekit.timestamps import from_timestamp

NONE = "-"


def enum_label(enum: EnumTypeWrapper, value: int) -> str:
    """ACCOUNT_STATE_FROZEN -> FROZEN: the buf prefix only repeats the type's name."""
    prefix = re.sub(r"(?<!^)(?=[A-Z])", "_", enum.DESCRIPTOR.name).upper() + "_"
    try:
        name = enum.Name(value)
    except ValueError:
        return str(value)
    return name.removeprefix(prefix)


def timestamp(message: Message, field: str) -> str:
    if not message.HasField(field):
        return NONE
    value = getattr(message, field)
    # ISO 8601 in UTC, as short as it is exact: 2026-01-31T09:58:31Z.
    return from_timestamp(value).strftime("%Y-%m-%dT%H:%M:%SZ")


# ISO 4217 minor-unit exponents other than 2, the exponent of every other currency.
_EXPONENTS = {
    **dict.fromkeys(
        [
            "BIF",
            "CLP",
            "DJF",
            "GNF",
            "ISK",
            "JPY",
            "KMF",
            "KRW",
            "PYG",
            "RWF",
            "UGX",
            "UYI",
            "VND",
            "VUV",
            "XAF",
            "XOF",
            "XPF",
        ],
        0,
    ),
    **dict.fromkeys(["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"], 3),
    **dict.fromkeys(["CLF", "UYW"], 4),
}


def money(minor: int, currency: str) -> str:
    """An amount in minor units as people write it: 1000 CNY -> "CNY 10.00", integers only."""
    exponent = _EXPONENTS.get(currency, 2)
    major, fraction = divmod(abs(minor), 10**exponent)
    sign = "-" if minor < 0 else ""
    decimals = f".{fraction:0{exponent}d}" if exponent else ""
    return f"{sign}{currency} {major:,}{decimals}"


def _text(value: object) -> Text:
    # Text, not str: server data such as "[A-Za-z]" must never be read as rich markup.
    shown = str(value)
    return Text(shown if shown else NONE)


def record(title: str, rows: Sequence[tuple[str, object]]) -> Panel:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    for name, value in rows:
        grid.add_row(name, _text(value))
    return Panel(grid, title=title, title_align="left", expand=False)


class Listing:
    """Rows under a title: a table when every cell fits whole, else one block per row.

    Codes, ids and amounts are never cut short: a terminal too narrow for the
    table gets each row as a list of "column  value" lines instead.
    """

    def __init__(
        self, title: str, columns: Sequence[str], rows: Iterable[Sequence[object]]
    ) -> None:
        self.title = title
        self.columns = tuple(columns)
        self.rows = [tuple(_text(cell) for cell in row) for row in rows]

    def table(self) -> Table:
        listing = Table(
            title=self.title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False
        )
        for column in self.columns:
            listing.add_column(column, no_wrap=True)
        for row in self.rows:
            listing.add_row(*row)
        return listing

    def blocks(self) -> Group:
        parts: list[RenderableType] = [Text(self.title, style="italic")]
        for number, row in enumerate(self.rows, start=1):
            grid = Table.grid(padding=(0, 2))
            grid.add_column(style="bold", no_wrap=True)
            grid.add_column(overflow="fold")
            for name, cell in zip(self.columns, row, strict=True):
                grid.add_row(name, cell)
            parts += [Rule(f"{number} of {len(self.rows)}", align="left", style="dim"), grid]
        return Group(*parts, Text())

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        table = self.table()
        whole = Measurement.get(console, options.update_width(10_000), table).maximum
        yield table if whole <= options.max_width else self.blocks()


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[object]]) -> Listing:
    return Listing(title, columns, rows)


def with_more(listing: Listing, count: int, next_page_token: str) -> Group:
    parts: list[RenderableType] = [listing if count else Text("Nothing to list.")]
    if next_page_token:
        parts.append(Text(f"More: rerun with --page-token {next_page_token}"))
    return Group(*parts)
