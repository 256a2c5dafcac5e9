"""Test credentials: the callers' tokens over one signing key per test run.

Nothing is made at import: the session fixture `auth` (tests/conftest.py) makes the key
pair in a temporary folder and hands every test the same `Callers`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import grpc

from servicekit.auth import ROLE_ADMIN, ROLE_SERVICE
from servicekit.devtools.credentials import DAY, Credentials, channel


@dataclass(frozen=True)
class Callers:
    """Tokens for every kind of caller, and what a test server needs to check them."""

    credentials: Credentials

    @classmethod
    def create(cls, folder: Path) -> Callers:
        return cls(Credentials.ensure(folder, service_ttl=DAY))

    def token(self, subject: str, *roles: str, ttl: int = 3600, now: float | None = None) -> str:
        return self.credentials.issue(subject, *roles, ttl=ttl, now=now)

    @cached_property
    def superuser(self) -> str:
        """Every role at once, as the e-commerce service identity: for tests about something
        other than access control. The access-control tests use narrower tokens."""
        return self.token("ecommerce", ROLE_ADMIN, ROLE_SERVICE)

    @cached_property
    def admin(self) -> str:
        return self.token("operator-1", ROLE_ADMIN)

    @cached_property
    def service(self) -> str:
        return self.token("ecommerce", ROLE_SERVICE)

    @property
    def public_key(self) -> Path:
        return self.credentials.public_key

    @property
    def signing_key(self) -> Path:
        return self.credentials.signing_key

    @property
    def server_security(self) -> dict[str, Any]:
        """What every test server needs: plaintext on loopback, and the key that checks tokens."""
        return self.credentials.server_settings

    @property
    def ecommerce_security(self) -> dict[str, Any]:
        return self.credentials.ecommerce_settings

    @property
    def server_flags(self) -> list[str]:
        return self.credentials.server_flags

    @property
    def ecommerce_flags(self) -> list[str]:
        return self.credentials.ecommerce_flags

    def channel(self, address: str, token: str | None = None) -> grpc.aio.Channel:
        """A plaintext channel whose every call carries the token (the superuser's unless
        given) unless the call brings its own. gRPC's own connect timeout: a loaded
        machine may take longer than the fast-reconnect minimum to connect."""
        token = token if token is not None else self.superuser
        return channel(address, token, fast_reconnect=False)
