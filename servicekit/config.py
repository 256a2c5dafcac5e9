"""Command-line options that fall back to environment variables, shown in --help."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any


class ConfigError(ValueError):
    """Settings that cannot work together; the server refuses to start and says why."""


class EnvParser(argparse.ArgumentParser):
    """An ArgumentParser whose options also read `<PREFIX>_<NAME>` from the environment.

    Flags win over the environment, which wins over the default.
    """

    def __init__(self, env_prefix: str, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", argparse.ArgumentDefaultsHelpFormatter)
        super().__init__(**kwargs)
        self.env_prefix = env_prefix

    def option(
        self,
        flag: str,
        *,
        default: Any,
        help: str,
        type: Callable[[str], Any] = str,
        choices: list[str] | None = None,
        shared_env: str = "",
    ) -> None:
        """`shared_env` names a variable every service reads, below the service's own."""
        env = f"{self.env_prefix}_{flag.lstrip('-').replace('-', '_').upper()}"
        raw = os.environ.get(env)
        if raw is None and shared_env:
            raw = os.environ.get(shared_env)
        value = type(raw) if raw is not None else default
        names = f"{env}, then {shared_env}" if shared_env else env
        if type is boolean:
            # A switch: `--migrate` alone turns it on, `--migrate false` spells it out.
            self.add_argument(
                flag,
                default=value,
                type=boolean,
                nargs="?",
                const=True,
                metavar="true|false",
                help=f"{help} [env: {names}]",
            )
            return
        self.add_argument(
            flag, default=value, type=type, choices=choices, help=f"{help} [env: {names}]"
        )

    def event_options(self, defaults: Any) -> None:
        """Publishing the outbox to NATS JetStream; `defaults` is the server's Settings()."""
        self.option(
            "--nats-url",
            default=defaults.nats_url,
            shared_env="POINTSBRIDGE_NATS_URL",
            help="NATS server to publish events to, e.g. nats://127.0.0.1:4222; empty: events "
            "are only recorded in the outbox, and published once a URL is given",
        )
        self.option(
            "--events-retention",
            default=defaults.events_retention,
            type=float,
            help="seconds a published event stays in the outbox before it is pruned",
        )
        self.option(
            "--events-stuck-after",
            default=defaults.events_stuck_after,
            type=float,
            help="seconds the oldest unpublished event may wait before the health service "
            "pointsbridge.events.v1.Relay reports NOT_SERVING",
        )

    def client_tls_options(
        self, peer: str, defaults: Any, *, called: str, identity: str = ""
    ) -> None:
        """--<peer>-ca, --<peer>-cert and --<peer>-key: TLS (mutual with a certificate)
        to the service named `called` in --help; `ClientTransport.to(settings, peer)`
        reads them back."""
        field = peer.replace("-", "_")
        self.option(
            f"--{peer}-ca",
            default=getattr(defaults, f"{field}_ca"),
            help=f"PEM CA to trust for {called}; turns on TLS to it",
        )
        self.option(
            f"--{peer}-cert",
            default=getattr(defaults, f"{field}_cert"),
            help=f"PEM client certificate presented to {called}{identity}",
        )
        self.option(
            f"--{peer}-key",
            default=getattr(defaults, f"{field}_key"),
            help=f"PEM key of --{peer}-cert",
        )

    def server_options(self, defaults: Any, default_port: int) -> None:
        """The options every PointsBridge server has; `defaults` is its Settings()."""
        self.option(
            "--address",
            default=defaults.address,
            help=f"host:port to listen on; empty: 127.0.0.1:{default_port} (this machine "
            f"only) without TLS, [::]:{default_port} (every interface) with --tls-cert",
        )
        self.option(
            "--database-url",
            default=defaults.database_url,
            help="SQLAlchemy URL: sqlite:///path.db (embedded) or postgresql://user@host/db",
        )
        self.option(
            "--migrate",
            default=defaults.migrate,
            type=boolean,
            help="apply pending schema migrations before serving",
        )
        self.option(
            "--workers",
            default=defaults.workers,
            type=positive_int,
            help="database connections running units of work (on SQLite, each with its "
            "worker thread)",
        )
        self.option(
            "--processes",
            default=defaults.processes,
            type=int,
            help="server processes sharing the port (SO_REUSEPORT), each with its own "
            "--workers; more than 1 needs PostgreSQL, and then /metrics (served by the "
            "parent) sums them",
        )
        self.option(
            "--group-commit",
            default=defaults.group_commit,
            type=positive_int,
            help="SQLite: at most this many concurrent write units of work share one "
            "transaction and its fsync (1 commits each alone); PostgreSQL ignores it",
        )
        self.option(
            "--grace",
            default=defaults.grace,
            type=float,
            help="seconds in-flight calls may take to finish after SIGTERM",
        )
        self.log_options(defaults)
        self.option(
            "--metrics-address",
            default=defaults.metrics_address,
            help="host:port for the Prometheus /metrics endpoint; empty turns it off",
        )
        self.option(
            "--tls-cert", default=defaults.tls_cert, help="PEM certificate to serve TLS with"
        )
        self.option("--tls-key", default=defaults.tls_key, help="PEM private key of --tls-cert")
        self.option(
            "--insecure-plaintext",
            default=defaults.insecure_plaintext,
            type=boolean,
            help="serve without TLS; for local development only",
        )
        self.option(
            "--token-public-key",
            default=defaults.token_public_key,
            help="PEM public key that verifies bearer tokens (required)",
        )

    def log_options(self, defaults: Any) -> None:
        """--log-level and --log-format, as every PointsBridge process has them."""
        self.option(
            "--log-level",
            default=defaults.log_level,
            choices=["DEBUG", "INFO", "WARNING", "ERROR"],
            help="log verbosity",
        )
        self.option(
            "--log-format",
            default=defaults.log_format,
            choices=["auto", "json", "text"],
            help="json: one JSON object per line; text: for people; auto: text on a terminal",
        )


def boolean(text: str) -> bool:
    """Parse yes/no style values from flags and the environment."""
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def read_secret(path: str) -> str:
    """The stripped contents of a secret file ("" when no path is given)."""
    if not path:
        return ""
    try:
        with open(path, encoding="utf-8") as secret:
            return secret.read().strip()
    except OSError as error:
        raise ConfigError(f"cannot read {path!r}: {error.strerror}") from None
