"""Runs a service's local steps off the event loop: the one "commit, then publish" path.

A local step is a synchronous function `step(uow, cmd, clock) -> result`. It reads,
lets the aggregate decide, stores what was decided and commits at most once. The
runner (servicekit.db.Database) may rerun it from the top after a transient conflict
(a SQLite busy lock, a PostgreSQL serialization failure), so a step never keeps
state between runs; a unique key that refuses a concurrent writer simply makes the
rerun read what that writer committed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from servicekit.clock import Clock

T = TypeVar("T")
C = TypeVar("C")
U = TypeVar("U", bound="Committing")


class Committing(Protocol):
    """What Steps needs of a unit of work: the events of what it committed."""

    committed_events: list[object]


class Runner(Protocol):
    """Runs one synchronous function off the event loop, rerunning it on transient conflicts."""

    async def run(self, fn: Callable[[], T]) -> T: ...

    async def write(self, fn: Callable[[], T]) -> T:
        """`run`, for a function that opens a write unit of work (which may share a commit)."""
        ...


def _no_one(events: Sequence[object]) -> None:
    return None


@dataclass(frozen=True)
class Steps(Generic[U]):
    """The runner, the write and read units of work, the clock and the publisher of events.

    Read units of work never take the write lock (on SQLite they do not wait for it);
    bootstrap builds them over the database's read sessions.
    """

    runner: Runner
    uow: Callable[[], U]
    read_uow: Callable[[], U]
    clock: Clock
    # Receives the domain events of every committed step (metrics, for one).
    publish: Callable[[Sequence[object]], None] = _no_one

    async def write(self, step: Callable[[U, C, Clock], T], cmd: C) -> T:
        """Run a step that may commit, then publish what it committed."""
        uow = self.uow()
        try:
            return await self.runner.write(lambda: step(uow, cmd, self.clock))
        finally:
            self.publish(uow.committed_events)

    async def read(self, step: Callable[[U, C, Clock], T], cmd: C) -> T:
        """Run a step that only reads, and never commits."""
        uow = self.read_uow()
        return await self.runner.run(lambda: step(uow, cmd, self.clock))
