"""The outbox relay: publishes a service's outbox rows to NATS JetStream, oldest first.

One relay per service publishes at a time: it holds the service's lease row, taken
with FOR UPDATE SKIP LOCKED on PostgreSQL (so replicas never queue behind each other)
and renewed every round; the other replicas stand by and take over once it lapses.
The holder publishes unsent rows in commit order, one at a time, each with
`Nats-Msg-Id` = the event id, and marks a row sent only after the stream has
acknowledged it. A holder that crashes between the acknowledgement and marking the
row sent leaves it for the next holder, whose repeat the stream's duplicate window
drops. Per-aggregate order survives any hand-over: a relay publishes an aggregate's
next event only once every earlier one is acknowledged, by itself or by whoever
marked it sent.

Database work runs through the service's `Database` on its worker threads, and the
broker is only ever awaited here, so a broker that is down or slow never touches an RPC.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from grpc_health.v1 import health, health_pb2
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from prometheus_client import Counter, Gauge
from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from servicekit.db import Database, SqlUnitOfWork
from servicekit.outbox import RELAY_LEASE, OutboxTables, now_micros
from servicekit.streams import (
    BROKER_ERRORS,
    DUPLICATE_WINDOW,
    STREAMS,
    connect,
    ensure_stream,
    headers,
    safe_url,
)

log = logging.getLogger("pointsbridge.events")

LEASE = 15.0
PUBLISH_TIMEOUT = 3.0
BATCH = 200
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
)
OLDEST_AGE = Gauge(
    "pointsbridge_outbox_oldest_unsent_age_seconds",
    "Age of the oldest outbox row not yet acknowledged (0 when none), by service.",
    ["service"],
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
        self._js: JetStreamContext | None = None
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

    async def _jetstream(self) -> JetStreamContext:
        if self._js is None or self._nc is None or self._nc.is_closed:
            self._nc = await connect(self.settings.nats_url, name=self.holder)
            self._js = self._nc.jetstream(timeout=PUBLISH_TIMEOUT)
            outcome = await ensure_stream(self._js, self.service)
            log.info("event relay of %s: stream %s %s", self.service, self.stream.name, outcome)
        return self._js

    async def _disconnect(self) -> None:
        nc, self._nc, self._js = self._nc, None, None
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
        js = await self._jetstream()
        # Renewed at half time, so that a busy holder is never interrupted by its lease.
        renew_at = self._lease_until_us - int(self.settings.lease * 500_000)
        if now_micros() >= renew_at:
            if not await self.db.run(self._any_unsent):
                return False  # idle: no write transaction, so no fsync, while there is no work
            self._lease_until_us = await self.db.run(self._write_step(self._acquire))
            if not self._lease_until_us:
                return False  # another replica publishes; stand by
        rows = await self.db.run(self._read_unsent)
        if not rows:
            return False
        sent: list[int] = []
        margin = int(PUBLISH_TIMEOUT * 1_000_000)
        try:
            for row in rows:
                if now_micros() + margin >= self._lease_until_us:
                    break  # past the lease another relay may be publishing: renew first
                ack = await js.publish(
                    row.subject,
                    row.data,
                    timeout=PUBLISH_TIMEOUT,
                    stream=self.stream.name,
                    headers=headers(row, self.source),
                )
                PUBLISHED.labels(self.service, "true" if ack.duplicate else "false").inc()
                sent.append(row.id)
        finally:
            if sent:
                now = now_micros()
                await self.db.run(
                    self._write_step(
                        lambda s: s.connection().execute(self._mark_sent, {"ids": sent, "now": now})
                    )
                )
        return len(sent) == len(rows) == self.settings.batch

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
