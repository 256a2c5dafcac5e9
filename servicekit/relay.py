"""The outbox relay: publishes a service's outbox rows to NATS JetStream, oldest first.

One relay per service publishes at a time: it holds the service's lease row, taken
with FOR UPDATE SKIP LOCKED on PostgreSQL (so replicas never queue behind each other)
and renewed every round; the other replicas stand by and take over once it lapses.
The holder reads up to a batch of unsent rows in commit order and publishes them in
waves, each with `Nats-Msg-Id` = the event id: a wave is a run of consecutive rows
with at most one of each aggregate, sent together on the one connection, and the next
wave goes out only once the whole wave is acknowledged (so, while nothing fails, the
stream stores the events in commit order). So at most one event per aggregate is
ever unacknowledged, and a later event of an aggregate is sent only after the stream
stored the earlier one, whatever publish of a wave fails, times out or is lost with a
broker restart. An event the stream refuses holds back the rest of its aggregate for
the round; any other failure ends the round.
A row is marked sent only after the stream has acknowledged it. A holder that crashes
between the acknowledgement and marking the row sent leaves it for the next holder,
whose repeat the stream's duplicate window drops; so does an acknowledgement that was
lost after the stream stored the event. Per-aggregate order survives any hand-over: a
relay publishes an aggregate's next event only once every earlier one is
acknowledged, by itself or by whoever marked it sent. No wave starts unless its
acknowledgements are due before the lease ends, with a publish timeout to spare.

Database work runs through the service's `Database` on its worker threads (marking
sent shares the service's group commit on SQLite), and the broker is only ever awaited
here, so a broker that is down or slow never touches an RPC.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import nats.js.errors
from grpc_health.v1 import health, health_pb2
from nats.aio.client import Client as NatsClient
from prometheus_client import Counter, Gauge
from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from servicekit.db import Database, SqlUnitOfWork
from servicekit.outbox import RELAY_LEASE, OutboxTables, now_micros
from servicekit.streams import (
    BROKER_ERRORS,
    DUPLICATE_WINDOW,
    STREAMS,
    Acks,
    connect,
    ensure_stream,
    headers,
    safe_url,
)

log = logging.getLogger("pointsbridge.events")

LEASE = 15.0
PUBLISH_TIMEOUT = 3.0
BATCH = 200
# Publishes sent before the loop is given a turn while a wave goes out.
YIELD_EVERY = 64
IDLE_POLL = 0.1
MAX_BACKOFF = 5.0
# How often the backlog gauges and the health status are refreshed, and old rows pruned.
CHECK_EVERY = 1.0
PRUNE_EVERY = 30.0
PRUNE_BATCH = 5000
# The health-checking service name that reports the relay (the server's "" stays SERVING:
# a broker outage does not stop RPCs, so it must not take a replica out of rotation).
HEALTH_SERVICE = "pointsbridge.events.v1.Relay"

assert LEASE + 2 * PUBLISH_TIMEOUT + CHECK_EVERY < DUPLICATE_WINDOW

BACKLOG = Gauge(
    "pointsbridge_outbox_backlog",
    "Outbox rows not yet acknowledged by the stream, by service.",
    ["service"],
    # With --processes every process reads the same outbox: one value, the live processes' max.
    multiprocess_mode="livemax",
)
OLDEST_AGE = Gauge(
    "pointsbridge_outbox_oldest_unsent_age_seconds",
    "Age of the oldest outbox row not yet acknowledged (0 when none), by service.",
    ["service"],
    multiprocess_mode="livemax",
)
PUBLISHED = Counter(
    "pointsbridge_events_published_total",
    "Events the stream acknowledged, by service and whether it dropped them as a repeat.",
    ["service", "duplicate"],
)
FAILED = Counter(
    "pointsbridge_events_publish_failures_total",
    "Publish attempts that failed (broker down, timeout, refusal), by service.",
    ["service"],
)
PRUNED = Counter(
    "pointsbridge_outbox_pruned_total",
    "Sent outbox rows deleted after the retention, by service.",
    ["service"],
)


@dataclass(frozen=True)
class RelaySettings:
    """What `--nats-url`, `--events-retention` and `--events-stuck-after` configure."""

    nats_url: str = ""
    retention: float = 86400.0
    stuck_after: float = 60.0
    lease: float = LEASE
    batch: int = BATCH
    idle_poll: float = IDLE_POLL
    prune_every: float = PRUNE_EVERY


class Relay:
    """Publishes one service's outbox; `run` until `stop` is set."""

    def __init__(
        self,
        service: str,
        db: Database,
        tables: OutboxTables,
        settings: RelaySettings,
        *,
        health_servicer: health.aio.HealthServicer | None = None,
    ) -> None:
        self.service = service
        self.db = db
        self.tables = tables
        self.settings = settings
        self.health = health_servicer
        self.holder = f"{service}-{secrets.token_hex(6)}"
        self.source = f"/pointsbridge/{service}"
        self.stream = STREAMS[service]
        self._nc: NatsClient | None = None
        self._acks: Acks | None = None
        self._lease_until_us = 0
        self._serving: bool | None = None
        self._next_check = 0.0
        self._next_prune = 0.0
        events = tables.events
        self._unsent = (
            select(
                events.c.id,
                events.c.event_id,
                events.c.type,
                events.c.subject,
                events.c.aggregate_id,
                events.c.sequence,
                events.c.time_us,
                events.c.data,
            )
            .where(events.c.sent_us.is_(None))
            .order_by(events.c.id)
            .limit(bindparam("limit"))
        )
        self._mark_sent = (
            update(events)
            .where(events.c.id.in_(bindparam("ids", expanding=True)))
            .values(sent_us=bindparam("now"))
        )
        self._first_unsent = (
            select(events.c.id).where(events.c.sent_us.is_(None)).order_by(events.c.id).limit(1)
        )
        self._backlog = select(func.count(), func.min(events.c.create_us)).where(
            events.c.sent_us.is_(None)
        )
        leases = tables.leases
        self._lease = (
            select(leases.c.holder, leases.c.lease_until_us)
            .where(leases.c.name == RELAY_LEASE)
            .with_for_update(skip_locked=True)
        )
        self._take_lease = (
            update(leases)
            .where(leases.c.name == RELAY_LEASE)
            .values(holder=bindparam("holder"), lease_until_us=bindparam("until"))
        )
        self._give_up_lease = (
            update(leases)
            .where(leases.c.name == RELAY_LEASE, leases.c.holder == bindparam("holder"))
            .values(lease_until_us=0)
        )
        old = (
            select(events.c.id)
            .where(events.c.sent_us.is_not(None), events.c.sent_us < bindparam("cutoff"))
            .order_by(events.c.sent_us)
            .limit(PRUNE_BATCH)
            .scalar_subquery()
        )
        self._prune = delete(events).where(events.c.id.in_(old))

    # ------------------------------------------------------------ database steps (threads)

    def _write_step(self, fn: Callable[[Session], Any]) -> Callable[[], Any]:
        sessions: sessionmaker[Session] = self.db.sessions

        def step() -> Any:
            with SqlUnitOfWork(sessions) as uow:
                result = fn(uow.session)
                uow.commit()
            return result

        return step

    def _acquire(self, session: Session) -> int:
        """Take or renew the lease; its end (microseconds), or 0 when another relay holds it."""
        now = now_micros()
        row = session.connection().execute(self._lease).first()
        if row is None:
            return 0  # another replica is renewing it this very moment
        if row.holder != self.holder and row.lease_until_us > now:
            return 0
        until = now + int(self.settings.lease * 1_000_000)
        session.connection().execute(self._take_lease, {"holder": self.holder, "until": until})
        return until

    def _read_unsent(self) -> list[Any]:
        with self.db.read_sessions() as session:
            return list(session.connection().execute(self._unsent, {"limit": self.settings.batch}))

    def _any_unsent(self) -> bool:
        with self.db.read_sessions() as session:
            return session.connection().execute(self._first_unsent).first() is not None

    def _read_backlog(self) -> tuple[int, int | None]:
        with self.db.read_sessions() as session:
            count, oldest = session.connection().execute(self._backlog).one()
        return int(count), oldest

    # ------------------------------------------------------------ the loop (event loop)

    async def run(self, stop: asyncio.Event) -> None:
        backoff = 0.0
        try:
            while not stop.is_set():
                busy = False
                try:
                    await self._check()
                    busy = await self._round()
                    backoff = 0.0
                except asyncio.CancelledError:
                    raise
                except Exception as error:
                    if isinstance(error, BROKER_ERRORS):
                        FAILED.labels(self.service).inc()
                    backoff = min(MAX_BACKOFF, max(0.2, backoff * 2))
                    log.warning(
                        "event relay of %s: %s: %s; retrying in %.1fs",
                        self.service,
                        type(error).__name__,
                        error,
                        backoff,
                    )
                    await self._disconnect()
                delay = backoff or (0 if busy else self.settings.idle_poll)
                if delay:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), delay)
        finally:
            await self._release()
            await self._disconnect()

    async def _jetstream(self) -> Acks:
        if self._acks is None or self._nc is None or self._nc.is_closed:
            await self._disconnect()
            self._nc = await connect(self.settings.nats_url, name=self.holder)
            js = self._nc.jetstream(timeout=PUBLISH_TIMEOUT)
            outcome = await ensure_stream(js, self.service)
            log.info("event relay of %s: stream %s %s", self.service, self.stream.name, outcome)
            acks = Acks(self._nc)
            await acks.start()
            self._acks = acks
        return self._acks

    async def _disconnect(self) -> None:
        nc, self._nc, acks, self._acks = self._nc, None, self._acks, None
        if acks is not None:
            acks.abandon()
        if nc is not None and not nc.is_closed:
            try:
                await asyncio.wait_for(nc.close(), 2)
            except Exception as error:  # closing a broken connection
                log.debug("nats close: %s", error)

    async def _release(self) -> None:
        """Hand the lease back on a clean stop, so that a standby takes over at once."""
        if not self._lease_until_us:
            return
        self._lease_until_us = 0
        try:
            await self.db.run(
                self._write_step(
                    lambda s: s.connection().execute(self._give_up_lease, {"holder": self.holder})
                )
            )
        except Exception as error:  # it lapses by itself
            log.debug("giving up the relay lease: %s", error)

    async def _round(self) -> bool:
        """Publish one batch if this relay holds the lease; whether there may be more."""
        acks = await self._jetstream()
        # Renewed at half time, so that a busy holder is never interrupted by its lease.
        renew_at = self._lease_until_us - int(self.settings.lease * 500_000)
        if now_micros() >= renew_at:
            if not await self.db.run(self._any_unsent):
                return False  # idle: no write transaction, so no fsync, while there is no work
            self._lease_until_us = await self.db.write(self._write_step(self._acquire))
            if not self._lease_until_us:
                return False  # another replica publishes; stand by
        rows = await self.db.run(self._read_unsent)
        if not rows:
            return False
        sent: list[int] = []
        try:
            await self._publish(acks, rows, sent)
        finally:
            if sent:
                now = now_micros()
                await self.db.write(
                    self._write_step(
                        lambda s: s.connection().execute(self._mark_sent, {"ids": sent, "now": now})
                    )
                )
        return len(sent) == len(rows) == self.settings.batch

    async def _publish(self, acks: Acks, rows: list[Any], sent: list[int]) -> None:
        """Publish `rows` wave by wave, appending to `sent` the id of each one acknowledged.

        An event the stream refuses (its answer a 400, such as one too large) holds back
        its aggregate's later rows of the round, and the rest go on; any other failure
        (a timeout, a lost connection) ends the round. The first failure is raised at
        the end, after every acknowledged row is in `sent`.
        """
        loop = asyncio.get_running_loop()
        margin = int(PUBLISH_TIMEOUT * 1_000_000)
        refused: set[tuple[str, str]] = set()
        errors: list[BaseException] = []
        for wave in waves(rows):
            if refused:
                wave = [row for row in wave if aggregate(row) not in refused]
                if not wave:
                    continue
            if now_micros() + margin >= self._lease_until_us:
                break  # past the lease another relay may be publishing: renew first
            deadline = loop.time() + PUBLISH_TIMEOUT
            futures: list[asyncio.Future[bool]] = []
            try:
                for n, row in enumerate(wave, 1):
                    futures.append(
                        await acks.send(
                            row.subject, row.data, headers(row, self.source, self.stream.name)
                        )
                    )
                    if n % YIELD_EVERY == 0:
                        await asyncio.sleep(0)
                await asyncio.wait(futures, timeout=max(0.0, deadline - loop.time()))
            finally:
                acks.abandon()  # what is not answered now counts as not acknowledged
            broken = False
            for row, future in zip(wave, futures, strict=True):
                error = _failure(future)
                if error is None:
                    PUBLISHED.labels(self.service, "true" if future.result() else "false").inc()
                    sent.append(row.id)
                    continue
                errors.append(error)
                if isinstance(error, nats.js.errors.BadRequestError):
                    refused.add(aggregate(row))
                else:
                    broken = True
            if broken:
                break
        if errors:
            FAILED.labels(self.service).inc(len(errors) - 1)  # run() counts the one raised
            raise errors[0]

    async def _check(self) -> None:
        """Refresh the backlog gauges and the health status; prune now and then."""
        loop = asyncio.get_running_loop()
        if loop.time() < self._next_check:
            return
        self._next_check = loop.time() + CHECK_EVERY
        count, oldest = await self.db.run(self._read_backlog)
        age = 0.0 if oldest is None else max(0.0, (now_micros() - oldest) / 1_000_000)
        BACKLOG.labels(self.service).set(count)
        OLDEST_AGE.labels(self.service).set(age)
        await self._report(age <= self.settings.stuck_after)
        if self._lease_until_us and loop.time() >= self._next_prune:
            self._next_prune = loop.time() + self.settings.prune_every
            cutoff = now_micros() - int(self.settings.retention * 1_000_000)
            pruned = await self.db.run(
                self._write_step(
                    lambda s: s.connection().execute(self._prune, {"cutoff": cutoff}).rowcount
                )
            )
            if pruned:
                PRUNED.labels(self.service).inc(pruned)
                log.info("event relay of %s: pruned %d sent events", self.service, pruned)

    async def _report(self, serving: bool) -> None:
        if self.health is None or serving == self._serving:
            return
        self._serving = serving
        status = health_pb2.HealthCheckResponse
        await self.health.set(HEALTH_SERVICE, status.SERVING if serving else status.NOT_SERVING)
        if not serving:
            log.error(
                "event relay of %s is stuck: the oldest unpublished event is older than %.0fs",
                self.service,
                self.settings.stuck_after,
            )


