"""Bugs found by the hostile-input tests, pinned with their minimal inputs."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.timestamp_pb2 import Timestamp

from tests.security.hostile import RPCS, Answer, Rpc, Stack, assert_serving, changed_tables


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
