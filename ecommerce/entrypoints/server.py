"""Entrypoints room: settings, bootstrap and the `ecommerce-server` command."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import timedelta

import grpc

from ecommerce.adapters import events
from ecommerce.adapters.orm import OUTBOX
from ecommerce.adapters.points_gateway import GrpcPointsGateway
from ecommerce.entrypoints import metrics
from ecommerce.entrypoints.access import RULES
from ecommerce.entrypoints.recovery import run_recovery
from ecommerce.entrypoints.servicer import EcommerceAdminServicer, RedemptionServicer
from ecommerce.service_layer.services import DEFAULT_MERCHANT_ID, Dependencies, RecoveryPolicy
from ecommerce.service_layer.unit_of_work import SqlUnitOfWork
from pointsbridge.ecommerce.v1 import ecommerce_pb2 as pb
from pointsbridge.ecommerce.v1 import ecommerce_pb2_grpc as pb_grpc
from servicekit.auth import AuthInterceptor, RateLimiter, TokenVerifier
from servicekit.clock import Clock, utc_now
from servicekit.config import ConfigError, EnvParser
from servicekit.db import GROUP_COMMIT, Database, create_db_engine, upgrade_schema
from servicekit.observability import configure_logging, serve_metrics
from servicekit.ports import listen_address
from servicekit.relay import RelaySettings, RunningRelay, start_relay
from servicekit.server import Registration, RunningServer, start_server, wait_for_stop_signal
from servicekit.tls import ClientTransport, ServerTransport
from servicekit.token_file import TokenFile, watch

log = logging.getLogger("ecommerce")

MIGRATIONS = "ecommerce.adapters:migrations"
DEFAULT_PORT = 50052
VERSION_TABLE = "ecommerce_alembic_version"

REDEMPTION_SERVICE = pb.DESCRIPTOR.services_by_name["RedemptionService"].full_name
ADMIN_SERVICE = pb.DESCRIPTOR.services_by_name["EcommerceAdminService"].full_name


@dataclass(frozen=True)
class Settings:
    # Empty: DEFAULT_PORT on loopback without TLS, on every interface with it.
    address: str = ""
    database_url: str = "sqlite:///var/ecommerce.db"
    cardpoints_address: str = "localhost:50051"
    # Deadline, in seconds, of every call to cardpoints (DeductPoints included).
    deduct_timeout: float = 5.0
    workers: int = 8
    group_commit: int = GROUP_COMMIT
    grace: float = 5.0
    log_level: str = "INFO"
    log_format: str = "auto"
    metrics_address: str = ""
    migrate: bool = True
    merchant_id: str = DEFAULT_MERCHANT_ID
    # Seconds between recovery sweeps; 0 turns the loop off.
    recovery_interval: float = 5.0
    # Seconds a PENDING row must sit untouched before the loop takes it.
    settle_delay: float = 5.0
    # Seconds after which an unsettled operation is flagged for review.
    review_after: float = 900.0
    # Seconds a sweep's claim on a row lasts unless renewed; the sweep renews it every
    # third of that while it works, so a replica that dies mid-sweep blocks its rows
    # for no longer than this.
    recovery_lease: float = 10.0
    # Transport to clients: TLS with these files, or plaintext only when asked for by name.
    tls_cert: str = ""
    tls_key: str = ""
    insecure_plaintext: bool = False
    # The PEM public key that bearer tokens must be signed for.
    token_public_key: str = ""
    # Calls per second (and burst) each customer may make; operators are not limited.
    rate_limit: float = 50.0
    rate_burst: int = 100
    # Mutual TLS to cardpoints (CA to trust, and this service's certificate) ...
    cardpoints_ca: str = ""
    cardpoints_cert: str = ""
    cardpoints_key: str = ""
    # The name cardpoints' certificates must be valid for; empty: the (first) host of
    # cardpoints_address.
    cardpoints_tls_name: str = ""
    # ... or, without TLS, a file holding this service's bearer token.
    cardpoints_token_file: str = ""
    # Events: published to this NATS server when set (the outbox records them regardless).
    nats_url: str = ""
    events_retention: float = 86400.0
    events_stuck_after: float = 60.0


@dataclass
class App:
    """A running e-commerce service."""

    server: RunningServer
    database: Database
    gateway: GrpcPointsGateway
    recovery: asyncio.Task[None] | None = None
    recovery_stop: asyncio.Event = field(default_factory=asyncio.Event)
    # Watches --cardpoints-token-file: rotation, and warnings ahead of expiry.
    token_watch: asyncio.Task[None] | None = None
    relay: RunningRelay | None = None

    @property
    def port(self) -> int:
        return self.server.port

    async def stop(self, grace: float = 5.0) -> None:
        """Finish in-flight calls (up to `grace` seconds), then release the channel and database."""
        try:
            self.recovery_stop.set()
            for task in (self.recovery, self.token_watch):
                if task is not None:
                    await task
            await self.server.drain(grace)
            if self.relay is not None:
                await self.relay.stop()
        finally:
            await self.gateway.close()
            await asyncio.to_thread(self.database.close)


def migrate(settings: Settings) -> None:
    engine = create_db_engine(settings.database_url, durable=True)
    try:
        upgrade_schema(engine, MIGRATIONS, VERSION_TABLE)
    finally:
        engine.dispose()


def recovery_policy(settings: Settings) -> RecoveryPolicy:
    """How the recovery loop sweeps. The lease need not cover a call to cardpoints: a
    sweep renews its claims while it works, so a short lease only bounds how long a
    dead replica's claims block its rows."""
    if settings.recovery_lease <= 0:
        raise ConfigError(f"--recovery-lease must be positive, got {settings.recovery_lease}")
    return RecoveryPolicy(
        settle_delay=timedelta(seconds=settings.settle_delay),
        review_after=timedelta(seconds=settings.review_after),
        lease=timedelta(seconds=settings.recovery_lease),
    )


