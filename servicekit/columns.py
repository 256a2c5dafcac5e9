"""Column types both services' tables share."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, Dialect, TypeDecorator


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on SQLite and PostgreSQL alike.

    `UtcDateTime()` stores them naive (a TIMESTAMP column holding UTC);
    `UtcDateTime(timezone=True)` keeps them aware (TIMESTAMP WITH TIME ZONE), for a
    schema that was created that way. SQLite keeps neither offset, so reads are made
    aware here. A naive datetime is refused: it cannot say which moment it means.
    """

    impl = DateTime
    cache_ok = True

    def __init__(self, timezone: bool = False) -> None:
        super().__init__(timezone=timezone)
        self.timezone = timezone

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are refused: pass UTC-aware ones")
        moment = value.astimezone(UTC)
        return moment if self.timezone else moment.replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
