"""A list request's protobuf state filter, read as a domain name."""

from __future__ import annotations

from enum import StrEnum

from servicekit.states import state_name


class Colour(StrEnum):
    RED = "RED"
    BLUE = "BLUE"


NUMBERS = {Colour.RED: 1, Colour.BLUE: 2}


def test_a_known_number_is_its_domain_name() -> None:
    assert state_name(2, NUMBERS) == "BLUE"


def test_unspecified_is_no_filter() -> None:
    assert state_name(0, NUMBERS) == ""


def test_an_unknown_number_is_passed_on_for_the_use_case_to_refuse() -> None:
    assert state_name(9, NUMBERS) == "9"