async def start(settings: Settings, *, clock: Clock = utc_now) -> App:
    """Open the database, migrate it if asked, and serve both e-commerce services."""
    policy = recovery_policy(settings)
    credentials = ServerTransport(
        settings.tls_cert, settings.tls_key, insecure_plaintext=settings.insecure_plaintext
    ).credentials()
    auth = AuthInterceptor(
        TokenVerifier.from_file(settings.token_public_key),
        RULES,
        rate_limiter=RateLimiter(settings.rate_limit, settings.rate_burst),
    )
    to_cardpoints = ClientTransport(
        settings.cardpoints_ca, settings.cardpoints_cert, settings.cardpoints_key
    )
    service_token = (
        TokenFile(settings.cardpoints_token_file) if settings.cardpoints_token_file else None
    )
    if not to_cardpoints.secure and service_token is None:
        raise ConfigError(
            "calls to cardpoints need credentials: --cardpoints-ca with --cardpoints-cert and "
            "--cardpoints-key (mutual TLS), or --cardpoints-token-file"
        )
    engine = create_db_engine(settings.database_url, durable=True, pool_size=settings.workers)
    if settings.migrate:
        try:
            await asyncio.to_thread(upgrade_schema, engine, MIGRATIONS, VERSION_TABLE)
        except BaseException:
            engine.dispose()
            raise
    database = Database(engine, workers=settings.workers, group_commit=settings.group_commit)
    gateway = GrpcPointsGateway.connect(
        settings.cardpoints_address,
        timeout=settings.deduct_timeout,
        transport=to_cardpoints,
        token=service_token or "",
        server_name=settings.cardpoints_tls_name,
    )
    deps = Dependencies(
        runner=database,
        uow=lambda: SqlUnitOfWork(database.sessions),
        read_uow=lambda: SqlUnitOfWork(database.read_sessions),
        points=gateway,
        clock=clock,
        merchant_id=settings.merchant_id,
        publish=metrics.publish,
    )
    redemption = RedemptionServicer(deps)
    admin = EcommerceAdminServicer(deps, timedelta(seconds=settings.review_after))

    def add_redemption(server: grpc.aio.Server) -> None:
        pb_grpc.add_RedemptionServiceServicer_to_server(redemption, server)

    def add_admin(server: grpc.aio.Server) -> None:
        pb_grpc.add_EcommerceAdminServiceServicer_to_server(admin, server)

    try:
        running = await start_server(
            listen_address(settings.address, DEFAULT_PORT, tls=bool(settings.tls_cert)),
            [
                Registration(REDEMPTION_SERVICE, add_redemption),
                Registration(ADMIN_SERVICE, add_admin),
            ],
            credentials=credentials,
            interceptors=[auth],
        )
    except BaseException:
        await gateway.close()
        database.close()
        raise
    app = App(running, database, gateway)
    if service_token is not None:
        token_file = service_token

        def seconds_left() -> float:
            left = token_file.seconds_left()
            return float("nan") if left is None else left

        metrics.CARDPOINTS_TOKEN_EXPIRY.set_function(seconds_left)
        app.token_watch = asyncio.create_task(watch(token_file, app.recovery_stop))
    app.relay = start_relay(
        events.SERVICE,
        database,
        OUTBOX,
        RelaySettings(settings.nats_url, settings.events_retention, settings.events_stuck_after),
        running.health,
    )
    if settings.recovery_interval > 0:
        app.recovery = asyncio.create_task(
            run_recovery(deps, policy, settings.recovery_interval, app.recovery_stop)
        )
    return app


