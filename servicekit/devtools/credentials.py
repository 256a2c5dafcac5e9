"""Token credentials for a stack on one machine: a signing key pair in a folder, the
service token ecommerce presents to cardpoints, and bearer tokens for any caller."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, Self

import grpc

from servicekit.auth import ROLE_SERVICE, TokenIssuer, generate_signing_key
from servicekit.tls import ClientTransport

SERVICE_SUBJECT = "ecommerce"  # the identity cardpoints lets deduct and reverse
DAY = 86_400


def write_file(path: Path, data: bytes, private: bool = False) -> None:
    """Write `data`; a private file is created 0600, never readable by others first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def write_signing_key(folder: Path) -> None:
    """A new token key pair: token-signing-key.pem (0600) and token-public-key.pem."""
    private, public = generate_signing_key()
    write_file(folder / "token-signing-key.pem", private, private=True)
    write_file(folder / "token-public-key.pem", public)


class Credentials:
    """The token key pair in `folder`, and the tokens it signs."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @classmethod
    def ensure(cls, folder: Path, *, service_ttl: int = DAY) -> Self:
        """The key pair in `folder`, made if there is none yet and kept otherwise, and a
        fresh service token (short-lived tokens are the habit to keep)."""
        credentials = cls(folder)
        if not credentials.signing_key.exists():
            write_signing_key(folder)
        token = credentials.issue(SERVICE_SUBJECT, ROLE_SERVICE, ttl=service_ttl)
        write_file(credentials.service_token_file, token.encode(), private=True)
        return credentials

    @property
    def signing_key(self) -> Path:
        return self.folder / "token-signing-key.pem"

    @property
    def public_key(self) -> Path:
        return self.folder / "token-public-key.pem"

    @property
    def service_token_file(self) -> Path:
        return self.folder / "ecommerce-service.token"

    @property
    def service_token(self) -> str:
        """ecommerce's own identity at cardpoints: the only one that may deduct."""
        return self.service_token_file.read_text()

    @cached_property
    def issuer(self) -> TokenIssuer:
        return TokenIssuer(self.signing_key.read_bytes())

    def issue(self, subject: str, *roles: str, ttl: int = 3600, now: float | None = None) -> str:
        return self.issuer.issue(subject, list(roles), ttl, now=now)

    def bearer(self, subject: str, *roles: str, ttl: int = 3600) -> tuple[tuple[str, str], ...]:
        return bearer(self.issue(subject, *roles, ttl=ttl))

    @property
    def server_flags(self) -> list[str]:
        """A server's flags: plaintext, as every byte stays on 127.0.0.1, and the key
        that checks tokens."""
        return ["--insecure-plaintext", "true", "--token-public-key", str(self.public_key)]

    @property
    def ecommerce_flags(self) -> list[str]:
        return [*self.server_flags, "--cardpoints-token-file", str(self.service_token_file)]

    @property
    def server_settings(self) -> dict[str, Any]:
        """The same as settings fields, for a server started in this process."""
        return {"insecure_plaintext": True, "token_public_key": str(self.public_key)}

    @property
    def ecommerce_settings(self) -> dict[str, Any]:
        return {**self.server_settings, "cardpoints_token_file": str(self.service_token_file)}


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


def channel(
    address: str,
    token: str | None = None,
    *,
    options: Sequence[tuple[str, Any]] = (),
    transport: ClientTransport = ClientTransport(),  # noqa: B008  (frozen: plaintext)
    fast_reconnect: bool = True,
) -> grpc.aio.Channel:
    """A channel (plaintext unless `transport` says TLS) whose calls carry `token`, if
    given, unless they bring their own; it reconnects fast unless told not to."""
    interceptors = [BearerToken(token)] if token is not None else []
    return transport.channel(
        address, options=options, interceptors=interceptors, fast_reconnect=fast_reconnect
    )
