"""Every unary RPC's duties come from one wrapper per method, built when it is registered."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

import servicekit.observability
import servicekit.server
from servicekit.auth import (
    ROLE_ADMIN,
    ROLE_CUSTOMER,
    Authenticator,
    Rule,
    TokenIssuer,
    TokenVerifier,
    caller_has,
    generate_signing_key,
)
from servicekit.server import Registration, RunningServer, start_server

REGISTERED = "pointsbridge.test.v1.RegisteredService"
GENERIC = "pointsbridge.test.v1.GenericService"
RULES = {f"/{REGISTERED}/Open": Rule(frozenset({ROLE_CUSTOMER}))}  # Closed: no rule at all

Context = grpc.aio.ServicerContext[bytes, bytes]


async def _answer(request: bytes, context: Context) -> bytes:
    return b"customer" if caller_has(ROLE_CUSTOMER) else b"other"


def _register(server: grpc.aio.Server) -> None:
    """Both ways a servicer adds itself, as the generated code does."""
    handlers: dict[str, grpc.RpcMethodHandler[bytes, bytes]] = {
        name: grpc.unary_unary_rpc_method_handler(_answer) for name in ("Open", "Closed")
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(REGISTERED, handlers),))
    server.add_registered_method_handlers(REGISTERED, handlers)
    generic: dict[str, grpc.RpcMethodHandler[bytes, bytes]] = {
        "Echo": grpc.unary_unary_rpc_method_handler(_answer)
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(GENERIC, generic),))


@pytest.fixture
def issuer() -> tuple[TokenIssuer, bytes]:
    private, public = generate_signing_key()
    return TokenIssuer(private), public


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The methods `with_duties` wrapped, in order."""
    seen: list[str] = []
    real = servicekit.observability.with_duties

    def counting(full_method: str, *args: Any) -> grpc.RpcMethodHandler[Any, Any]:
        seen.append(full_method)
        return real(full_method, *args)

    monkeypatch.setattr(servicekit.observability, "with_duties", counting)
    monkeypatch.setattr(servicekit.server, "with_duties", counting)
    return seen


@pytest.fixture
async def server(
    issuer: tuple[TokenIssuer, bytes], tmp_path: Path, builds: list[str]
) -> AsyncIterator[RunningServer]:
    key = tmp_path / "public.pem"
    key.write_bytes(issuer[1])
    auth = Authenticator(TokenVerifier.from_file(str(key)), RULES)
    running = await start_server("127.0.0.1:0", [Registration(REGISTERED, _register)], auth=auth)
    yield running
    await running.server.stop(0)


def _caller(channel: grpc.aio.Channel, service: str, method: str) -> Callable[..., Any]:
    return channel.unary_unary(f"/{service}/{method}")


def _bearer(issuer: tuple[TokenIssuer, bytes], *roles: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {issuer[0].issue('alice', list(roles), 600)}"),)


async def test_each_method_is_wrapped_once_not_per_call(
    server: RunningServer, issuer: tuple[TokenIssuer, bytes], builds: list[str]
) -> None:
    registered = [m for m in builds if REGISTERED in m]
    assert sorted(registered) == [f"/{REGISTERED}/Closed", f"/{REGISTERED}/Open"]
    customer, admin = _bearer(issuer, ROLE_CUSTOMER), _bearer(issuer, ROLE_ADMIN)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        for _ in range(3):
            assert await _caller(channel, REGISTERED, "Open")(b"", metadata=customer) == b"customer"
            assert await _caller(channel, GENERIC, "Echo")(b"", metadata=admin) == b"other"
    # The registered methods were not wrapped again; a generic one once, on its first call.
    assert [m for m in builds if REGISTERED in m] == registered
    assert [m for m in builds if GENERIC in m] == [f"/{GENERIC}/Echo"]


async def test_a_method_without_a_rule_is_open_to_operators_only(
    server: RunningServer, issuer: tuple[TokenIssuer, bytes]
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        closed = _caller(channel, REGISTERED, "Closed")
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await closed(b"", metadata=_bearer(issuer, ROLE_CUSTOMER))
        assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.aio.AioRpcError) as anonymous:
            await closed(b"")
        assert anonymous.value.code() is grpc.StatusCode.UNAUTHENTICATED
        assert await closed(b"", metadata=_bearer(issuer, ROLE_ADMIN)) == b"other"


async def test_health_needs_no_credentials_and_answers_with_a_request_id(
    server: RunningServer,
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        call = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), metadata=(("x-request-id", "probe-1"),)
        )
        assert (await call).status == health_pb2.HealthCheckResponse.SERVING
        assert ("x-request-id", "probe-1") in list(await call.initial_metadata())


async def test_an_unknown_method_is_unimplemented_and_not_logged(
    server: RunningServer, issuer: tuple[TokenIssuer, bytes], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pointsbridge.rpc")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        for service in (REGISTERED, GENERIC, "pointsbridge.test.v1.Nobody"):
            with pytest.raises(grpc.aio.AioRpcError) as unknown:
                await _caller(channel, service, "Nope")(b"", metadata=_bearer(issuer, ROLE_ADMIN))
            assert unknown.value.code() is grpc.StatusCode.UNIMPLEMENTED
    assert [r for r in caplog.records if r.name == "pointsbridge.rpc"] == []
