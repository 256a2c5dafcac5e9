"""Time as the services see it: an injectable UTC clock, and protobuf Timestamp conversion."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from google.protobuf import timestamp_pb2

from servicekit.errors import FieldViolation, InvalidField

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything stored here is UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def to_timestamp(moment: datetime | None) -> timestamp_pb2.Timestamp | None:
    if moment is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(as_utc(moment))
    return stamp


def from_timestamp(stamp: timestamp_pb2.Timestamp) -> datetime:
    return stamp.ToDatetime(tzinfo=UTC)


def optional_time(message: Any, field: str) -> datetime | None:
    """A request's optional Timestamp field as a datetime; None when unset.

    A Timestamp outside 0001-01-01..9999-12-31, or with nanos outside 0..999999999,
    is bad input like any other.
    """
    if not message.HasField(field):
        return None
    try:
        return from_timestamp(getattr(message, field))
    except (ValueError, OverflowError):
        raise InvalidField(
            f"{field} is not a valid time",
            violations=[
                FieldViolation(field, "must be a time between 0001-01-01 and 9999-12-31 UTC")
            ],
        ) from None
