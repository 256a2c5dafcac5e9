"""Test credentials: one signing key per test run, and tokens for every kind of caller."""

from __future__ import annotations

import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc

from servicekit.auth import TokenIssuer, generate_signing_key

KEY_DIR = Path(tempfile.mkdtemp(prefix="pointsbridge-test-keys-"))
_PRIVATE, _PUBLIC = generate_signing_key()
SIGNING_KEY = KEY_DIR / "token-signing-key.pem"
PUBLIC_KEY = KEY_DIR / "token-public-key.pem"
SIGNING_KEY.write_bytes(_PRIVATE)
PUBLIC_KEY.write_bytes(_PUBLIC)
ISSUER = TokenIssuer(_PRIVATE)


def token(subject: str, *roles: str, ttl: int = 3600) -> str:
    return ISSUER.issue(subject, list(roles), ttl)


# Every role at once, as the e-commerce service identity: for tests about something
# other than access control. The access-control tests use narrower tokens.
SUPERUSER = token("ecommerce", "admin", "service")
ADMIN = token("operator-1", "admin")
SERVICE = token("ecommerce", "service")
SERVICE_TOKEN_FILE = KEY_DIR / "ecommerce-service.token"
SERVICE_TOKEN_FILE.write_text(token("ecommerce", "service", ttl=86_400))

# What every test server needs: plaintext on loopback, and the key that checks tokens.
SERVER_SECURITY: dict[str, Any] = {
    "insecure_plaintext": True,
    "token_public_key": str(PUBLIC_KEY),
}
ECOMMERCE_SECURITY: dict[str, Any] = {
    **SERVER_SECURITY,
    "cardpoints_token_file": str(SERVICE_TOKEN_FILE),
}
SERVER_FLAGS = ["--insecure-plaintext", "true", "--token-public-key", str(PUBLIC_KEY)]
ECOMMERCE_FLAGS = [*SERVER_FLAGS, "--cardpoints-token-file", str(SERVICE_TOKEN_FILE)]


def bearer(value: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {value}"),)


class BearerToken(grpc.aio.UnaryUnaryClientInterceptor):
    """Adds `authorization: Bearer <token>` to every call of a channel."""

    def __init__(self, value: str) -> None:
        self._metadata = bearer(value)

    async def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.aio.ClientCallDetails, Any], Awaitable[Any]],
        client_call_details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        metadata = [*(client_call_details.metadata or ()), *self._metadata]
        details = grpc.aio.ClientCallDetails(
            client_call_details.method,
            client_call_details.timeout,
            grpc.aio.Metadata(*metadata),
            client_call_details.credentials,
            client_call_details.wait_for_ready,
        )
        return await continuation(details, request)


def channel(address: str, value: str = SUPERUSER) -> grpc.aio.Channel:
    """A plaintext channel whose every call carries the token."""
    return grpc.aio.insecure_channel(address, interceptors=[BearerToken(value)])