def waves(rows: list[Any]) -> list[list[Any]]:
    """`rows` (in commit order) cut into runs that hold at most one row of each aggregate.

    Published wave after wave, they reach the stream in commit order while nothing fails.
    """
    result: list[list[Any]] = []
    wave: list[Any] = []
    seen: set[tuple[str, str]] = set()
    for row in rows:
        key = aggregate(row)
        if key in seen:
            result.append(wave)
            wave, seen = [], set()
        seen.add(key)
        wave.append(row)
    if wave:
        result.append(wave)
    return result


def aggregate(row: Any) -> tuple[str, str]:
    """Which aggregate an outbox row belongs to: its subject's prefix, and its id."""
    return row.subject.rpartition(".")[0], row.aggregate_id


def _failure(future: asyncio.Future[bool]) -> BaseException | None:
    """Why `future` holds no acknowledgement, or None when it does."""
    if not future.done() or future.cancelled():
        return TimeoutError(f"no acknowledgement from the stream within {PUBLISH_TIMEOUT}s")
    return future.exception()


@dataclass
class RunningRelay:
    relay: Relay
    task: asyncio.Task[None]
    stop_event: asyncio.Event

    async def stop(self) -> None:
        self.stop_event.set()
        await self.task


def start_relay(
    service: str,
    db: Database,
    tables: OutboxTables,
    settings: RelaySettings,
    health_servicer: health.aio.HealthServicer | None = None,
) -> RunningRelay | None:
    """The relay as a background task of the server, or None when no NATS URL is set."""
    if not settings.nats_url:
        log.info("events are recorded in the outbox; publishing is off (no --nats-url)")
        return None
    relay = Relay(service, db, tables, settings, health_servicer=health_servicer)
    stop = asyncio.Event()
    task = asyncio.get_running_loop().create_task(relay.run(stop), name=f"{service}-relay")
    log.info("event relay of %s publishing to %s", service, safe_url(settings.nats_url))
    return RunningRelay(relay, task, stop)
