"""Opaque page tokens for keyset pagination over a monotonic row sequence."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from servicekit.validation import INT64_MAX, Validator

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
_PREFIX = "pb1:"

ItemT = TypeVar("ItemT")


def page_size(v: Validator, field: str, value: int) -> int:
    if value == 0:
        return DEFAULT_PAGE_SIZE
    v.in_range(field, value, 1, MAX_PAGE_SIZE)
    return value


# A listing in the order of a string key (an id) pages by that key instead.
_KEY_PREFIX = "pb1k:"


def encode_token(after: int | str) -> str:
    raw = f"{_PREFIX}{after}" if isinstance(after, int) else f"{_KEY_PREFIX}{after}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _raw_token(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return ""


def decode_token(v: Validator, field: str, token: str) -> int | None:
    """The cursor a token carries; None for the first page."""
    if not token:
        return None
    raw = _raw_token(token)
    if raw.startswith(_PREFIX) and raw[len(_PREFIX) :].isdigit():
        cursor = int(raw[len(_PREFIX) :])
        if cursor <= INT64_MAX:
            return cursor
    v.add(field, "is not a page token this service issued")
    return None


def decode_key_token(v: Validator, field: str, token: str) -> str | None:
    """The key a token of a listing in key order carries; None for the first page."""
    if not token:
        return None
    raw = _raw_token(token)
    if raw.startswith(_KEY_PREFIX) and len(raw) > len(_KEY_PREFIX):
        return raw[len(_KEY_PREFIX) :]
    v.add(field, "is not a page token this service issued")
    return None


@dataclass(frozen=True)
class Page(Generic[ItemT]):
    items: list[ItemT]
    next_page_token: str

    @classmethod
    def of(cls, rows: Sequence[tuple[int | str, ItemT]], limit: int) -> Page[ItemT]:
        """A page from up to limit+1 (cursor, item) rows; the extra row means there is more."""
        shown = rows[:limit]
        token = encode_token(shown[-1][0]) if len(rows) > limit else ""
        return cls([item for _, item in shown], token)
