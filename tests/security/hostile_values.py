"""Hypothesis strategies for well-typed but hostile field values and whole requests."""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from typing import Any

from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import strategies as st

from servicekit.paging import encode_token
from tests.security.hostile import (
    INT32,
    INT64,
    INT_RANGES,
    INVALID_UTF8,
    TIMESTAMP_NANOS,
    TIMESTAMP_SECONDS,
    Known,
)

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
