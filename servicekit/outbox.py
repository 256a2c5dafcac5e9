"""The transactional outbox: event rows written with the change they report, and their tables.

A unit of work that commits domain events hands them to its service's `OutboxWriter`,
which turns each into a protobuf message, numbers it within its aggregate (a counter
row that the same transaction updates) and inserts one outbox row, all before the
COMMIT (or, in a group commit, inside the unit's savepoint). A rolled-back change
leaves no row; a committed one always has its row. `servicekit.relay` publishes them.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    insert,
    text,
)

from servicekit.clock import as_utc
from servicekit.compiled import CompiledStatement

# SQLite only autoincrements an INTEGER PRIMARY KEY (the rowid).
_ID = BigInteger().with_variant(Integer(), "sqlite")

EVENTS_TABLE = "outbox_events"
SEQUENCES_TABLE = "event_sequences"
LEASES_TABLE = "event_relay_leases"
# The one lease row: whoever holds it is the service's publishing relay.
RELAY_LEASE = "relay"


class EventMessage(Protocol):
    """A protobuf event message: every one has an int64 `sequence` field."""

    sequence: int

    def SerializeToString(self, *, deterministic: bool = ...) -> bytes: ...


@dataclass(frozen=True)
class Outgoing:
    """A domain event as a service's encoder turns it into a published one."""

    aggregate_type: str  # "account", "redemption", "product": the middle of the subject
    aggregate_id: str  # the CloudEvents `subject`
    name: str  # the last part of the NATS subject, e.g. "points_deducted"
    message: EventMessage
    time: datetime  # when it happened: the CloudEvents `time`


# Turns a domain event into its published form, or None for events only metrics see.
Encoder = Callable[[object], Outgoing | None]


@dataclass(frozen=True)
class OutboxTables:
    events: Table
    sequences: Table
    leases: Table


def define_tables(metadata: MetaData) -> OutboxTables:
    """The outbox tables on a service's metadata; its migration creates the same ones."""
    events = Table(
        EVENTS_TABLE,
        metadata,
        # Commit order within an aggregate (the sequence counter's row lock sees to it).
        Column("id", _ID, primary_key=True, autoincrement=True),
        Column("event_id", String(36), nullable=False),
        Column("type", String(128), nullable=False),
        Column("subject", String(200), nullable=False),
        Column("aggregate_id", String(128), nullable=False),
        Column("sequence", BigInteger, nullable=False),
        # Microseconds since the epoch: when it happened, and when it was committed.
        Column("time_us", BigInteger, nullable=False),
        Column("create_us", BigInteger, nullable=False),
        Column("data", LargeBinary, nullable=False),
        # NULL until the stream has acknowledged it.
        Column("sent_us", BigInteger, nullable=True),
        # Serves the relay's "unsent, oldest first" and the pruning of old sent rows.
        Index("ix_outbox_events_sent_us_id", "sent_us", "id"),
    )
    sequences = Table(
        SEQUENCES_TABLE,
        metadata,
        Column("aggregate_type", String(32), primary_key=True),
        Column("aggregate_id", String(128), primary_key=True),
        Column("last_sequence", BigInteger, nullable=False),
    )
    leases = Table(
        LEASES_TABLE,
        metadata,
        Column("name", String(32), primary_key=True),
        Column("holder", String(64), nullable=False),
        Column("lease_until_us", BigInteger, nullable=False),
    )
    return OutboxTables(events, sequences, leases)


def create_tables(connection: Connection) -> None:
    """Version 1 of the outbox schema, for a service's migration (later changes: new ones)."""
    tables = define_tables(MetaData())
    for table in (tables.events, tables.sequences, tables.leases):
        table.create(connection)
    connection.execute(insert(tables.leases).values(name=RELAY_LEASE, holder="", lease_until_us=0))


def drop_tables(connection: Connection) -> None:
    tables = define_tables(MetaData())
    for table in (tables.leases, tables.sequences, tables.events):
        table.drop(connection)


def micros(moment: datetime) -> int:
    return int(as_utc(moment).timestamp() * 1_000_000)


def now_micros() -> int:
    return time.time_ns() // 1000


class OutboxWriter:
    """Writes the outbox rows of a unit of work's events on its connection.

    Per event: one counter upsert (which takes the aggregate's row lock, so its
    sequence numbers follow commit order with no gaps) and one INSERT, both run
    through `servicekit.compiled` inside the unit's own transaction: SQLAlchemy's
    per-statement overhead would be most of the outbox's cost on a deduction. A
    lock timeout or deadlock on the counter comes out as SQLAlchemy's
    `OperationalError`, so the database runner reruns the unit as for any other.
    """

    def __init__(self, tables: OutboxTables, service: str, encode: Encoder) -> None:
        self.tables = tables
        self.service = service
        self.encode = encode
        sequences = tables.sequences.name
        # The same upsert on SQLite and PostgreSQL.
        self._next_sequence = CompiledStatement(
            text(
                f"INSERT INTO {sequences} (aggregate_type, aggregate_id, last_sequence) "
                "VALUES (:aggregate_type, :aggregate_id, 1) "
                "ON CONFLICT (aggregate_type, aggregate_id) "
                f"DO UPDATE SET last_sequence = {sequences}.last_sequence + 1 "
                "RETURNING last_sequence"
            )
        )
        # inline(): no RETURNING of the new id, which nothing reads.
        self._insert = CompiledStatement(insert(tables.events).inline())

    def subject(self, outgoing: Outgoing) -> str:
        return f"pointsbridge.{self.service}.{outgoing.aggregate_type}.{outgoing.name}"

    def write(self, connection: Connection, events: Iterable[object]) -> int:
        """Insert the rows of `events` (those the encoder publishes); how many."""
        written = 0
        created = now_micros()
        for event in events:
            outgoing = self.encode(event)
            if outgoing is None:
                continue
            counter = self._next_sequence.first(
                connection,
                {
                    "aggregate_type": outgoing.aggregate_type,
                    "aggregate_id": outgoing.aggregate_id,
                },
            )
            assert counter is not None, "the upsert returns the new counter"
            sequence = int(counter[0])
            outgoing.message.sequence = sequence
            self._insert.execute(
                connection,
                {
                    "event_id": str(uuid.uuid4()),
                    "type": type(outgoing.message).DESCRIPTOR.full_name,  # type: ignore[attr-defined]
                    "subject": self.subject(outgoing),
                    "aggregate_id": outgoing.aggregate_id,
                    "sequence": sequence,
                    "time_us": micros(outgoing.time),
                    "create_us": created,
                    "data": outgoing.message.SerializeToString(),
                },
            )
            written += 1
        return written
