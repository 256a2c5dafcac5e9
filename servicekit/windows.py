"""Time windows of the export listings: [start, end), where no end means now."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from servicekit.validation import Validator


@dataclass(frozen=True)
class Window:
    start: datetime | None
    end: datetime

    @property
    def empty(self) -> bool:
        """A window that opens at or after its end (now, when none was given) holds nothing."""
        return self.start is not None and self.start >= self.end


def window(v: Validator, start: datetime | None, end: datetime | None, now: datetime) -> Window:
    """The window [start, end or now); a given end must come after a given start."""
    if start is not None and end is not None and start >= end:
        v.add("end_time", "must be after start_time")
    return Window(start, end or now)
