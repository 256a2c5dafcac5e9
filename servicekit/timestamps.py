"""The one conversion between datetimes and protobuf Timestamps, both ways."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from google.protobuf import timestamp_pb2

from servicekit.clock import as_utc
from servicekit.errors import FieldViolation, InvalidField


def to_timestamp(moment: datetime | None) -> timestamp_pb2.Timestamp | None:
    """A stored moment (naive ones are UTC) as a Timestamp; None stays None."""
    if moment is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(as_utc(moment))
    return stamp


def from_timestamp(stamp: timestamp_pb2.Timestamp) -> datetime:
    """An aware UTC datetime; ValueError or OverflowError outside 0001..9999."""
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
