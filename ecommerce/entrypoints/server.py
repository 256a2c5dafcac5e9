"""Entrypoints room: the e-commerce server's own settings and wiring on servicekit's bootstrap."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

import grpc

from ecommerce.adapters.orm import OUTBOX
from ecommerce.adapters.points_gateway import DEFAULT_MERCHANT_ID, GrpcPointsGateway
from ecommerce.adapters.unit_of_work import SqlUnitOfWork
from ecommerce.entrypoints import metrics
from ecommerce.entrypoints.access import RULES
from ecommerce.entrypoints.recovery import run_recovery
from ecommerce.entrypoints.servicer import EcommerceAdminServicer, RedemptionServicer
from ecommerce.service_layer.ports import EcommerceSteps
from ecommerce.service_layer.recovery import RecoveryPolicy
from pointsbridge.ecommerce.v1 import ecommerce_pb2 as pb
from pointsbridge.ecommerce.v1 import ecommerce_pb2_grpc as pb_grpc
from servicekit.app import App, Loop, Server, ServerSettings, Wiring
from servicekit.auth import RateLimiter
from servicekit.clock import Clock
from servicekit.config import ConfigError, EnvParser
from servicekit.db import Database
from servicekit.server import Registration
from servicekit.steps import Steps
from servicekit.tls import ClientTransport
from servicekit.token_file import TokenFile, watch

__all__ = ["App", "Settings", "main", "migrate", "parse_settings", "recovery_policy", "start"]

MIGRATIONS = "ecommerce.adapters:migrations"
DEFAULT_PORT = 50052
DESCRIPTION = (
    "Serve the PointsBridge e-commerce service (RedemptionService and "
    "EcommerceAdminService) over gRPC, with health checking and server reflection."
)

REDEMPTION_SERVICE = pb.DESCRIPTOR.services_by_name["RedemptionService"].full_name
ADMIN_SERVICE = pb.DESCRIPTOR.services_by_name["EcommerceAdminService"].full_name


@dataclass(frozen=True)
class Settings(ServerSettings):
    database_url: str = "sqlite:///var/ecommerce.db"
    cardpoints_address: str = "localhost:50051"
    # Deadline, in seconds, of every call to cardpoints (DeductPoints included).
    deduct_timeout: float = 5.0
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


def _token_watch(token_file: TokenFile) -> Loop:
    """Watches --cardpoints-token-file: rotation, and warnings ahead of expiry."""

    def seconds_left() -> float:
        left = token_file.seconds_left()
        return float("nan") if left is None else left

    metrics.CARDPOINTS_TOKEN_EXPIRY.set_function(seconds_left)
    return lambda stop: watch(token_file, stop)


class EcommerceServer(Server[Settings]):
    name = "ecommerce"

    def add_options(self, parser: EnvParser, defaults: Settings) -> None:
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
            help="seconds after which an unsettled operation is logged and listed as needing "
            "review",
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
        parser.client_tls_options(
            "cardpoints", defaults, called="cardpoints", identity=" (this service's identity)"
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

    def rate_limiter(self, settings: Settings) -> RateLimiter:
        return RateLimiter(settings.rate_limit, settings.rate_burst)

    def prepare(self, settings: Settings, clock: Clock) -> Callable[[Database], Wiring]:
        policy = recovery_policy(settings)
        to_cardpoints = ClientTransport.to(settings, "cardpoints")
        service_token = (
            TokenFile(settings.cardpoints_token_file) if settings.cardpoints_token_file else None
        )
        if not to_cardpoints.secure and service_token is None:
            raise ConfigError(
                "calls to cardpoints need credentials: --cardpoints-ca with --cardpoints-cert and "
                "--cardpoints-key (mutual TLS), or --cardpoints-token-file"
            )

        def wire(database: Database) -> Wiring:
            gateway = GrpcPointsGateway.connect(
                settings.cardpoints_address,
                timeout=settings.deduct_timeout,
                transport=to_cardpoints,
                token=service_token or "",
                server_name=settings.cardpoints_tls_name,
                merchant_id=settings.merchant_id,
            )
            steps: EcommerceSteps = Steps(
                runner=database,
                uow=lambda: SqlUnitOfWork(database.sessions),
                read_uow=lambda: SqlUnitOfWork(database.read_sessions),
                clock=clock,
                publish=metrics.publish,
            )
            redemption = RedemptionServicer(steps, gateway)
            admin = EcommerceAdminServicer(steps, gateway, timedelta(seconds=settings.review_after))

            def add_redemption(server: grpc.aio.Server) -> None:
                pb_grpc.add_RedemptionServiceServicer_to_server(redemption, server)

            def add_admin(server: grpc.aio.Server) -> None:
                pb_grpc.add_EcommerceAdminServiceServicer_to_server(admin, server)

            loops: list[Loop] = []
            if service_token is not None:
                loops.append(_token_watch(service_token))
            if settings.recovery_interval > 0:
                loops.append(
                    lambda stop: run_recovery(
                        steps, gateway, policy, settings.recovery_interval, stop
                    )
                )
            return Wiring(
                [
                    Registration(REDEMPTION_SERVICE, add_redemption),
                    Registration(ADMIN_SERVICE, add_admin),
                ],
                loops,
                [gateway.close],
            )

        return wire

    def warnings(self, settings: Settings) -> Sequence[str]:
        if settings.cardpoints_ca:
            return ()
        return ("INSECURE: calling cardpoints over plaintext with a bearer token",)

    def serving(self, settings: Settings) -> str:
        return f", cardpoints at {settings.cardpoints_address}"


SERVER = EcommerceServer(Settings, DESCRIPTION, DEFAULT_PORT, MIGRATIONS, OUTBOX, RULES)
VERSION_TABLE = SERVER.version_table
start, parse_settings, main = SERVER.start, SERVER.parse_settings, SERVER.main
migrate = SERVER.migrate

if __name__ == "__main__":
    sys.exit(main())