def parse_settings(argv: Sequence[str] | None = None) -> tuple[Settings, bool]:
    """The settings, and whether only to migrate: flags win over POINTSBRIDGE_ECOMMERCE_*."""
    defaults = Settings()
    parser = EnvParser(
        "POINTSBRIDGE_ECOMMERCE",
        prog="ecommerce-server",
        description=(
            "Serve the PointsBridge e-commerce service (RedemptionService and "
            "EcommerceAdminService) over gRPC, with health checking and server reflection."
        ),
    )
    parser.server_options(defaults, DEFAULT_PORT)
    parser.event_options(defaults)
    parser.option(
        "--cardpoints-address",
        default=defaults.cardpoints_address,
        help="the card-points service: host:port (a DNS name may resolve to several "
        "replicas), or several replicas as ip:port,ip:port; calls go round robin to "
        "those whose health check says SERVING",
    )
    parser.option(
        "--deduct-timeout",
        default=defaults.deduct_timeout,
        type=float,
        help="deadline in seconds of each call to the card-points service",
    )
    parser.option(
        "--merchant-id",
        default=defaults.merchant_id,
        help="who the card-points service is told asks for each deduction",
    )
    parser.option(
        "--recovery-interval",
        default=defaults.recovery_interval,
        type=float,
        help="seconds between sweeps that settle PENDING redemptions and refunds; 0: off",
    )
    parser.option(
        "--settle-delay",
        default=defaults.settle_delay,
        type=float,
        help="seconds a PENDING redemption or refund sits untouched before a sweep takes it",
    )
    parser.option(
        "--review-after",
        default=defaults.review_after,
        type=float,
        help="seconds after which an unsettled operation is logged and listed as needing review",
    )
    parser.option(
        "--rate-limit",
        default=defaults.rate_limit,
        type=float,
        help="calls per second each customer may make (RESOURCE_EXHAUSTED beyond)",
    )
    parser.option(
        "--rate-burst",
        default=defaults.rate_burst,
        type=int,
        help="calls a customer may make at once before --rate-limit applies",
    )
    parser.option(
        "--cardpoints-ca",
        default=defaults.cardpoints_ca,
        help="PEM CA to trust for cardpoints; turns on TLS to it",
    )
    parser.option(
        "--cardpoints-cert",
        default=defaults.cardpoints_cert,
        help="PEM client certificate presented to cardpoints (this service's identity)",
    )
    parser.option(
        "--cardpoints-key", default=defaults.cardpoints_key, help="PEM key of --cardpoints-cert"
    )
    parser.option(
        "--cardpoints-tls-name",
        default=defaults.cardpoints_tls_name,
        help="with --cardpoints-ca: the name every cardpoints replica's certificate must be "
        "valid for; empty: the host of --cardpoints-address (the first, when several)",
    )
    parser.option(
        "--cardpoints-token-file",
        default=defaults.cardpoints_token_file,
        help="file holding this service's bearer token for cardpoints, when not using mTLS; "
        "re-read whenever it changes (replace it atomically to rotate), warned about in "
        "the log and ecommerce_cardpoints_token_expiry_seconds before it expires",
    )
    parser.option(
        "--recovery-lease",
        default=defaults.recovery_lease,
        type=float,
        help="seconds a sweep's claim on a row lasts unless renewed (a live sweep renews "
        "it every third of that); rows of a replica that died mid-sweep wait this long",
    )
    parser.add_argument(
        "--migrate-only",
        action="store_true",
        help="apply schema migrations to --database-url, then exit",
    )
    args = parser.parse_args(argv)
    settings = Settings(**{f.name: getattr(args, f.name) for f in fields(Settings)})
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
    if not settings.cardpoints_ca:
        log.warning("INSECURE: calling cardpoints over plaintext with a bearer token")
    log.info(
        "ecommerce serving on port %d, cardpoints at %s", app.port, settings.cardpoints_address
    )
    try:
        await wait_for_stop_signal()
        log.info("draining for up to %.1f s", settings.grace)
    finally:
        await app.stop(settings.grace)


def main(argv: Sequence[str] | None = None) -> int:
    settings, migrate_only = parse_settings(argv)
    configure_logging("ecommerce", settings.log_level, settings.log_format)
    if migrate_only:
        migrate(settings)
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
