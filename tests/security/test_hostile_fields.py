"""Hostile input, well-typed: every RPC sent hostile field values (see hostile.py)."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from google.protobuf.message import Message
from hypothesis import given, note

from pointsbridge.cardpoints.v1 import cardpoints_pb2 as cp
from tests.security.hostile import (
    FIELD_EXAMPLES,
    RPCS,
    SERVICES,
    Rpc,
    Stack,
    assert_serving,
    changed_tables,
    exercise,
    hostile_settings,
)
from tests.security.hostile_values import requests


def _run_fields(stack: Stack, rpc: Rpc) -> None:
    @hostile_settings(stack.examples(FIELD_EXAMPLES))
    @given(request=requests(rpc.request, stack.known))
    def hostile_fields(request: Message) -> None:
        note(f"request: {str(request)[:2000]}")
        exercise(stack, rpc, request.SerializeToString())

    hostile_fields()


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
