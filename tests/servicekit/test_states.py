"""A list request's protobuf state filter: read as a domain name, then as a domain state."""

from __future__ import annotations

from enum import StrEnum

from servicekit.errors import FieldViolation
from servicekit.states import state_name
from servicekit.validation import Validator


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


def test_the_use_case_reads_the_name_back_and_refuses_an_unknown_one() -> None:
    v = Validator()
    assert v.state("state", "BLUE", Colour) is Colour.BLUE
    assert v.state("state", "", Colour) is None
    assert v.violations == []
    assert v.state("state", state_name(9, NUMBERS), Colour) is None
    assert v.violations == [FieldViolation("state", "must be one of RED, BLUE or unspecified")]
