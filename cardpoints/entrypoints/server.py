"""The card-points server process: settings, bootstrap, and a graceful drain on SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from cardpoints.adapters import events
from cardpoints.adapters.orm import OUTBOX
from cardpoints.adapters.repository import CardpointsUnitOfWork
from cardpoints.entrypoints.access import RULES
from cardpoints.entrypoints.servicer import CardPointsAdminServicer, CardPointsServicer
from pointsbridge.cardpoints.v1 import cardpoints_pb2 as pb
from pointsbridge.cardpoints.v1 import cardpoints_pb2_grpc as pb_grpc
from servicekit.auth import AuthInterceptor, TokenVerifier
from servicekit.clock import Clock, utc_now
from servicekit.config import ConfigError, EnvParser
from servicekit.db import GROUP_COMMIT, Database, create_db_engine, upgrade_schema
from servicekit.observability import configure_logging, serve_metrics
from servicekit.ports import listen_address
from servicekit.relay import RelaySettings, RunningRelay, start_relay
from servicekit.server import Registration, RunningServer, start_server, wait_for_stop_signal
from servicekit.tls import ServerTransport

log = logging.getLogger("cardpoints")

MIGRATIONS = str(Path(__file__).resolve().parent.parent / "adapters" / "migrations")
DEFAULT_PORT = 50051
VERSION_TABLE = "cardpoints_alembic_version"


@dataclass(frozen=True)
class Settings:
    # Empty: DEFAULT_PORT on loopback without TLS, on every interface with it.
    address: str = ""
    database_url: str = "sqlite:///var/cardpoints.db"
    migrate: bool = True
    workers: int = 8
    group_commit: int = GROUP_COMMIT
    grace: float = 10.0
    log_level: str = "INFO"
    log_format: str = "auto"
    metrics_address: str = ""
    # Transport: TLS with these files, or plaintext only when asked for by name.
    tls_cert: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""
    insecure_plaintext: bool = False
    # The PEM public key that bearer tokens must be signed for.
    token_public_key: str = ""
    # Certificate common names, or token subjects with the service role, that may move points.
    service_identities: str = "ecommerce"
    # Events: published to this NATS server when set (the outbox records them regardless).
    nats_url: str = ""
    events_retention: float = 86400.0
    events_stuck_after: float = 60.0


@dataclass
class App:
    """A running card-points server and what it owns."""

    running: RunningServer
    db: Database
    relay: RunningRelay | None = None

    @property
    def port(self) -> int:
        return self.running.port

    async def stop(self, grace: float = 5.0) -> None:
        await self.running.drain(grace)
        if self.relay is not None:
            await self.relay.stop()
        self.db.close()


def migrate(database_url: str) -> None:
    engine = create_db_engine(database_url)
    try:
        upgrade_schema(engine, MIGRATIONS, VERSION_TABLE)
    finally:
        engine.dispose()


async def start(settings: Settings, *, clock: Clock = utc_now) -> App:
    """Open the database (migrating it if asked), then serve both card-points services."""
    credentials = ServerTransport(
        settings.tls_cert, settings.tls_key, settings.tls_client_ca, settings.insecure_plaintext
    ).credentials()
    auth = AuthInterceptor(
        TokenVerifier.from_file(settings.token_public_key),
        RULES,
        service_identities=frozenset(settings.service_identities.split(",")),
    )
    engine = create_db_engine(settings.database_url, durable=True, pool_size=settings.workers)
    if settings.migrate:
        upgrade_schema(engine, MIGRATIONS, VERSION_TABLE)
    db = Database(engine, workers=settings.workers, group_commit=settings.group_commit)
    servicer = CardPointsServicer(
        db,
        lambda: CardpointsUnitOfWork(db.sessions),
        lambda: CardpointsUnitOfWork(db.read_sessions),
        clock,
    )
    admin = CardPointsAdminServicer(
        db,
        lambda: CardpointsUnitOfWork(db.sessions),
        lambda: CardpointsUnitOfWork(db.read_sessions),
        clock,
    )
    try:
        running = await start_server(
            listen_address(settings.address, DEFAULT_PORT, tls=bool(settings.tls_cert)),
            [
                Registration(
                    pb.DESCRIPTOR.services_by_name["CardPointsService"].full_name,
                    lambda server: pb_grpc.add_CardPointsServiceServicer_to_server(
                        servicer, server
                    ),
                ),
                Registration(
                    pb.DESCRIPTOR.services_by_name["CardPointsAdminService"].full_name,
                    lambda server: pb_grpc.add_CardPointsAdminServiceServicer_to_server(
                        admin, server
                    ),
                ),
            ],
            credentials=credentials,
            interceptors=[auth],
        )
    except BaseException:
        db.close()
        raise
    relay = start_relay(
        events.SERVICE,
        db,
        OUTBOX,
        RelaySettings(settings.nats_url, settings.events_retention, settings.events_stuck_after),
        running.health,
    )
    return App(running, db, relay)


def parse_settings(argv: list[str] | None = None) -> tuple[Settings, bool]:
    defaults = Settings()
    parser = EnvParser(
        "POINTSBRIDGE_CARDPOINTS",
        prog="cardpoints-server",
        description=(
            "Serve the PointsBridge card-points service (CardPointsService and "
            "CardPointsAdminService) over gRPC, with health checking and server reflection."
        ),
    )
    parser.server_options(defaults, DEFAULT_PORT)
    parser.event_options(defaults)
    parser.option(
        "--tls-client-ca",
        default=defaults.tls_client_ca,
        help="PEM CA that client certificates must chain to; setting it requires mutual TLS",
    )
    parser.option(
        "--service-identities",
        default=defaults.service_identities,
        help="comma-separated certificate common names (or service-token subjects) "
        "allowed to deduct and reverse points",
    )
    parser.add_argument(
        "--migrate-only",
        action="store_true",
        help="apply schema migrations to --database-url, then exit",
    )
    args = parser.parse_args(argv)
    settings = Settings(
        address=args.address,
        database_url=args.database_url,
        migrate=args.migrate,
        workers=args.workers,
        group_commit=args.group_commit,
        grace=args.grace,
        log_level=args.log_level,
        log_format=args.log_format,
        metrics_address=args.metrics_address,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        tls_client_ca=args.tls_client_ca,
        insecure_plaintext=args.insecure_plaintext,
        token_public_key=args.token_public_key,
        service_identities=args.service_identities,
        nats_url=args.nats_url,
        events_retention=args.events_retention,
        events_stuck_after=args.events_stuck_after,
    )
    return settings, bool(args.migrate_only)


async def serve(settings: Settings) -> None:
    if settings.metrics_address:
        log.info("metrics on port %d", serve_metrics(settings.metrics_address))
    app = await start(settings)
    # Warned once the settings were found to work: a refusal to start comes alone.
    if settings.insecure_plaintext and not settings.tls_cert:
        log.warning(
            "INSECURE: serving plaintext gRPC (--insecure-plaintext); for local development only"
        )
    log.info("cardpoints serving on port %d", app.port)
    await wait_for_stop_signal()
    log.info("draining for up to %.1fs", settings.grace)
    await app.stop(settings.grace)
    log.info("stopped")


def main(argv: list[str] | None = None) -> int:
    settings, migrate_only = parse_settings(argv)
    configure_logging("cardpoints", settings.log_level, settings.log_format)
    if migrate_only:
        migrate(settings.database_url)
        log.info("schema is up to date")
        return 0
    try:
        asyncio.run(serve(settings))
    except ConfigError as error:
        log.error("%s", error)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
