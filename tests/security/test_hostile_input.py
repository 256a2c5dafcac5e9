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

Both servers run in-process on 127.0.0.1, once per module and backend, in the module's event
loop. Hypothesis runs in a worker thread with a blocking gRPC client, so that the loop stays
free to serve; every payload goes out as raw bytes (no client-side serializer).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import grpc
import jwt
import pytest
import pytest_asyncio
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, Phase, currently_in_test_context, given, note, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import Engine, make_url

from cardpoints.entrypoints.server import Settings as CardpointsSettings
from cardpoints.entrypoints.server import start as start_cardpoints
from ecommerce.entrypoints.server import Settings as EcommerceSettings
from ecommerce.entrypoints.server import start as start_ecommerce
from pointsbridge.cardpoints.v1 import cardpoints_pb2 as cp
from pointsbridge.cardpoints.v1 import cardpoints_pb2_grpc as cp_grpc
from pointsbridge.ecommerce.v1 import ecommerce_pb2 as ec
from pointsbridge.ecommerce.v1 import ecommerce_pb2_grpc as ec_grpc
from servicekit.auth import generate_signing_key
from servicekit.db import normalize_url
from servicekit.devtools.credentials import bearer
from servicekit.devtools.databases import drop_database
from servicekit.paging import encode_token
from servicekit.server import MAX_MESSAGE_BYTES
from servicekit.status import REASON_CODES, RemoteError, remote_error
from tests.auth import Callers
from tests.conftest import BACKENDS, create_pg_database

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


async def _seed(cardpoints: str, ecommerce: str, auth: Callers) -> Known:
    """An active and a frozen card, a product, two linked customers and one redemption."""
    async with auth.channel(cardpoints) as bank, auth.channel(ecommerce) as shop:
        bank_admin = cp_grpc.CardPointsAdminServiceStub(bank)
        shop_admin = ec_grpc.EcommerceAdminServiceStub(shop)
        for account, customer in (("card-seed", "seed-customer"), ("card-frozen", "frozen")):
            await bank_admin.OpenAccount(
                cp.OpenAccountRequest(account_id=account, holder_name="Seed Holder"),
                timeout=TIMEOUT,
            )
            await bank_admin.CreditPoints(
                cp.CreditPointsRequest(
                    request_id=f"seed-{account}", account_id=account, points=1_000_000
                ),
                timeout=TIMEOUT,
            )
            await shop_admin.LinkCardAccount(
                ec.LinkCardAccountRequest(customer_id=customer, card_account_id=account),
                timeout=TIMEOUT,
            )
        await bank_admin.SetAccountState(
            cp.SetAccountStateRequest(account_id="card-frozen", state=cp.ACCOUNT_STATE_FROZEN),
            timeout=TIMEOUT,
        )
        await shop_admin.CreateCouponProduct(
            ec.CreateCouponProductRequest(
                product_id="seed-product",
                display_name="10 off",
                face_value_minor=1000,
                currency="CNY",
                points_per_coupon=100,
                validity_days=30,
                max_quantity_per_redemption=50,
            ),
            timeout=TIMEOUT,
        )
        redemption = (
            await ec_grpc.RedemptionServiceStub(shop).RedeemPoints(
                ec.RedeemPointsRequest(
                    request_id="seed-redeem",
                    customer_id="seed-customer",
                    product_id="seed-product",
                    quantity=3,
                ),
                timeout=TIMEOUT,
            )
        ).redemption
    rid, codes = redemption.redemption_id, [c.code for c in redemption.coupons]
    return Known(
        {
            "account_id": ("card-seed", "card-frozen"),
            "card_account_id": ("card-seed", "card-frozen"),
            "holder_name": ("Seed Holder",),
            "customer_id": ("seed-customer", "frozen"),
            "product_id": ("seed-product",),
            "redemption_id": (rid,),
            "deduction_id": (redemption.deduction_id,),
            "deduction_request_id": (f"redemption:{rid}",),
            "request_id": ("seed-redeem", f"redemption:{rid}", "seed-card-seed"),
            "code": (*codes, codes[0].lower().replace("-", "")),
            "codes": tuple(codes),
            "merchant_id": ("ecommerce",),
            "currency": ("CNY",),
            "order_id": ("order-1",),
            "page_token": (encode_token(1), encode_token(2**63 - 1)),
        }
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=BACKENDS)
async def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, auth: Callers
) -> AsyncIterator[Stack]:
    backend = str(request.param)
    created: list[str] = []

    def new_url(name: str) -> str:
        if backend == "sqlite":
            return f"sqlite:///{tmp_path_factory.mktemp('hostile') / name}.db"
        url = create_pg_database()
        created.append(url)
        return url

    def drop_databases() -> None:
        for url in created:
            drop_database(url)

    async with contextlib.AsyncExitStack() as cleanup:
        cleanup.callback(drop_databases)  # last, once everything else has let go
        urls = {"cardpoints": new_url("cardpoints"), "ecommerce": new_url("ecommerce")}
        cardpoints = await start_cardpoints(
            CardpointsSettings(
                **auth.server_security,
                address=f"{LOOPBACK}:0",
                database_url=urls["cardpoints"],
                workers=4,
            )
        )
        cleanup.push_async_callback(cardpoints.stop, 1)
        ecommerce = await start_ecommerce(
            EcommerceSettings(
                **auth.ecommerce_security,
                address=f"{LOOPBACK}:0",
                database_url=urls["ecommerce"],
                cardpoints_address=f"{LOOPBACK}:{cardpoints.port}",
                recovery_interval=0,  # nothing may write behind the snapshots' back
                workers=4,
            )
        )
        cleanup.push_async_callback(ecommerce.stop, 1)
        addresses = {
            "cardpoints": f"{LOOPBACK}:{cardpoints.port}",
            "ecommerce": f"{LOOPBACK}:{ecommerce.port}",
        }
        channels = {name: grpc.insecure_channel(address) for name, address in addresses.items()}
        for channel in channels.values():
            cleanup.callback(channel.close)
        books = Books(urls)
        cleanup.callback(books.close)
        known = await _seed(addresses["cardpoints"], addresses["ecommerce"], auth=auth)
        yield Stack(backend, channels, books, known, auth.superuser)


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


