"""Entrypoints room: the storefront's settings, from flags and POINTSBRIDGE_STOREFRONT_* env."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

from servicekit.config import EnvParser, boolean, positive_int


@dataclass(frozen=True)
class Settings:
    address: str = "127.0.0.1:8080"
    ecommerce_address: str = "localhost:50052"
    # Deadline, in seconds, of every call to ecommerce but the two below ...
    call_timeout: float = 5.0
    # ... and of RedeemPoints and RefundCoupons, which wait on the card-points system.
    redeem_timeout: float = 30.0
    # TLS to ecommerce: the CA to trust (turns TLS on) and an optional client certificate.
    ecommerce_ca: str = ""
    ecommerce_cert: str = ""
    ecommerce_key: str = ""
    # HTTPS to browsers; without it, plaintext HTTP on loopback unless insecure_plaintext.
    tls_cert: str = ""
    tls_key: str = ""
    insecure_plaintext: bool = False
    # GET /dev/sign-in?token=... signs in from a link: development only.
    dev_sign_in: bool = False
    max_sessions: int = 10_000
    grace: float = 5.0
    log_level: str = "INFO"
    log_format: str = "auto"


def parse_settings(argv: Sequence[str] | None = None) -> Settings:
    """The settings: flags win over POINTSBRIDGE_STOREFRONT_*, which win over the defaults."""
    defaults = Settings()
    parser = EnvParser(
        "POINTSBRIDGE_STOREFRONT",
        prog="storefront-server",
        description=(
            "Serve the PointsBridge storefront: the cardholder's web pages (coupons, redeem, "
            "my coupons, refunds), a client of the e-commerce RedemptionService."
        ),
    )
    parser.option(
        "--address", default=defaults.address, help="host:port to listen on (port 0 picks one)"
    )
    parser.option(
        "--ecommerce-address",
        default=defaults.ecommerce_address,
        help="host:port of the e-commerce service",
    )
    parser.option(
        "--call-timeout",
        default=defaults.call_timeout,
        type=float,
        help="deadline in seconds of each call to the e-commerce service",
    )
    parser.option(
        "--redeem-timeout",
        default=defaults.redeem_timeout,
        type=float,
        help="deadline in seconds of RedeemPoints and RefundCoupons, which wait on card points",
    )
    parser.client_tls_options("ecommerce", defaults, called="the e-commerce service")
    parser.option(
        "--tls-cert", default=defaults.tls_cert, help="PEM certificate to serve HTTPS with"
    )
    parser.option("--tls-key", default=defaults.tls_key, help="PEM private key of --tls-cert")
    parser.option(
        "--insecure-plaintext",
        default=defaults.insecure_plaintext,
        type=boolean,
        help="allow plain HTTP on an address other than loopback (behind a TLS proxy)",
    )
    parser.option(
        "--dev-sign-in",
        default=defaults.dev_sign_in,
        type=boolean,
        help="serve GET /dev/sign-in?token=..., which signs in from a link; development only",
    )
    parser.option(
        "--max-sessions",
        default=defaults.max_sessions,
        type=positive_int,
        help="signed-in sessions kept in memory; past this the oldest end",
    )
    parser.option(
        "--grace",
        default=defaults.grace,
        type=float,
        help="seconds in-flight requests may take to finish after SIGTERM",
    )
    parser.log_options(defaults)
    args = parser.parse_args(argv)
    return Settings(**{f.name: getattr(args, f.name) for f in fields(Settings)})
