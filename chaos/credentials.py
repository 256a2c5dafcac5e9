"""Credentials for one harness run: a fresh token-signing key and a token per caller.

The services check bearer tokens against a public key; the harness makes the key pair
in its work directory, gives ecommerce a service token for cardpoints, signs one token
per customer for the clients (who may only act for themselves) and one operator token
(admin and service roles) for seeding and reading the books. The self-test's bogus
deduction goes out under ecommerce's own service token, as a buggy ecommerce would send it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from servicekit.auth import (
    ROLE_ADMIN,
    ROLE_CUSTOMER,
    ROLE_SERVICE,
    TokenIssuer,
    generate_signing_key,
)

TTL_SECONDS = 24 * 3600
SERVICE_SUBJECT = "ecommerce"  # the identity cardpoints lets deduct and reverse


@dataclass
class Credentials:
    public_key: Path
    service_token_file: Path
    service: str  # ecommerce's own identity at cardpoints: the only one that may deduct
    operator: str
    _issuer: TokenIssuer
    _customers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def create(cls, directory: Path) -> Credentials:
        directory.mkdir(parents=True, exist_ok=True)
        private, public = generate_signing_key()
        issuer = TokenIssuer(private)
        public_key = directory / "token-public-key.pem"
        public_key.write_bytes(public)
        service = issuer.issue(SERVICE_SUBJECT, [ROLE_SERVICE], TTL_SECONDS)
        service_token_file = directory / "ecommerce-service.token"
        service_token_file.write_text(service)
        service_token_file.chmod(0o600)
        operator = issuer.issue("chaos-operator", [ROLE_ADMIN, ROLE_SERVICE], TTL_SECONDS)
        return cls(public_key, service_token_file, service, operator, issuer)

    def customer(self, customer_id: str) -> str:
        if customer_id not in self._customers:
            self._customers[customer_id] = self._issuer.issue(
                customer_id, [ROLE_CUSTOMER], TTL_SECONDS
            )
        return self._customers[customer_id]

    @property
    def server_flags(self) -> list[str]:
        """Plaintext is fine here: every byte stays on 127.0.0.1."""
        return ["--insecure-plaintext", "true", "--token-public-key", str(self.public_key)]

    @property
    def ecommerce_flags(self) -> list[str]:
        return [*self.server_flags, "--cardpoints-token-file", str(self.service_token_file)]


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


class BearerToken(grpc.aio.UnaryUnaryClientInterceptor):
    """Adds `authorization: Bearer <token>` to every call of a channel that has none."""

    def __init__(self, token: str) -> None:
        self._metadata = bearer(token)

    async def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.aio.ClientCallDetails, Any], Awaitable[Any]],
        client_call_details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        metadata = list(client_call_details.metadata or ())
        if not any(key == "authorization" for key, _ in metadata):
            metadata.extend(self._metadata)
        details = grpc.aio.ClientCallDetails(
            client_call_details.method,
            client_call_details.timeout,
            grpc.aio.Metadata(*metadata),
            client_call_details.credentials,
            client_call_details.wait_for_ready,
        )
        return await continuation(details, request)


def channel(address: str, token: str, options: Any = ()) -> grpc.aio.Channel:
    """A plaintext channel to 127.0.0.1 whose calls carry `token` unless they bring their own."""
    return grpc.aio.insecure_channel(address, options=options, interceptors=[BearerToken(token)])