# ---------------------------------------------------------------- well-typed, hostile values


CONTROL = st.one_of(
    st.text(st.characters(max_codepoint=0x1F), min_size=1, max_size=8),
    st.sampled_from(["\x00", "card\x00seed", "a\r\nb", "\t", "\x7f", "\u202e", "\ufeff", "\u2028"]),
)
NON_ASCII = st.one_of(
    st.text(st.characters(min_codepoint=0x80), min_size=1, max_size=24),
    st.sampled_from(["caf\u00e9", "\u4e2d\u6587", "\U0001f600", "\u0131", "\ufb01", "\u00df" * 70]),
)
HUGE = st.builds(
    lambda unit, size: unit * (size // len(unit)),
    st.sampled_from(["a", "9", "-", " ", "\u00e9", "\u4e2d", "\U0001f600", "\x00", "ab:"]),
    st.sampled_from([65, 129, 201, 4_097, 65_537, 100_000]),
)
SPECIAL = st.sampled_from(
    [
        " ",
        "0",
        "-1",
        "null",
        "NaN",
        "' OR '1'='1",
        '"; DROP TABLE accounts; --',
        "%s%n%x",
        "../../etc/passwd",
        "${jndi:ldap://127.0.0.1/a}",
        "pb1:-1",
        encode_token(0),
        encode_token(-1),
        encode_token(2**63),
        encode_token(10**4000),
        base64.urlsafe_b64encode(b"pb1:\xff").decode(),
        "=" * 8,
    ]
)
PLAUSIBLE = st.from_regex(r"[A-Za-z0-9._:@-]{1,70}", fullmatch=True)


def strings(known: Sequence[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.just(""),
        st.sampled_from(known),
        PLAUSIBLE,
        HUGE,
        CONTROL,
        NON_ASCII,
        SPECIAL,
        st.text(max_size=40),
    )


def integers(low: int, high: int) -> st.SearchStrategy[int]:
    edges = [0, 1, -1, 2, 3, 50, 51, 100, 300, 1000, 1001, 3650, 3651, 2**31 - 1, 2**31]
    edges += [2**53 + 1, 10**18, low, low + 1, high - 1, high]
    return st.one_of(
        st.sampled_from(sorted({e for e in edges if low <= e <= high})),
        st.integers(max(low, -3), min(high, 1100)),
        st.integers(low, high),
    )


def timestamps() -> st.SearchStrategy[Timestamp]:
    return st.builds(
        lambda seconds, nanos: Timestamp(seconds=seconds, nanos=nanos),
        st.one_of(st.sampled_from(TIMESTAMP_SECONDS), st.integers(*INT64)),
        st.one_of(st.sampled_from(TIMESTAMP_NANOS), st.integers(*INT32)),
    )


def scalars(fd: FieldDescriptor, known: Known, short: bool = False) -> st.SearchStrategy[Any]:
    """Values of one (non-message) field, or of one element of a repeated field."""
    if fd.type == FieldDescriptor.TYPE_STRING:
        return (
            st.one_of(st.just(""), st.sampled_from(known.of(fd)), PLAUSIBLE)
            if short
            else strings(known.of(fd))
        )
    if fd.type == FieldDescriptor.TYPE_BYTES:
        return (
            st.binary(max_size=64)
            if short
            else st.one_of(
                st.binary(max_size=256), st.sampled_from(INVALID_UTF8), st.just(b"\x00" * 100_000)
            )
        )
    if fd.type in INT_RANGES:
        return integers(*INT_RANGES[fd.type])
    if fd.type == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if fd.enum_type is not None:
        known_numbers = sorted(v.number for v in fd.enum_type.values)
        if fd.enum_type.is_closed:
            return st.sampled_from(known_numbers)
        unknown = [n for n in (-1, max(known_numbers) + 1, 99, *INT32) if n not in known_numbers]
        return st.one_of(
            st.sampled_from(known_numbers), st.sampled_from(unknown), st.integers(*INT32)
        )
    if fd.type == FieldDescriptor.TYPE_DOUBLE:
        return st.floats()
    if fd.type == FieldDescriptor.TYPE_FLOAT:
        return st.floats(width=32)
    raise AssertionError(f"no strategy for {fd.full_name} of type {fd.type}")


def field_values(fd: FieldDescriptor, known: Known, depth: int) -> st.SearchStrategy[Any]:
    if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
        key, value = fd.message_type.fields_by_name["key"], fd.message_type.fields_by_name["value"]
        return st.dictionaries(
            scalars(key, known, short=True), field_values(value, known, depth + 1), max_size=5
        )
    if fd.message_type is not None:
        element: st.SearchStrategy[Any] = messages(fd.message_type, known, depth + 1)
        short = st.builds(message_factory.GetMessageClass(fd.message_type))  # many, not huge
    else:
        element = scalars(fd, known)
        short = scalars(fd, known, short=True)
    if not fd.is_repeated:
        return element
    return st.one_of(
        st.lists(element, max_size=6),
        # many entries, all the same, or a few repeated many times over
        st.builds(lambda item, n: [item] * n, short, st.sampled_from([2, 3, 101, 1001, 5000])),
        st.builds(
            lambda items, n: items * n,
            st.lists(short, min_size=1, max_size=3),
            st.sampled_from([2, 50, 400]),
        ),
    )


def _assign(message: Message, fd: FieldDescriptor, value: Any) -> None:
    target = getattr(message, fd.name)
    if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
        for key, item in value.items():
            if isinstance(item, Message):
                target[key].CopyFrom(item)
            else:
                target[key] = item
    elif fd.is_repeated:
        target.extend(value)
    elif fd.message_type is not None:
        target.CopyFrom(value)
    else:
        setattr(message, fd.name, value)


def _builder(descriptor: Descriptor) -> Callable[[dict[str, Any]], Message]:
    cls = message_factory.GetMessageClass(descriptor)

    def build(values: dict[str, Any]) -> Message:
        message = cls()
        for name, value in values.items():
            if value is not None:
                _assign(message, descriptor.fields_by_name[name], value)
        return message

    return build


def messages(descriptor: Descriptor, known: Known, depth: int = 0) -> st.SearchStrategy[Message]:
    """Messages of one type whose every field is either unset or set to something hostile.

    Setting a field to its default is different from leaving it unset for optional and
    message fields, so both happen; oneof members overwrite each other as on the wire.
    """
    if descriptor.full_name == Timestamp.DESCRIPTOR.full_name:
        return timestamps()
    if depth > 3:
        return st.builds(message_factory.GetMessageClass(descriptor))
    fields = {
        fd.name: st.one_of(st.none(), field_values(fd, known, depth)) for fd in descriptor.fields
    }
    return st.fixed_dictionaries(fields).map(_builder(descriptor))


def benign_values(fd: FieldDescriptor, known: Known, depth: int) -> st.SearchStrategy[Any]:
    """Values that pass the usual checks, so that a hostile neighbour is judged further in."""
    element: st.SearchStrategy[Any]
    if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
        return st.just({})
    if fd.message_type is not None and fd.message_type.full_name == Timestamp.DESCRIPTOR.full_name:
        element = st.one_of(
            st.builds(
                lambda seconds, nanos: Timestamp(seconds=seconds, nanos=nanos),
                st.integers(0, 2_000_000_000),
                st.integers(0, 999_999_999),
            ),
            st.sampled_from(
                [  # the first and the last instants a Timestamp may hold
                    Timestamp(seconds=-62_135_596_800),
                    Timestamp(seconds=253_402_300_799, nanos=999_999_999),
                ]
            ),
        )
    elif fd.message_type is not None:
        element = st.fixed_dictionaries(
            {f.name: benign_values(f, known, depth + 1) for f in fd.message_type.fields}
            if depth < 3
            else {}
        ).map(_builder(fd.message_type))
    elif fd.type == FieldDescriptor.TYPE_STRING:
        element = st.one_of(
            st.sampled_from(known.of(fd)), st.from_regex(r"[a-z0-9-]{1,20}", fullmatch=True)
        )
    elif fd.type in INT_RANGES:
        element = st.one_of(st.sampled_from([1, 2, 3, 100, 300]), st.integers(0, 60))
    elif fd.enum_type is not None:
        element = st.sampled_from(sorted(v.number for v in fd.enum_type.values))
    elif fd.type == FieldDescriptor.TYPE_BOOL:
        element = st.booleans()
    elif fd.type == FieldDescriptor.TYPE_BYTES:
        element = st.binary(max_size=8)
    else:
        element = st.floats(0, 10)
    return st.lists(element, min_size=1, max_size=3) if fd.is_repeated else element


def requests(descriptor: Descriptor, known: Known) -> st.SearchStrategy[Message]:
    """Hostile everywhere, or plausible but for one or two hostile fields."""
    names = [fd.name for fd in descriptor.fields]
    if not names:
        return messages(descriptor, known)
    plausible = st.fixed_dictionaries(
        {fd.name: st.one_of(benign_values(fd, known, 0), st.none()) for fd in descriptor.fields}
    )
    hostile = st.fixed_dictionaries(
        {fd.name: field_values(fd, known, 0) for fd in descriptor.fields}
    )

    def combine(base: dict[str, Any], bad: dict[str, Any], chosen: set[str]) -> dict[str, Any]:
        return {name: bad[name] if name in chosen else base[name] for name in names}

    mostly_plausible = st.builds(
        combine, plausible, hostile, st.sets(st.sampled_from(names), max_size=2)
    ).map(_builder(descriptor))
    return st.one_of(messages(descriptor, known), mostly_plausible)


def _run_fields(stack: Stack, rpc: Rpc) -> None:
    @hostile_settings(stack.examples(FIELD_EXAMPLES))
    @given(request=requests(rpc.request, stack.known))
    def hostile_fields(request: Message) -> None:
        note(f"request: {str(request)[:2000]}")
        exercise(stack, rpc, request.SerializeToString())

    hostile_fields()


# ---------------------------------------------------------------- raw bytes


def varint(value: int) -> bytes:
    value &= 2**64 - 1
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def tag(number: int, wire_type: int) -> bytes:
    return varint(number << 3 | wire_type)


def length_delimited(number: int, payload: bytes) -> bytes:
    return tag(number, WIRE_LEN) + varint(len(payload)) + payload


def wire_type(fd: FieldDescriptor) -> int:
    if fd.is_repeated and fd.type not in LEN_TYPES:
        return WIRE_LEN  # packed
    if fd.type in LEN_TYPES:
        return WIRE_LEN
    if fd.type in FIXED64_TYPES:
        return WIRE_FIXED64
    if fd.type in FIXED32_TYPES:
        return WIRE_FIXED32
    return WIRE_VARINT


def wire_value(number: int, kind: int, data: bytes, big: int) -> bytes:
    """A field of any wire type, the invalid ones (3, 4, 6, 7) included."""
    if kind == WIRE_VARINT:
        return tag(number, kind) + varint(big)
    if kind == WIRE_FIXED64:
        return tag(number, kind) + (data + bytes(8))[:8]
    if kind == WIRE_LEN:
        return length_delimited(number, data)
    if kind == WIRE_FIXED32:
        return tag(number, kind) + (data + bytes(4))[:4]
    if kind == WIRE_START:
        return tag(number, kind) + data[:8] + tag(number, WIRE_END)
    return tag(number, kind) + data[:8]  # a stray group end, or wire types 6 and 7


def raw_payloads(rpc: Rpc, known: Known) -> st.SearchStrategy[tuple[str, bytes]]:
    fields = list(rpc.request.fields)
    numbers = [fd.number for fd in fields] or [1]
    string_numbers = [fd.number for fd in fields if fd.type == FieldDescriptor.TYPE_STRING]
    valid = messages(rpc.request, known).map(lambda m: m.SerializeToString())
    big = st.one_of(
        st.sampled_from([0, 1, 2**31, 2**32 + 7, 2**63, 2**64 - 1]), st.integers(0, 2**64 - 1)
    )

    def truncate(data: bytes, cut: int) -> bytes:
        return data[: cut % len(data)] if data else b"\x0a"

    def wrong_wire(fd: FieldDescriptor, kind: int, data: bytes, value: int) -> bytes:
        kind = kind if kind != wire_type(fd) else 7
        return wire_value(fd.number, kind, data, value)

    strategies: list[st.SearchStrategy[tuple[str, bytes]]] = [
        st.binary(max_size=300).map(lambda b: ("garbage", b)),
        st.tuples(valid, st.integers(0, 2**32)).map(lambda t: ("truncated", truncate(*t))),
        st.tuples(valid, st.binary(min_size=1, max_size=40)).map(
            lambda t: ("trailing garbage", t[0] + t[1])
        ),
        st.builds(
            wrong_wire,
            st.sampled_from(fields) if fields else st.nothing(),
            st.integers(0, 7),
            st.binary(max_size=24),
            big,
        ).map(lambda b: ("wrong wire type", b)),
        st.builds(
            lambda prefix, number, kind, data, value: (
                prefix + wire_value(number, kind, data, value)
            ),
            valid,
            st.one_of(
                st.sampled_from([*numbers, 2**29 - 1, 19_000, 536]), st.integers(1, 2**29 - 1)
            ),
            st.integers(0, 7),
            st.binary(max_size=24),
            big,
        ).map(lambda b: ("extra field", b)),
        st.builds(
            lambda number, data: length_delimited(number, data),
            st.sampled_from(numbers),
            st.one_of(st.sampled_from(INVALID_UTF8), st.binary(min_size=1, max_size=24)),
        ).map(lambda b: ("invalid utf-8 or bytes in a field", b)),
        st.sampled_from(
            [
                b"\xff" * 11,  # a varint longer than ten bytes
                tag(numbers[0], WIRE_VARINT) + b"\x80" * 10 + b"\x01",
                tag(numbers[0], WIRE_LEN) + varint(2**31),  # length past the end
                tag(numbers[0], WIRE_LEN) + varint(2**64 - 1) + b"x",
                tag(numbers[0], WIRE_LEN) + b"\x05ab",
                b"\x00\x01",  # field number 0
                b"\x07",  # wire type 7, field 0
                tag(2**29 - 1, WIRE_VARINT) + b"\x01",  # the highest field number
                tag(2**29, WIRE_VARINT) + b"\x01",  # one past it
                tag(1, WIRE_START) * 5000 + tag(1, WIRE_END) * 5000,  # groups nested deep
                tag(1, WIRE_START) * 50,  # unterminated groups
                tag(1, WIRE_END),
                tag(numbers[0], WIRE_FIXED64) + b"\x01\x02",
                tag(numbers[0], WIRE_FIXED32) + b"\x01",
            ]
        ).map(lambda b: ("malformed framing", b)),
    ]
    if string_numbers:
        strategies.append(
            st.builds(
                lambda prefix, number, bad: prefix + length_delimited(number, bad),
                valid,
                st.sampled_from(string_numbers),
                st.sampled_from(INVALID_UTF8),
            ).map(lambda b: ("invalid utf-8 in a string field", b))
        )
    return st.one_of(strategies)


def _run_raw(stack: Stack, rpc: Rpc) -> None:
    @hostile_settings(stack.examples(RAW_EXAMPLES))
    @given(payload=raw_payloads(rpc, stack.known))
    def raw_bytes(payload: tuple[str, bytes]) -> None:
        kind, data = payload
        note(f"{kind}: {data[:200]!r} ({len(data)} bytes)")
        exercise(stack, rpc, data)

    raw_bytes()
    # Each kind of undecodable input, once, whatever the draw: a clear INVALID_ARGUMENT.
    string_fields = [fd for fd in rpc.request.fields if fd.type == FieldDescriptor.TYPE_STRING]
    undecodable = [b"\xff" * 11, b"\x07", tag(1, WIRE_START) * 5000 + tag(1, WIRE_END) * 5000]
    undecodable += [length_delimited(fd.number, b"\xff\xfe") for fd in string_fields]
    for data in undecodable:
        answer = exercise(stack, rpc, data)
        assert answer.code is grpc.StatusCode.INVALID_ARGUMENT, (rpc, data[:20], answer)


# ---------------------------------------------------------------- the tests


def test_every_rpc_of_both_services_is_found_from_the_descriptors() -> None:
    names = {rpc.name for rpc in RPCS}
    assert len(RPCS) >= 20
    assert {"DeductPoints", "ReverseDeduction", "RedeemPoints", "RefundCoupons"} <= names
    assert len(SERVICES) == 4
    for rpc in RPCS:  # every payload here goes out as one unary call
        assert not rpc.method.client_streaming and not rpc.method.server_streaming, rpc


def _snapshots_see_a_change(stack: Stack) -> None:
    before = stack.books.take()
    rpc = next(r for r in RPCS if r.name == "OpenAccount")
    request = cp.OpenAccountRequest(account_id=f"snapshot-{stack.backend}", holder_name="S")
    assert stack.call(rpc, request.SerializeToString()).code is grpc.StatusCode.OK
    # The account, and its AccountOpened event with the account's sequence counter.
    assert changed_tables(before, stack.books.take()) == {
        "cardpoints.accounts",
        "cardpoints.outbox_events",
        "cardpoints.event_sequences",
    }
    assert changed_tables(before, before) == set()


@pytest.mark.asyncio(loop_scope="module")
async def test_the_snapshots_see_a_change_made_through_a_server(stack: Stack) -> None:
    """The check that refusals change nothing would pass vacuously if the views were stale."""
    await asyncio.to_thread(_snapshots_see_a_change, stack)


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("rpc", RPCS, ids=str)
async def test_hostile_field_values_get_a_canonical_answer_and_refusals_change_nothing(
    stack: Stack, rpc: Rpc
) -> None:
    await asyncio.to_thread(_run_fields, stack, rpc)
    invalid = grpc.StatusCode.INVALID_ARGUMENT.name
    assert any((name, code) == (rpc.name, invalid) for name, code, _ in stack.seen), (
        f"no hostile request to {rpc} reached validation"
    )
    await asyncio.to_thread(assert_serving, stack)


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("rpc", RPCS, ids=str)
async def test_raw_garbage_bytes_get_a_canonical_answer_and_refusals_change_nothing(
    stack: Stack, rpc: Rpc
) -> None:
    await asyncio.to_thread(_run_raw, stack, rpc)
    await asyncio.to_thread(assert_serving, stack)


def _oversized(stack: Stack) -> None:
    before = stack.books.take()
    over = length_delimited(1, b"a" * MAX_MESSAGE_BYTES)
    under = length_delimited(1, b"a" * (MAX_MESSAGE_BYTES - 64))
    assert len(over) > MAX_MESSAGE_BYTES >= len(under)
    # All at once: each refusal takes the transport a few hundred milliseconds.
    for rpc, answer in zip(RPCS, stack.call_all([(rpc, over) for rpc in RPCS]), strict=True):
        # The transport refuses it before any of our code runs: no ErrorInfo to be had.
        assert answer.code is grpc.StatusCode.RESOURCE_EXHAUSTED, (str(rpc), str(answer))
    assert changed_tables(before, stack.books.take()) == set()
    assert_serving(stack)
    for rpc in RPCS:  # just under the limit is our code's to answer
        answer = exercise(stack, rpc, under)
        assert answer.code is not grpc.StatusCode.RESOURCE_EXHAUSTED, (str(rpc), str(answer))
    # A header past the transport's metadata limit is refused there too.
    before = stack.books.take()
    rpc = next(r for r in RPCS if r.name == "DeductPoints")
    huge = stack.call(rpc, b"", bearer("A" * 100_000))
    assert huge.code is grpc.StatusCode.RESOURCE_EXHAUSTED, str(huge)
    assert changed_tables(before, stack.books.take()) == set()
    assert_serving(stack)


@pytest.mark.asyncio(loop_scope="module")
async def test_oversized_messages_get_resource_exhausted_and_the_servers_keep_serving(
    stack: Stack,
) -> None:
    await asyncio.to_thread(_oversized, stack)


# ---------------------------------------------------------------- hostile credentials


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


OTHER_KEY = generate_signing_key()[0]
PRINTABLE = st.characters(min_codepoint=0x20, max_codepoint=0x7E)  # what HTTP/2 lets through


def _good_claims() -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": "pointsbridge",
        "sub": "ecommerce",
        "roles": ["admin", "service"],
        "iat": now,
        "exp": now + 3600,
    }


# Each turns a good token's claims into bad ones: signed with the real key, still refused.
DEFECTS: dict[str, Callable[[dict[str, Any]], None]] = {
    "expired": lambda c: c.update(exp=c["iat"] - 1),
    "issued in the future": lambda c: c.update(iat=c["iat"] + 86_400),
    "exp not a number": lambda c: c.update(exp="tomorrow"),
    "exp infinite": lambda c: c.update(exp=float("inf")),
    "no exp": lambda c: c.pop("exp"),
    "no sub": lambda c: c.pop("sub"),
    "no iss": lambda c: c.pop("iss"),
    "wrong iss": lambda c: c.update(iss="evil"),
    "empty sub": lambda c: c.update(sub=""),
    "sub not a string": lambda c: c.update(sub=["ecommerce"]),
    "no roles": lambda c: c.pop("roles"),
    "empty roles": lambda c: c.update(roles=[]),
    "unknown role": lambda c: c.update(roles=["root"]),
    "roles not a list": lambda c: c.update(roles="admin"),
}


def _signed_with_defect(defect: str, signing_key: bytes) -> str:
    claims = _good_claims()
    DEFECTS[defect](claims)
    return jwt.encode(claims, signing_key, algorithm="ES256")


def _forged(claims: dict[str, Any], key: bytes) -> str:
    return jwt.encode(claims, key, algorithm="ES256")


def _tampered(position: int, replacement: str, superuser: str) -> str:
    """The real superuser token with one character of its signature changed."""
    head, body, signature = superuser.split(".")
    # Not the last character: some of its bits are padding, so changing it may change nothing.
    index = position % (len(signature) - 1)
    if signature[index] == replacement:
        replacement = "B" if replacement == "A" else "A"
    return ".".join((head, body, signature[:index] + replacement + signature[index + 1 :]))


def _resigned_claims(roles: list[str], superuser: str) -> str:
    """Claims swapped for others, under the real token's header and signature."""
    head, _, signature = superuser.split(".")
    claims = {**_good_claims(), "roles": roles, "sub": "mallory"}
    return ".".join((head, _b64(json.dumps(claims).encode()), signature))


JWT_HEADERS = st.one_of(
    st.fixed_dictionaries(
        {
            "alg": st.sampled_from(["ES256", "HS256", "none", "RS256", "", "ES512"]),
            "typ": st.sampled_from(["JWT", "", "at+jwt"]),
        }
    ).map(lambda h: json.dumps(h).encode()),
    st.sampled_from([b"[" * 4000, b'{"alg":' * 800, b"null", b"[]", b'"ES256"', b"\xff\xfe"]),
)
JWT_CLAIMS = st.fixed_dictionaries(
    {
        "iss": st.sampled_from(["pointsbridge", "evil", ""]),
        "sub": st.sampled_from(["ecommerce", "admin", "", "seed-customer"]),
        "roles": st.lists(st.sampled_from(["admin", "service", "customer", "root"]), max_size=3),
        "exp": st.integers(-(2**40), 2**40),
    }
).map(lambda c: json.dumps(c).encode())


def tokens(auth: Callers) -> st.SearchStrategy[str]:
    superuser, signing_key = auth.superuser, auth.signing_key.read_bytes()
    return st.one_of(
        st.text(PRINTABLE, max_size=200),
        st.builds(
            lambda c, n: c * n, st.text(PRINTABLE, min_size=1, max_size=3), st.integers(1, 7000)
        ),
        st.builds(
            lambda h, c, s: f"{_b64(h)}.{_b64(c)}.{_b64(s)}",
            JWT_HEADERS,
            JWT_CLAIMS,
            st.binary(max_size=96),
        ),
        st.builds(_forged, JWT_CLAIMS.map(json.loads), st.just(OTHER_KEY)),
        st.builds(_signed_with_defect, st.sampled_from(sorted(DEFECTS)), st.just(signing_key)),
        st.builds(_tampered, st.integers(0, 200), st.sampled_from("ABab019_-"), st.just(superuser)),
        st.builds(
            _resigned_claims,
            st.lists(st.sampled_from(["admin", "service", "customer"]), min_size=1),
            st.just(superuser),
        ),
        st.sampled_from(
            [superuser + ".", superuser[:-10], "." * 2, "a.b.c", superuser.replace(".", "")]
        ),
    )


SCHEMES = st.sampled_from(
    ["Bearer ", "bearer ", "BEARER ", "Bearer  ", "", "Basic ", "Token ", "Bearer"]
)


def headers(auth: Callers) -> st.SearchStrategy[Metadata]:
    value = st.builds(lambda scheme, token: (scheme + token)[:6000], SCHEMES, tokens(auth))
    one = value.map(lambda v: (("authorization", v),))
    return st.one_of(
        st.just(()),
        one,
        # the first header is the one that counts; a good one after it must not rescue it
        value.map(lambda v: (("authorization", v), ("authorization", f"Bearer {auth.superuser}"))),
        st.builds(
            lambda v: (("x-authorization", f"Bearer {auth.superuser}"), ("authorization", v)), value
        ),
        st.just((("x-api-key", auth.superuser), ("authorization-bin", b"\x00\xff"))),
    )


def _run_headers(stack: Stack, auth: Callers) -> None:
    @hostile_settings(stack.examples(HEADER_EXAMPLES))
    @given(rpc=st.sampled_from(RPCS), metadata=headers(auth=auth))
    def hostile_credentials(rpc: Rpc, metadata: Metadata) -> None:
        note(f"metadata: {[(k, v[:300]) for k, v in metadata]!r}")
        answer = exercise(stack, rpc, b"", metadata)
        presented = any(key == "authorization" for key, _ in metadata)
        expected = "INVALID_CREDENTIALS" if presented else "MISSING_CREDENTIALS"
        assert (answer.code, answer.reason) == (grpc.StatusCode.UNAUTHENTICATED, expected), (
            str(rpc),
            str(answer),
        )

    hostile_credentials()


@pytest.mark.asyncio(loop_scope="module")
async def test_hostile_authorization_headers_are_unauthenticated_and_change_nothing(
    stack: Stack,
    auth: Callers,
) -> None:
    def refused() -> int:
        code = grpc.StatusCode.UNAUTHENTICATED.name
        return sum(n for (_, seen, _), n in stack.seen.items() if seen == code)

    before = refused()
    await asyncio.to_thread(_run_headers, stack, auth)
    assert refused() - before >= stack.examples(HEADER_EXAMPLES)
    await asyncio.to_thread(assert_serving, stack)


# ---------------------------------------------------------------- bugs found, pinned


def _timestamp_fields() -> list[tuple[Rpc, str]]:
    return [
        (rpc, fd.name)
        for rpc in RPCS
        for fd in rpc.request.fields
        if fd.message_type is not None
        and fd.message_type.full_name == Timestamp.DESCRIPTOR.full_name
    ]


OUT_OF_RANGE_TIMESTAMPS = {
    "nanos -1": Timestamp(nanos=-1),
    "nanos 1e9": Timestamp(nanos=1_000_000_000),
    "year 10000": Timestamp(seconds=253_402_300_800),
    "year 0": Timestamp(seconds=-62_135_596_801),
}


def exercise_unchecked(stack: Stack, rpc: Rpc, payload: bytes) -> Answer:
    """Send one payload and say what came back; the caller judges it."""
    before = stack.books.latest()
    answer = stack.call(rpc, payload)
    if answer.code is grpc.StatusCode.OK:
        stack.books.forget()
    else:
        assert changed_tables(before, stack.books.take()) == set(), str(answer)
    return answer


def _out_of_range_timestamps(stack: Stack) -> None:
    found = _timestamp_fields()
    assert {rpc.name for rpc, _ in found} >= {"ListDeductions", "ExportRedemptions"}
    failures = []
    for rpc, name in found:
        for label, stamp in OUT_OF_RANGE_TIMESTAMPS.items():
            request = message_factory.GetMessageClass(rpc.request)()
            getattr(request, name).CopyFrom(stamp)
            answer = exercise_unchecked(stack, rpc, request.SerializeToString())
            if answer.code is not grpc.StatusCode.INVALID_ARGUMENT or not any(
                v.field.startswith(name) for v in (answer.error.violations if answer.error else ())
            ):
                failures.append(f"{rpc} {name}={{{label}}}: {answer}")
    assert not failures, "\n".join(failures)


@pytest.mark.asyncio(loop_scope="module")
async def test_timestamps_outside_the_protobuf_range_are_invalid_argument(stack: Stack) -> None:
    """Found by the property above: ListDeductions and ExportRedemptions answer INTERNAL.

    `from_timestamp` calls Timestamp.ToDatetime, which raises ValueError for seconds
    outside [0001-01-01, 9999-12-31] or nanos outside [0, 999999999]; nothing catches it.
    """
    await asyncio.to_thread(_out_of_range_timestamps, stack)
    await asyncio.to_thread(assert_serving, stack)


def _many_violations(stack: Stack) -> None:
    found = [
        (rpc, fd)
        for rpc in RPCS
        for fd in rpc.request.fields
        if fd.is_repeated and fd.type == FieldDescriptor.TYPE_STRING
    ]
    assert "RefundCoupons" in {rpc.name for rpc, _ in found}
    failures = []
    for rpc, fd in found:
        request = message_factory.GetMessageClass(rpc.request)()
        getattr(request, fd.name).extend([""] * 1000)  # RefundCoupons takes up to 1000 codes
        answer = exercise_unchecked(stack, rpc, request.SerializeToString())
        if answer.code is not grpc.StatusCode.INVALID_ARGUMENT or answer.error_infos != 1:
            failures.append(f"{rpc} with 1000 empty {fd.name}: {answer}")
    assert not failures, "\n".join(failures)


@pytest.mark.asyncio(loop_scope="module")
async def test_an_error_naming_many_bad_entries_still_reaches_a_default_client(
    stack: Stack,
) -> None:
    """Found by the property above: RefundCoupons with many bad codes.

    One FieldViolation per bad code makes grpc-status-details-bin grow ~27 bytes a code.
    Past ~300 codes the trailers pass gRPC's default 8 KiB soft metadata limit and past
    ~600 its 16 KiB hard limit, so the client gets a bare RESOURCE_EXHAUSTED from its own
    transport, with no ErrorInfo, for a request size the server itself accepts (1000).
    """
    await asyncio.to_thread(_many_violations, stack)
    await asyncio.to_thread(assert_serving, stack)
