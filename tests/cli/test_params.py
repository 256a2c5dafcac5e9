"""Whole-number parsing of points, money and counts, before anything is sent."""

from __future__ import annotations

import pytest
import typer

from pointsbridge_cli.params import int32_count, int64_amount


@pytest.mark.parametrize(
    ("text", "value"), [("1", 1), ("5000", 5000), ("007", 7), (str(2**63 - 1), 2**63 - 1)]
)
def test_points_are_positive_whole_numbers_up_to_int64(text: str, value: int) -> None:
    assert int64_amount(text) == value


@pytest.mark.parametrize(
    "text",
    ["0", "-5", "1.5", "1.0", "1e3", "½", "٣", "1_000", " 7", "+7", "", "0x10", str(2**63)],
)
def test_anything_else_is_refused_with_the_range_and_an_example(text: str) -> None:
    with pytest.raises(typer.BadParameter, match=r"whole number from 1 to 9223372036854775807"):
        int64_amount(text)


def test_counts_stop_at_int32() -> None:
    assert int32_count(str(2**31 - 1)) == 2**31 - 1
    assert int32_count(365) == 365  # typer passes an option's default as an int
    with pytest.raises(typer.BadParameter, match=r"from 1 to 2147483647"):
        int32_count(str(2**31))
