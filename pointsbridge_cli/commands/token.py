"""`pointsbridge token`: sign a bearer token for a customer, an operator or a service."""

from __future__ import annotations

import json as jsonlib
from pathlib import Path
from typing import Annotated

import typer

from pointsbridge_cli.params import json_option
from servicekit.auth import ROLE_ADMIN, ROLE_CUSTOMER, ROLE_SERVICE, TokenIssuer

DEV_SIGNING_KEY = "var/dev-keys/token-signing-key.pem"


def token(
    customer: Annotated[
        str,
        typer.Option(
            "--customer",
            help="Sign for this customer id; they may act only for themselves, "
            "e.g. --customer demo-customer.",
            show_default=False,
        ),
    ] = "",
    admin: Annotated[
        str,
        typer.Option(
            "--admin",
            help="Sign for this operator, with the admin role, e.g. --admin ops-1.",
            show_default=False,
        ),
    ] = "",
    service: Annotated[
        str,
        typer.Option(
            "--service",
            help="Sign for this peer service, e.g. --service ecommerce (its token for "
            "cardpoints when mutual TLS is off).",
            show_default=False,
        ),
    ] = "",
    ttl: Annotated[
        int,
        typer.Option("--ttl", min=1, help="Seconds the token stays valid, e.g. --ttl 3600."),
    ] = 3600,
    signing_key: Annotated[
        Path,
        typer.Option(
            "--signing-key",
            envvar="POINTSBRIDGE_SIGNING_KEY",
            help="PEM private key that signs tokens; the services check them with its public "
            "key, e.g. --signing-key certs/token-signing-key.pem.",
        ),
    ] = Path(DEV_SIGNING_KEY),
    json: Annotated[
        bool, json_option("-r .token", "the token, its subject, role and ttl as JSON")
    ] = False,
) -> None:
    """Print a signed bearer token, for `authorization: Bearer <token>`.

    Exactly one of --customer, --admin and --service. `make run` creates a development
    signing key under var/dev-keys; `make certs` writes one to certs/.

    Example:

    ```
    pointsbridge token --customer demo-customer --ttl 600
    ```
    """
    chosen = [
        (role, who)
        for role, who in ((ROLE_CUSTOMER, customer), (ROLE_ADMIN, admin), (ROLE_SERVICE, service))
        if who
    ]
    if len(chosen) != 1:
        raise typer.BadParameter("give exactly one of --customer, --admin and --service")
    [(role, subject)] = chosen
    try:
        issuer = TokenIssuer(signing_key.read_bytes())
    except OSError as error:
        raise typer.BadParameter(
            f"cannot read the signing key {str(signing_key)!r}: {error.strerror}"
        ) from None
    signed = issuer.issue(subject, [role], ttl)
    if json:
        print(jsonlib.dumps({"token": signed, "subject": subject, "role": role, "ttl": ttl}))
    else:
        print(signed)
