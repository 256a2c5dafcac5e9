"""Hostile input: every RPC of both services, sent random, malformed and extreme messages.

The RPCs are found by walking the service descriptors, so a new RPC is covered without
touching this file. Requests are built from each method's request descriptor: well-typed
but hostile values (empty, huge, non-ASCII and control-character strings, integer edges,
unknown enum numbers, long and repeating lists, Timestamps at and past their limits), then
raw bytes (garbage, truncated messages, wrong wire types, invalid UTF-8, framing lies), then
messages over the 4 MiB limit, then hostile authorization headers.

Whatever comes in, the servers must answer with a canonical status: never UNKNOWN, INTERNAL
or UNIMPLEMENTED; every error carries exactly one ErrorInfo of domain "pointsbridge";
INVALID_ARGUMENT names at least one field; a refusal changes nothing in either database;
and both servers still report SERVING afterwards.

Both servers run in-process on 127.0.0.1, once per test module and backend, in the module's event
loop. Hypothesis runs in a worker thread with a blocking gRPC client, so that the loop stays
free to serve; every payload goes out as raw bytes (no client-side serializer).

This module holds what the test_hostile_* modules share: the RPCs, the snapshots of both
databases, the client and the checks every answer must pass.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import grpc
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, Phase, currently_in_test_context, note, settings
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import Engine, make_url

from pointsbridge.cardpoints.v1 import cardpoints_pb2 as cp
from pointsbridge.ecommerce.v1 import ecommerce_pb2 as ec
from servicekit.db import normalize_url
from servicekit.devtools.credentials import bearer
from servicekit.status import REASON_CODES, RemoteError, remote_error

TIMEOUT = 15.0
LOOPBACK = "127.0.0.1"

# Examples per hypothesis run on SQLite; PostgreSQL runs a quarter of them (at least 3).
FIELD_EXAMPLES = 50
RAW_EXAMPLES = 25
HEADER_EXAMPLES = 80

NEVER = frozenset(
    {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNIMPLEMENTED}
)
REASON_SHAPE = re.compile(r"[A-Z][A-Z0-9]*(_[A-Z0-9]+)*")

# Refusals that DESIGN.md has the services record, so that a replay repeats them: the
# card-points idempotency record of a refused deduction or reversal, and the FAILED (or,
# when the bank cannot be reached, PENDING) redemption of the e-commerce service. They may
# add such a record; they may never move value. Every other refusal changes nothing at all.
RECORDED_REFUSALS = frozenset(
    {
        "INSUFFICIENT_POINTS",
        "ACCOUNT_FROZEN",
        "ACCOUNT_CLOSED",
        "ACCOUNT_NOT_FOUND",
        "REVERSAL_EXCEEDS_DEDUCTION",
        "POINTS_SYSTEM_UNAVAILABLE",
    }
)
RECORD_TABLES = frozenset({"cardpoints.idempotency_records", "ecommerce.redemptions"})

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
INT_RANGES: dict[int, tuple[int, int]] = {
    FieldDescriptor.TYPE_INT32: INT32,
    FieldDescriptor.TYPE_SINT32: INT32,
    FieldDescriptor.TYPE_SFIXED32: INT32,
    FieldDescriptor.TYPE_INT64: INT64,
    FieldDescriptor.TYPE_SINT64: INT64,
    FieldDescriptor.TYPE_SFIXED64: INT64,
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}
WIRE_VARINT, WIRE_FIXED64, WIRE_LEN, WIRE_START, WIRE_END, WIRE_FIXED32 = 0, 1, 2, 3, 4, 5
FIXED64_TYPES = {
    FieldDescriptor.TYPE_FIXED64,
    FieldDescriptor.TYPE_SFIXED64,
    FieldDescriptor.TYPE_DOUBLE,
}
FIXED32_TYPES = {
    FieldDescriptor.TYPE_FIXED32,
    FieldDescriptor.TYPE_SFIXED32,
    FieldDescriptor.TYPE_FLOAT,
}
LEN_TYPES = {FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES, FieldDescriptor.TYPE_MESSAGE}

# Timestamps: the epoch, before it, the first and last instants protobuf allows
# (0001-01-01 and 9999-12-31T23:59:59.999999999), one second past each, and int64 edges.
TIMESTAMP_SECONDS = (
    0,
    1,
    -1,
    1_700_000_000,
    -62_135_596_800,
    -62_135_596_801,
    253_402_300_799,
    253_402_300_800,
    *INT64,
)
TIMESTAMP_NANOS = (0, 1, 999_999_999, -1, 1_000_000_000, *INT32)

INVALID_UTF8 = (
    b"\xff\xfe",
    b"\xc0\x80",  # overlong NUL
    b"\xed\xa0\x80",  # an encoded surrogate
    b"\xf4\x90\x80\x80",  # past U+10FFFF
    b"card-\x80",
    b"\xe2\x82",  # truncated sequence
)


# ---------------------------------------------------------------- the RPCs


@dataclass(frozen=True)
class Rpc:
    """One RPC of one of the two servers, as its descriptor describes it."""

    server: str  # "cardpoints" or "ecommerce"
    service: str
    method: MethodDescriptor

    @property
    def name(self) -> str:
        return self.method.name

    @property
    def path(self) -> str:
        return f"/{self.service}/{self.method.name}"

    @property
    def request(self) -> Descriptor:
        return self.method.input_type

    def __str__(self) -> str:
        return f"{self.service.rsplit('.', 1)[-1]}.{self.method.name}"


def discover() -> list[Rpc]:
    found = []
    for server, module in (("cardpoints", cp), ("ecommerce", ec)):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                found.append(Rpc(server, service.full_name, method))
    return found


RPCS = discover()
SERVICES = sorted({rpc.service for rpc in RPCS})


# ---------------------------------------------------------------- the databases


Snapshot = dict[str, tuple[int, str]]
Metadata = tuple[tuple[str, str | bytes], ...]


def _read_only_engine(url: str) -> Engine:
    parsed = make_url(normalize_url(url))
    if parsed.get_backend_name() == "sqlite":
        path = Path(str(parsed.database)).resolve()
        return create_engine(f"sqlite:///file:{path}?mode=ro&uri=true")
    return create_engine(parsed, pool_size=1, execution_options={"postgresql_readonly": True})


class Books:
    """Both databases, read only: each table's row count and a checksum of all its rows."""

    def __init__(self, urls: dict[str, str]) -> None:
        self._engines = {name: _read_only_engine(url) for name, url in urls.items()}
        self._tables: dict[str, list[str]] = {}
        self._latest: Snapshot | None = None

    def take(self) -> Snapshot:
        snapshot: Snapshot = {}
        for name, engine in self._engines.items():
            with engine.connect() as connection:
                if name not in self._tables:
                    self._tables[name] = sorted(inspect(connection).get_table_names())
                for table in self._tables[name]:
                    rows = connection.execute(text(f'SELECT * FROM "{table}"')).all()
                    digest = hashlib.sha256()
                    for row in sorted(repr(tuple(row)) for row in rows):
                        digest.update(row.encode())
                    snapshot[f"{name}.{table}"] = (len(rows), digest.hexdigest())
        self._latest = snapshot
        return snapshot

    def latest(self) -> Snapshot:
        """The last snapshot taken, when nothing has been let through since."""
        return self._latest if self._latest is not None else self.take()

    def forget(self) -> None:
        self._latest = None

    def close(self) -> None:
        for engine in self._engines.values():
            engine.dispose()


