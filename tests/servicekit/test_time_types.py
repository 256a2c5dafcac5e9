"""Times one way: the UTC column type on both column kinds, and Timestamp conversion."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import Column, Integer, MetaData, Table, create_engine, insert, select
from sqlalchemy.exc import StatementError

from pointsbridge.cardpoints.v1 import cardpoints_pb2 as pb
from servicekit.columns import UtcDateTime
from servicekit.errors import InvalidField
from servicekit.timestamps import from_timestamp, optional_time, to_timestamp

EAST_8 = timezone(timedelta(hours=8))


@pytest.mark.parametrize("aware_column", [False, True])
def test_utc_columns_give_back_the_same_moment_in_utc(tmp_path: Path, aware_column: bool) -> None:
    metadata = MetaData()
    rows = Table(
        "rows",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("at", UtcDateTime(timezone=aware_column)),
    )
    engine = create_engine(f"sqlite:///{tmp_path / 'times.db'}")
    metadata.create_all(engine)
    moment = datetime(2026, 1, 31, 17, 58, 31, 123456, tzinfo=EAST_8)
    with engine.begin() as connection:
        connection.execute(insert(rows).values(id=1, at=moment))
        read = connection.execute(select(rows.c.at)).scalar_one()
        with pytest.raises(StatementError, match="naive datetimes are refused"):
            connection.execute(insert(rows).values(id=2, at=datetime(2026, 1, 31)))
    assert read == moment and read.tzinfo is UTC
    engine.dispose()


def test_timestamps_round_trip_in_utc() -> None:
    moment = datetime(2026, 1, 31, 9, 58, 31, 500000, tzinfo=UTC)
    stamp = to_timestamp(moment.astimezone(EAST_8))
    assert stamp == Timestamp(seconds=int(moment.timestamp()), nanos=500_000_000)
    assert from_timestamp(stamp) == moment
    assert to_timestamp(None) is None
    # A naive datetime from storage is UTC.
    assert to_timestamp(moment.replace(tzinfo=None)) == stamp


def test_a_request_time_outside_the_range_is_invalid_field() -> None:
    request = pb.ListDeductionsRequest(start_time=Timestamp(seconds=253_402_300_800))
    with pytest.raises(InvalidField) as refused:
        optional_time(request, "start_time")
    assert refused.value.violations[0].field == "start_time"
    assert optional_time(pb.ListDeductionsRequest(), "start_time") is None


@pytest.mark.parametrize(
    "moment",
    [
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2026, 12, 1, 16, 40, 1, 7, tzinfo=EAST_8),
        datetime(2026, 3, 29, 1, 30, tzinfo=timezone(timedelta(hours=-9, minutes=-30))),
        datetime(2026, 12, 1, 16, 40, 1, 250000),
    ],
)
def test_timestamps_are_the_ones_protobuf_makes(moment: datetime) -> None:
    made = Timestamp()
    made.FromDatetime(moment.astimezone(UTC) if moment.tzinfo else moment)
    assert to_timestamp(moment) == made
