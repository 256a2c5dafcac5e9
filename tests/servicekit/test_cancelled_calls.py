"""Calls whose caller gave up are logged and counted as the caller saw them, not UNKNOWN."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import grpc
import pytest

from servicekit.observability import serve_metrics
from servicekit.server import Registration, RunningServer, start_server
from tests.metrics_scrape import scrape, value

SERVICE = "pointsbridge.test.v1.SlowService"
METHOD = "Sleep"


@pytest.fixture(scope="module")
def metrics_port() -> int:
    return serve_metrics("127.0.0.1:0")


@pytest.fixture
async def slow_server() -> AsyncIterator[tuple[RunningServer, asyncio.Event]]:
    """A real server, built like the services' own, with one handler that takes 5 s."""
    started = asyncio.Event()

    async def sleep(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        started.set()
        await asyncio.sleep(5)
        return request

    handler = grpc.method_handlers_generic_handler(
        SERVICE, {METHOD: grpc.unary_unary_rpc_method_handler(sleep)}
    )
    running = await start_server(
        "127.0.0.1:0",
        [Registration(SERVICE, lambda server: server.add_generic_rpc_handlers((handler,)))],
    )
    yield running, started
    await running.server.stop(0)


def _counted(port: int, code: str) -> float:
    return value(
        scrape(port), "pointsbridge_rpc_requests_total", service=SERVICE, method=METHOD, code=code
    )


async def _until_counted(port: int, code: str, before: float) -> float:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        now = await asyncio.to_thread(_counted, port, code)
        if now > before:
            return now - before
        await asyncio.sleep(0.05)
    return 0.0


@pytest.mark.parametrize("ending", ["DEADLINE_EXCEEDED", "CANCELLED"])
async def test_a_call_the_caller_gave_up_on_is_logged_and_counted_by_what_it_saw(
    slow_server: tuple[RunningServer, asyncio.Event],
    metrics_port: int,
    ending: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    running, started = slow_server
    before = {
        code: await asyncio.to_thread(_counted, metrics_port, code) for code in ("UNKNOWN", ending)
    }
    caplog.set_level(logging.INFO, logger="pointsbridge.rpc")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        sleep: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
            f"/{SERVICE}/{METHOD}"
        )
        call = sleep(b"x", timeout=0.3)
        if ending == "CANCELLED":
            await asyncio.wait_for(started.wait(), 5)
            call.cancel()
        with pytest.raises((grpc.aio.AioRpcError, asyncio.CancelledError)) as seen:
            await call
        if ending == "DEADLINE_EXCEEDED":
            assert isinstance(seen.value, grpc.aio.AioRpcError)
            assert seen.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        assert await _until_counted(metrics_port, ending, before[ending]) == 1
    assert await asyncio.to_thread(_counted, metrics_port, "UNKNOWN") == before["UNKNOWN"]
    lines = [r for r in caplog.records if r.name == "pointsbridge.rpc"]
    assert [r.getMessage().split()[:2] for r in lines] == [[METHOD, ending]]
    assert [getattr(r, "code", None) for r in lines] == [ending]
