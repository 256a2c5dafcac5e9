"""The one reading of a list request's protobuf state filter as a domain name."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

_State = TypeVar("_State")


def state_name(value: int, states: Mapping[_State, int]) -> str:
    """The domain name of a list request's state filter; "" for UNSPECIFIED (no filter).

    `states` maps each domain state to its protobuf number. An unknown number is
    passed on as itself, for the use case to refuse with the request's other bad fields.
    """
    for state, number in states.items():
        if number == value:
            return str(state)
    return "" if value == 0 else str(value)