def changed_tables(before: Snapshot, after: Snapshot) -> set[str]:
    return {name for name in before.keys() | after.keys() if before.get(name) != after.get(name)}


# ---------------------------------------------------------------- the servers


@dataclass(frozen=True)
class Known:
    """Values that exist in the seeded databases, by the name of the field they go in."""

    by_field: dict[str, tuple[str, ...]]

    def everything(self) -> tuple[str, ...]:
        return tuple(sorted({value for values in self.by_field.values() for value in values}))

    def of(self, fd: FieldDescriptor) -> tuple[str, ...]:
        return self.by_field.get(fd.name) or self.everything()


@dataclass
class Stack:
    """Both servers, a blocking client channel to each, and read-only views of their data."""

    backend: str
    channels: dict[str, grpc.Channel]
    books: Books
    known: Known  # so that some hostile requests get past the look-ups
    superuser: str  # the token of calls that are not about credentials
    seen: Counter[tuple[str, str, str]] = field(default_factory=Counter)

    def examples(self, on_sqlite: int) -> int:
        return on_sqlite if self.backend == "sqlite" else max(3, on_sqlite // 4)

    def _stub(self, rpc: Rpc) -> grpc.UnaryUnaryMultiCallable[bytes, bytes]:
        return self.channels[rpc.server].unary_unary(
            rpc.path, request_serializer=None, response_deserializer=None
        )

    def call(self, rpc: Rpc, payload: bytes, metadata: Metadata | None = None) -> Answer:
        if metadata is None:
            metadata = bearer(self.superuser)
        try:
            self._stub(rpc)(payload, timeout=TIMEOUT, metadata=metadata)
        except grpc.RpcError as error:
            return Answer.of(error)
        return Answer(grpc.StatusCode.OK)

    def call_all(self, calls: Sequence[tuple[Rpc, bytes]]) -> list[Answer]:
        """Like `call`, for several calls in flight at once."""
        futures = [
            self._stub(rpc).future(payload, timeout=TIMEOUT, metadata=bearer(self.superuser))
            for rpc, payload in calls
        ]
        answers = []
        for future in futures:
            try:
                future.result()
            except grpc.RpcError as error:
                answers.append(Answer.of(error))
            else:
                answers.append(Answer(grpc.StatusCode.OK))
        return answers


@dataclass(frozen=True)
class Answer:
    """What a call ended with, details included."""

    code: grpc.StatusCode
    error: RemoteError | None = None
    error_infos: int = 0
    violations: int = 0

    @classmethod
    def of(cls, error: grpc.RpcError) -> Answer:
        call = cast(grpc.Call, error)
        infos = violations = 0
        for key, value in call.trailing_metadata() or ():
            if key == "grpc-status-details-bin":
                status = status_pb2.Status.FromString(cast(bytes, value))
                for detail in status.details:
                    if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                        infos += 1
                    elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                        bad = error_details_pb2.BadRequest()
                        detail.Unpack(bad)
                        violations += len(bad.field_violations)
        return cls(call.code(), remote_error(error), infos, violations)

    @property
    def reason(self) -> str:
        return self.error.reason if self.error is not None else ""

    def __str__(self) -> str:
        if self.error is None:
            return self.code.name
        return f"{self.code.name} {self.error.reason} {self.error.message[:300]!r}"


# ---------------------------------------------------------------- the checks


def check_answer(rpc: Rpc, answer: Answer) -> None:
    """A canonical, well-formed answer: the property every call must have."""
    where = f"{rpc} answered {answer}"
    assert answer.code not in NEVER, where
    if answer.code is grpc.StatusCode.OK:
        return
    assert answer.error is not None
    assert answer.error_infos == 1, f"{where}: {answer.error_infos} ErrorInfo details"
    assert answer.error.domain == "pointsbridge", where
    assert REASON_SHAPE.fullmatch(answer.error.reason), where
    if answer.error.reason in REASON_CODES:
        assert answer.code is REASON_CODES[answer.error.reason], where
    if answer.code is grpc.StatusCode.INVALID_ARGUMENT:
        assert answer.violations >= 1, f"{where}: no field violations"


def exercise(stack: Stack, rpc: Rpc, payload: bytes, metadata: Metadata | None = None) -> Answer:
    """Send one payload; check the answer, and that a refusal changed nothing."""
    before = stack.books.latest()
    answer = stack.call(rpc, payload, metadata)
    if currently_in_test_context():
        note(f"{rpc} <- {len(payload)} bytes -> {answer}")
    stack.seen[(rpc.name, answer.code.name, answer.reason)] += 1
    check_answer(rpc, answer)
    if answer.code is grpc.StatusCode.OK:
        stack.books.forget()  # let through: it may have changed something
        return answer
    changed = changed_tables(before, stack.books.take())
    allowed = RECORD_TABLES if answer.reason in RECORDED_REFUSALS else frozenset()
    assert changed <= allowed, f"{rpc} refused ({answer}) yet changed {sorted(changed)}"
    return answer


def assert_serving(stack: Stack) -> None:
    for server, channel in stack.channels.items():
        health = health_pb2_grpc.HealthStub(channel)
        for name in ["", *sorted({rpc.service for rpc in RPCS if rpc.server == server})]:
            reply = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=TIMEOUT)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, (server, name)


def hostile_settings(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,  # the same examples on every run and in CI
        database=None,
        # No shrinking: against a live server it can take minutes; the regression tests
        # below pin the minimal inputs of the bugs found so far.
        phases=(Phase.explicit, Phase.generate),
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )
