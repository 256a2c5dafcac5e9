"""The one conversion between datetimes and protobuf Timestamps, both ways."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from google.protobuf import timestamp_pb2

from servicekit.clock import as_utc
from servicekit.errors import FieldViolation, InvalidField

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Timestamp's range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z.
_MIN_SECONDS = -62_135_596_800
_MAX_SECONDS = 253_402_300_799


def to_timestamp(moment: datetime | None) -> timestamp_pb2.Timestamp | None:
    """A stored moment (naive ones are UTC) as a Timestamp; None stays None.

    The same seconds and nanos as `Timestamp.FromDatetime` of the moment in UTC,
    from one subtraction instead of a time tuple.
    """
    if moment is None:
        return None
    elapsed = (moment if moment.tzinfo is not None else as_utc(moment)) - _EPOCH
    seconds = elapsed.days * 86_400 + elapsed.seconds
    if not _MIN_SECONDS <= seconds <= _MAX_SECONDS:
        raise ValueError(f"{moment!r} is outside the range of a Timestamp")
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=elapsed.microseconds * 1000)


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
