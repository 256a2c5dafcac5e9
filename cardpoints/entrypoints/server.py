"""The card-points server process: its own settings and wiring on servicekit's bootstrap."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cardpoints.adapters.orm import OUTBOX
from cardpoints.adapters.repository import CardpointsUnitOfWork
from cardpoints.entrypoints import metrics
from cardpoints.entrypoints.access import RULES
from cardpoints.entrypoints.servicer import CardPointsAdminServicer, CardPointsServicer
from cardpoints.service_layer.ports import UnitOfWork
from pointsbridge.cardpoints.v1 import cardpoints_pb2 as pb
from pointsbridge.cardpoints.v1 import cardpoints_pb2_grpc as pb_grpc
from servicekit.app import App, Server, ServerSettings, Wiring
from servicekit.clock import Clock
from servicekit.config import EnvParser
from servicekit.db import Database
from servicekit.server import Registration
from servicekit.steps import Steps
from servicekit.tls import ServerTransport

__all__ = ["App", "Settings", "main", "parse_settings", "start"]

MIGRATIONS = str(Path(__file__).resolve().parent.parent / "adapters" / "migrations")
DEFAULT_PORT = 50051
DESCRIPTION = (
    "Serve the PointsBridge card-points service (CardPointsService and "
    "CardPointsAdminService) over gRPC, with health checking and server reflection."
)


@dataclass(frozen=True)
class Settings(ServerSettings):
    database_url: str = "sqlite:///var/cardpoints.db"
    grace: float = 10.0
    # With TLS: client certificates must chain to this CA (mutual TLS).
    tls_client_ca: str = ""
    # Certificate common names, or token subjects with the service role, that may move points.
    service_identities: str = "ecommerce"


class CardpointsServer(Server[Settings]):
    name = "cardpoints"

    def add_options(self, parser: EnvParser, defaults: Settings) -> None:
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

    def transport(self, settings: Settings) -> ServerTransport:
        return ServerTransport(
            settings.tls_cert, settings.tls_key, settings.tls_client_ca, settings.insecure_plaintext
        )

    def service_identities(self, settings: Settings) -> frozenset[str]:
        return frozenset(settings.service_identities.split(","))

    def prepare(self, settings: Settings, clock: Clock) -> Callable[[Database], Wiring]:
        def wire(db: Database) -> Wiring:
            steps: Steps[UnitOfWork] = Steps(
                runner=db,
                uow=lambda: CardpointsUnitOfWork(db.sessions),
                read_uow=lambda: CardpointsUnitOfWork(db.read_sessions),
                clock=clock,
                publish=metrics.publish,
            )
            servicer = CardPointsServicer(steps)
            admin = CardPointsAdminServicer(steps)
            return Wiring(
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
                ]
            )

        return wire


SERVER = CardpointsServer(Settings, DESCRIPTION, DEFAULT_PORT, MIGRATIONS, OUTBOX, RULES)
VERSION_TABLE = SERVER.version_table
start, parse_settings, main = SERVER.start, SERVER.parse_settings, SERVER.main

if __name__ == "__main__":
    sys.exit(main())
