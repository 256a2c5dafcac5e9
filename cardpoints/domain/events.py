"""Facts the card-points use cases record; published after their unit of work commits."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PointsCredited:
    account_id: str
    points: int


@dataclass(frozen=True)
class PointsDeducted:
    account_id: str
    points: int


@dataclass(frozen=True)
class DeductionRefused:
    account_id: str
    reason: str


@dataclass(frozen=True)
class PointsReversed:
    account_id: str
    points: int


Event = PointsCredited | PointsDeducted | DeductionRefused | PointsReversed
