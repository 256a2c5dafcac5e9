"""Hostile input on the wire: raw garbage bytes, and messages over the size limit."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from google.protobuf.descriptor import FieldDescriptor
from hypothesis import given, note
from hypothesis import strategies as st

from servicekit.devtools.credentials import bearer
from servicekit.server import MAX_MESSAGE_BYTES
from tests.security.hostile import (
    FIXED32_TYPES,
    FIXED64_TYPES,
    INVALID_UTF8,
    LEN_TYPES,
    RAW_EXAMPLES,
    RPCS,
    WIRE_END,
    WIRE_FIXED32,
    WIRE_FIXED64,
    WIRE_LEN,
    WIRE_START,
    WIRE_VARINT,
    Known,
    Rpc,
    Stack,
    assert_serving,
    changed_tables,
    exercise,
    hostile_settings,
)
from tests.security.hostile_values import messages


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
