"""The one server bootstrap both services use: settings, migrate, serve, drain on SIGTERM.

A service describes itself with a `Server` subclass: its own settings (a subclass of
`ServerSettings`), its own options, and its own wiring (its gRPC services, its
background loops, what to release). Everything else - the shared options and their
environment variables, TLS, authentication, the database and its migrations, health,
reflection, the event relay, the drain - happens here, the same way for both.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Generic, TypeVar

from servicekit.auth import Authenticator, RateLimiter, Rule, TokenVerifier
from servicekit.clock import Clock, utc_now
from servicekit.config import ConfigError, EnvParser
from servicekit.db import GROUP_COMMIT, Database, create_db_engine, upgrade_schema
from servicekit.observability import configure_logging, serve_metrics
from servicekit.outbox import OutboxTables
from servicekit.ports import listen_address
from servicekit.processes import Member, check_processes, supervise
from servicekit.relay import RelaySettings, RunningRelay, start_relay
from servicekit.server import Registration, RunningServer, start_server, wait_for_stop_signal
from servicekit.tls import ServerTransport


@dataclass(frozen=True)
class ServerSettings:
    """What every PointsBridge server is configured with; each service adds its own."""

    # Empty: the default port on loopback without TLS, on every interface with it.
    address: str = ""
    database_url: str = ""
    migrate: bool = True
    workers: int = 8
    # Server processes on one port (SO_REUSEPORT); more than one needs PostgreSQL.
    processes: int = 1
    group_commit: int = GROUP_COMMIT
    grace: float = 5.0
    log_level: str = "INFO"
    log_format: str = "auto"
    metrics_address: str = ""
    # Transport: TLS with these files, or plaintext only when asked for by name.
    tls_cert: str = ""
    tls_key: str = ""
    insecure_plaintext: bool = False
    # The PEM public key that bearer tokens must be signed for.
    token_public_key: str = ""
    # Events: published to this NATS server when set (the outbox records them regardless).
    nats_url: str = ""
    events_retention: float = 86400.0
    events_stuck_after: float = 60.0


S = TypeVar("S", bound=ServerSettings)

# A background loop of a service: runs until the event is set (the server is stopping).
Loop = Callable[[asyncio.Event], Coroutine[Any, Any, None]]


@dataclass(frozen=True)
class Wiring:
    """What a service adds to the server once its database is open."""

    registrations: Sequence[Registration]
    loops: Sequence[Loop] = ()
    # Released after the drain, before the database.
    closers: Sequence[Callable[[], Awaitable[None]]] = ()


@dataclass
class App:
    """A running server and what it owns."""

    running: RunningServer
    db: Database
    relay: RunningRelay | None = None
    loops: list[asyncio.Task[None]] = field(default_factory=list)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    closers: Sequence[Callable[[], Awaitable[None]]] = ()

    @property
    def port(self) -> int:
        return self.running.port

    async def stop(self, grace: float = 5.0) -> None:
        """End the background loops, finish in-flight calls (up to `grace` seconds), then
        stop the relay and release what the service holds and the database."""
        try:
            self.stopping.set()
            for task in self.loops:
                await task
            await self.running.drain(grace)
            if self.relay is not None:
                await self.relay.stop()
        finally:
            for close in self.closers:
                await close()
            await self.db.aclose()


class Server(Generic[S]):
    """One PointsBridge gRPC server; a service subclasses it with its own hooks."""

    # Names the command (<name>-server), its environment variables (POINTSBRIDGE_<NAME>_*),
    # its logger, its events' source and its schema's version table.
    name: str

    def __init__(
        self,
        settings: type[S],
        description: str,
        default_port: int,
        migrations: str,
        outbox: OutboxTables,
        rules: Mapping[str, Rule],
    ) -> None:
        """`migrations` is the Alembic script location."""
        self.settings = settings
        self.description = description
        self.default_port = default_port
        self.migrations = migrations
        self.version_table = f"{self.name}_alembic_version"
        self.outbox = outbox
        self.rules = rules
        self.log = logging.getLogger(self.name)

    # -- what a service may add ------------------------------------------------------

    def add_options(self, parser: EnvParser, defaults: S) -> None:
        """The service's own options, after the shared ones in --help."""

    def transport(self, settings: S) -> ServerTransport:
        return ServerTransport(
            settings.tls_cert, settings.tls_key, insecure_plaintext=settings.insecure_plaintext
        )

    def service_identities(self, settings: S) -> frozenset[str]:
        """Client-certificate names (or service-token subjects) this server works for."""
        return frozenset()

    def rate_limiter(self, settings: S) -> RateLimiter | None:
        return None

    def prepare(self, settings: S, clock: Clock) -> Callable[[Database], Wiring]:
        """Check the service's own settings (a ConfigError here comes before anything is
        opened) and return how to wire the service to its database."""
        raise NotImplementedError

    def warnings(self, settings: S) -> Sequence[str]:
        """Said once the server is up: a refusal to start comes alone."""
        return ()

    def serving(self, settings: S) -> str:
        """What follows "serving on port N" in the log."""
        return ""

    # -- the bootstrap ---------------------------------------------------------------

    def parse_settings(self, argv: Sequence[str] | None = None) -> tuple[S, bool]:
        """The settings, and whether only to migrate: flags win over <PREFIX>_* variables."""
        defaults = self.settings()
        parser = EnvParser(
            f"POINTSBRIDGE_{self.name.upper()}",
            prog=f"{self.name}-server",
            description=self.description,
        )
        parser.server_options(defaults, self.default_port)
        parser.event_options(defaults)
        self.add_options(parser, defaults)
        parser.add_argument(
            "--migrate-only",
            action="store_true",
            help="apply schema migrations to --database-url, then exit",
        )
        args = parser.parse_args(argv)
        settings = self.settings(**{f.name: getattr(args, f.name) for f in fields(self.settings)})
        return settings, bool(args.migrate_only)

    def migrate(self, settings: S) -> None:
        engine = create_db_engine(settings.database_url, durable=True)
        try:
            upgrade_schema(engine, self.migrations, self.version_table)
        finally:
            engine.dispose()

    async def start(self, settings: S, *, clock: Clock = utc_now, reuse_port: bool = False) -> App:
        """Open the database (migrating it if asked), then serve the service's gRPC services
        (`reuse_port`: on a port shared with the server's other processes)."""
        credentials = self.transport(settings).credentials()
        auth = Authenticator(
            TokenVerifier.from_file(settings.token_public_key),
            self.rules,
            service_identities=self.service_identities(settings),
            rate_limiter=self.rate_limiter(settings),
        )
        wire = self.prepare(settings, clock)
        if settings.migrate:
            await asyncio.to_thread(self.migrate, settings)
        engine = create_db_engine(
            settings.database_url, durable=True, pool_size=settings.workers, on_loop=True
        )
        db = Database(engine, workers=settings.workers, group_commit=settings.group_commit)
        wiring = Wiring(())
        try:
            wiring = wire(db)
            running = await start_server(
                listen_address(settings.address, self.default_port, tls=bool(settings.tls_cert)),
                wiring.registrations,
                credentials=credentials,
                auth=auth,
                reuse_port=reuse_port,
            )
        except BaseException:
            for close in wiring.closers:
                await close()
            await db.aclose()
            raise
        app = App(running, db, closers=wiring.closers)
        app.relay = start_relay(
            self.name,
            db,
            self.outbox,
            RelaySettings(
                settings.nats_url, settings.events_retention, settings.events_stuck_after
            ),
            running.health,
        )
        app.loops = [asyncio.create_task(loop(app.stopping)) for loop in wiring.loops]
        return app

    def say_warnings(self, settings: S) -> None:
        if settings.insecure_plaintext and not settings.tls_cert:
            self.log.warning(
                "INSECURE: serving plaintext gRPC (--insecure-plaintext); "
                "for local development only"
            )
        for warning in self.warnings(settings):
            self.log.warning("%s", warning)

    async def serve(self, settings: S, *, member: Member | None = None) -> None:
        """Serve until SIGTERM or SIGINT; as one `member` of several processes
        (servicekit.processes), on a shared port, until that one is told to stop."""
        if settings.metrics_address:
            self.log.info("metrics on port %d", serve_metrics(settings.metrics_address))
        app = await self.start(settings, reuse_port=member is not None)
        try:
            if member is None:
                self.say_warnings(settings)
                self.log.info(
                    "%s serving on port %d%s", self.name, app.port, self.serving(settings)
                )
                await wait_for_stop_signal()
            else:
                await member.serving(app.port)
            self.log.info("draining for up to %.1f s", settings.grace)
        finally:
            await app.stop(settings.grace)
        self.log.info("stopped")

    def main(self, argv: Sequence[str] | None = None) -> int:
        settings, migrate_only = self.parse_settings(argv)
        configure_logging(self.name, settings.log_level, settings.log_format)
        if migrate_only:
            self.migrate(settings)
            self.log.info("schema is up to date")
            return 0
        try:
            check_processes(settings)
            if settings.processes > 1:
                return supervise(self, settings)
            asyncio.run(self.serve(settings))
        except ConfigError as error:
            self.log.error("%s", error)
            return 2
        return 0
