"""How amounts read: money from integer minor units, exactly, in the currency's own exponent."""

from __future__ import annotations

import pytest

from pointsbridge_cli.formats import money


@pytest.mark.parametrize(
    ("minor", "currency", "shown"),
    [
        (1000, "CNY", "CNY 10.00"),
        (5, "CNY", "CNY 0.05"),
        (0, "USD", "USD 0.00"),
        (-250, "EUR", "-EUR 2.50"),
        (123456789, "CNY", "CNY 1,234,567.89"),
        (1000, "JPY", "JPY 1,000"),
        (1234, "BHD", "BHD 1.234"),
        # The largest int64, exactly: no float ever rounds it.
        (2**63 - 1, "CNY", "CNY 92,233,720,368,547,758.07"),
    ],
)
def test_money_is_written_from_minor_units_exactly(minor: int, currency: str, shown: str) -> None:
    assert money(minor, currency) == shown
