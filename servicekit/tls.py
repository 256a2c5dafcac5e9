"""Transport security from file paths: server and channel credentials for (mutual) TLS."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from servicekit.config import ConfigError


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise ConfigError(f"cannot read the {what} {path!r}: {error.strerror}") from None


@dataclass(frozen=True)
class ServerTransport:
    """How a server listens: TLS with its certificate, optionally demanding client
    certificates signed by `client_ca`; or plaintext, only when asked for by name."""

    cert: str = ""
    key: str = ""
    client_ca: str = ""
    insecure_plaintext: bool = False

    def credentials(self) -> grpc.ServerCredentials | None:
        """Server credentials, or None for plaintext (which must have been asked for)."""
        if not self.cert and not self.key:
            if self.client_ca:
                raise ConfigError("--tls-client-ca needs --tls-cert and --tls-key")
            if not self.insecure_plaintext:
                raise ConfigError(
                    "refusing to serve plaintext: set --tls-cert and --tls-key, "
                    "or pass --insecure-plaintext for local development"
                )
            return None
        if not (self.cert and self.key):
            raise ConfigError("--tls-cert and --tls-key go together")
        pair = (_read(self.key, "TLS key"), _read(self.cert, "TLS certificate"))
        if self.client_ca:
            return grpc.ssl_server_credentials(
                [pair],
                root_certificates=_read(self.client_ca, "client CA"),
                require_client_auth=True,
            )
        return grpc.ssl_server_credentials([pair])


# A restarted server should be reachable again within a second or two, not after
# gRPC's default reconnect backoff of up to two minutes.
RECONNECT_OPTIONS: Sequence[tuple[str, Any]] = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
)


@dataclass(frozen=True)
class ClientTransport:
    """How a client connects: TLS trusting `ca`, presenting `cert` when mutual; or plaintext."""

    ca: str = ""
    cert: str = ""
    key: str = ""

    @classmethod
    def to(cls, settings: Any, peer: str) -> ClientTransport:
        """What `EnvParser.client_tls_options(peer, ...)` configured in `settings`."""
        field = peer.replace("-", "_")
        return cls(
            getattr(settings, f"{field}_ca"),
            getattr(settings, f"{field}_cert"),
            getattr(settings, f"{field}_key"),
        )

    @property
    def secure(self) -> bool:
        return bool(self.ca)

    def credentials(self) -> grpc.ChannelCredentials:
        if bool(self.cert) != bool(self.key):
            raise ConfigError("a client certificate and its key go together")
        if (self.cert or self.key) and not self.ca:
            raise ConfigError("a client certificate needs the CA to trust")
        return grpc.ssl_channel_credentials(
            root_certificates=_read(self.ca, "CA certificate"),
            private_key=_read(self.key, "client key") if self.key else None,
            certificate_chain=_read(self.cert, "client certificate") if self.cert else None,
        )

    def channel(
        self,
        target: str,
        *,
        options: Sequence[tuple[str, Any]] = (),
        server_name: str | None = None,
        interceptors: Sequence[grpc.aio.ClientInterceptor] = (),
        fast_reconnect: bool = True,
    ) -> grpc.aio.Channel:
        """A channel to `target` (TLS when secure) that connects lazily and reconnects fast.

        With TLS, `server_name` is the name every server's certificate is checked
        against, for a target that names several replicas by address. Without
        `fast_reconnect`, gRPC's own backoff and connect timeout hold (the short
        minimum backoff is also the least time a connection attempt is given).
        """
        options = (*(RECONNECT_OPTIONS if fast_reconnect else ()), *options)
        if self.secure:
            if server_name is not None:
                options = (*options, ("grpc.ssl_target_name_override", server_name))
            return grpc.aio.secure_channel(
                target, self.credentials(), options=options, interceptors=interceptors
            )
        return grpc.aio.insecure_channel(target, options=options, interceptors=interceptors)
