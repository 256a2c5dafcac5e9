"""Mutual TLS between the services, and servers that refuse plaintext unless told."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cardpoints.entrypoints.server import App as CardpointsApp
from cardpoints.entrypoints.server import Settings as CardpointsSettings
from cardpoints.entrypoints.server import start as start_cardpoints
from ecommerce.entrypoints.server import Settings, start
from pointsbridge.cardpoints.v1 import cardpoints_pb2 as cp
from pointsbridge.cardpoints.v1 import cardpoints_pb2_grpc as cp_grpc
from pointsbridge.ecommerce.v1 import ecommerce_pb2 as ec
from pointsbridge.ecommerce.v1 import ecommerce_pb2_grpc as ec_grpc
from servicekit.auth import TokenIssuer
from servicekit.config import ConfigError
from servicekit.devcerts import make_ca, make_leaf, write_dev_pki
from servicekit.devtools.credentials import bearer
from servicekit.status import remote_error
from tests.auth import Callers
from tests.cli.conftest import Cli


@dataclass(frozen=True)
class Pki:
    folder: Path

    def __getitem__(self, name: str) -> str:
        return str(self.folder / name)

    def read(self, name: str) -> bytes:
        return (self.folder / name).read_bytes()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    write_dev_pki(folder)
    # A certificate for "ecommerce" from a CA nobody here trusts.
    rogue_ca, rogue_key = make_ca("Rogue CA")
    cert, key = make_leaf("ecommerce", rogue_ca, rogue_key)
    (folder / "rogue.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "rogue-key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Pki(folder)


@pytest.fixture
async def bank(
    pki: Pki, make_db_url: Callable[[str], str], auth: Callers
) -> AsyncIterator[CardpointsApp]:
    app = await start_cardpoints(
        CardpointsSettings(
            address="127.0.0.1:0",
            database_url=make_db_url("cardpoints"),
            tls_cert=pki["cardpoints.pem"],
            tls_key=pki["cardpoints-key.pem"],
            tls_client_ca=pki["ca.pem"],
            token_public_key=str(auth.public_key),
        )
    )
    yield app
    await app.stop(1)


def mtls_channel(pki: Pki, port: int, cert: str | None) -> grpc.aio.Channel:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=pki.read("ca.pem"),
        private_key=pki.read(f"{cert}-key.pem") if cert else None,
        certificate_chain=pki.read(f"{cert}.pem") if cert else None,
    )
    return grpc.aio.secure_channel(f"localhost:{port}", credentials)


async def get_account(channel: grpc.aio.Channel, metadata: tuple[tuple[str, str], ...]) -> object:
    return await cp_grpc.CardPointsServiceStub(channel).GetAccount(
        cp.GetAccountRequest(account_id="nobody"), timeout=5, metadata=metadata
    )


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_clients_without_a_trusted_certificate_fail_the_handshake(
    pki: Pki, bank: CardpointsApp, auth: Callers
) -> None:
    for cert in (None, "rogue"):
        async with mtls_channel(pki, bank.port, cert) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await get_account(channel, bearer(auth.superuser))
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, cert
    async with grpc.aio.insecure_channel(f"localhost:{bank.port}") as plaintext:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await get_account(plaintext, bearer(auth.superuser))
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_the_certificate_is_the_service_identity(
    pki: Pki, bank: CardpointsApp, auth: Callers
) -> None:
    async with mtls_channel(pki, bank.port, "ecommerce") as channel:
        # No token at all: the client certificate says this is the e-commerce service.
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await get_account(channel, ())
        assert remote_error(missing.value).reason == "ACCOUNT_NOT_FOUND"
        # An operator still needs their own token for admin calls over the same channel.
        admin = cp_grpc.CardPointsAdminServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as not_admin:
            await admin.OpenAccount(
                cp.OpenAccountRequest(account_id="a", holder_name="A"), timeout=5
            )
        assert remote_error(not_admin.value).reason == "NOT_ADMIN"
        opened = await admin.OpenAccount(
            cp.OpenAccountRequest(account_id="a", holder_name="A"),
            timeout=5,
            metadata=bearer(auth.admin),
        )
        assert opened.account.account_id == "a"
    # Another service's certificate, signed by the right CA, is not the e-commerce service.
    async with mtls_channel(pki, bank.port, "cardpoints") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await get_account(channel, ())
        assert remote_error(refused.value).reason == "MISSING_CREDENTIALS"


async def test_a_redemption_over_mutual_tls_end_to_end(
    pki: Pki, bank: CardpointsApp, make_db_url: Callable[[str], str], auth: Callers
) -> None:
    shop = await start(
        Settings(
            address="127.0.0.1:0",
            database_url=make_db_url("ecommerce"),
            cardpoints_address=f"localhost:{bank.port}",
            tls_cert=pki["ecommerce.pem"],
            tls_key=pki["ecommerce-key.pem"],
            token_public_key=str(auth.public_key),
            cardpoints_ca=pki["ca.pem"],
            cardpoints_cert=pki["ecommerce.pem"],
            cardpoints_key=pki["ecommerce-key.pem"],
        )
    )
    try:
        admin = bearer(auth.admin)
        async with mtls_channel(pki, bank.port, "ecommerce") as to_bank:
            bank_admin = cp_grpc.CardPointsAdminServiceStub(to_bank)
            await bank_admin.OpenAccount(
                cp.OpenAccountRequest(account_id="card-a", holder_name="A"),
                timeout=5,
                metadata=admin,
            )
            await bank_admin.CreditPoints(
                cp.CreditPointsRequest(request_id="s", account_id="card-a", points=5000),
                timeout=5,
                metadata=admin,
            )
        tls = grpc.ssl_channel_credentials(root_certificates=pki.read("ca.pem"))
        async with grpc.aio.secure_channel(f"localhost:{shop.port}", tls) as to_shop:
            shop_admin = ec_grpc.EcommerceAdminServiceStub(to_shop)
            await shop_admin.CreateCouponProduct(
                ec.CreateCouponProductRequest(
                    product_id="c10",
                    display_name="10 off",
                    face_value_minor=1000,
                    currency="CNY",
                    points_per_coupon=1000,
                    validity_days=30,
                    max_quantity_per_redemption=5,
                ),
                timeout=5,
                metadata=admin,
            )
            await shop_admin.LinkCardAccount(
                ec.LinkCardAccountRequest(customer_id="alice", card_account_id="card-a"),
                timeout=5,
                metadata=admin,
            )
            redeemed = await ec_grpc.RedemptionServiceStub(to_shop).RedeemPoints(
                ec.RedeemPointsRequest(
                    request_id="tls-1", customer_id="alice", product_id="c10", quantity=2
                ),
                timeout=10,
                metadata=bearer(auth.token("alice", "customer")),
            )
        assert redeemed.redemption.state == ec.REDEMPTION_STATE_COMPLETED
        assert len(redeemed.redemption.coupons) == 2
    finally:
        await shop.stop(1)


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_servers_refuse_plaintext_and_missing_keys_unless_told(
    make_db_url: Callable[[str], str],
    auth: Callers,
) -> None:
    url = make_db_url("cardpoints")
    with pytest.raises(ConfigError, match="insecure-plaintext"):
        await start_cardpoints(
            CardpointsSettings(
                address="127.0.0.1:0", database_url=url, token_public_key=str(auth.public_key)
            )
        )
    with pytest.raises(ConfigError, match="token-public-key"):
        await start_cardpoints(
            CardpointsSettings(address="127.0.0.1:0", database_url=url, insecure_plaintext=True)
        )
    with pytest.raises(ConfigError, match="cardpoints-token-file"):
        await start(
            Settings(
                address="127.0.0.1:0",
                database_url=make_db_url("ecommerce"),
                insecure_plaintext=True,
                token_public_key=str(auth.public_key),
            )
        )


async def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The CLI as a subprocess, with the addresses and TLS options given in args."""
    # No token unless `env` brings one: --help needs none, and the others say whose.
    return await Cli("", "", "")(*args, env=env, addresses=False)


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_the_operator_certificate_reaches_mtls_cardpoints_but_cannot_deduct(
    tmp_path: Path, make_db_url: Callable[[str], str]
) -> None:
    # What `make certs` runs, into a folder of its own.
    certs = tmp_path / "certs"
    made = subprocess.run(
        [sys.executable, "-m", "servicekit.devcerts", "--out", str(certs)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "ops.pem" in made.stdout
    # The CLI's help names the files `make certs` writes.
    helped = await run_cli("--help", env={"COLUMNS": "200"})
    for flag in ("--tls-ca", "--tls-cert", "--tls-key"):
        [named] = re.findall(rf"e\.g\. {flag} certs/(\S+?)\.?\s", helped.stdout)
        assert (certs / named).is_file(), (flag, named)
    # A client certificate of no service: no server name in it, no server use.
    ops = x509.load_pem_x509_certificate((certs / "ops.pem").read_bytes())
    assert ops.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value not in (
        "ecommerce",
        "cardpoints",
    )
    usage = ops.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert oct((certs / "ops-key.pem").stat().st_mode & 0o777) == "0o600"

    bank = await start_cardpoints(
        CardpointsSettings(
            address="127.0.0.1:0",
            database_url=make_db_url("cardpoints"),
            tls_cert=str(certs / "cardpoints.pem"),
            tls_key=str(certs / "cardpoints-key.pem"),
            tls_client_ca=str(certs / "ca.pem"),
            token_public_key=str(certs / "token-public-key.pem"),
        )
    )
    try:
        issuer = TokenIssuer((certs / "token-signing-key.pem").read_bytes())
        admin = issuer.issue("ops-1", ["admin"], 600)
        tls = [
            "--cardpoints",
            f"localhost:{bank.port}",
            "--tls-ca",
            str(certs / "ca.pem"),
            "--tls-cert",
            str(certs / "ops.pem"),
            "--tls-key",
            str(certs / "ops-key.pem"),
        ]
        opened = await run_cli(
            *tls, "accounts", "open", "card-a", "--holder", "A", env={"POINTSBRIDGE_TOKEN": admin}
        )
        assert opened.returncode == 0, opened.stderr
        credited = await run_cli(
            *tls, "accounts", "credit", "card-a", "500", env={"POINTSBRIDGE_TOKEN": admin}
        )
        assert credited.returncode == 0, credited.stderr
        shown = await run_cli(
            *tls, "accounts", "show", "card-a", "--json", env={"POINTSBRIDGE_TOKEN": admin}
        )
        assert json.loads(shown.stdout)["account"]["balance"] == "500"

        deduct = cp.DeductPointsRequest(
            request_id="d-ops",
            account_id="card-a",
            points=100,
            coupon_quantity=1,
            points_per_coupon=100,
            merchant_id="shop",
        )
        async with mtls_channel(Pki(certs), bank.port, "ops") as channel:
            stub = cp_grpc.CardPointsServiceStub(channel)
            for metadata, expected in (
                (bearer(admin), (grpc.StatusCode.PERMISSION_DENIED, "NOT_SERVICE")),
                ((), (grpc.StatusCode.UNAUTHENTICATED, "MISSING_CREDENTIALS")),
            ):
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await stub.DeductPoints(deduct, timeout=5, metadata=metadata)
                failure = remote_error(refused.value)
                assert (failure.code, failure.reason) == expected
            account = await stub.GetAccount(
                cp.GetAccountRequest(account_id="card-a"), timeout=5, metadata=bearer(admin)
            )
            assert account.account.balance == 500
    finally:
        await bank.stop(1)


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_the_cli_says_what_is_wrong_with_tls_not_that_the_service_is_down(
    pki: Pki, bank: CardpointsApp, make_db_url: Callable[[str], str], auth: Callers
) -> None:
    admin = {"POINTSBRIDGE_TOKEN": auth.admin}
    mutual = f"localhost:{bank.port}"

    async def show(address: str, *tls: str) -> str:
        result = await run_cli(
            "--cardpoints", address, "--timeout", "5", *tls, "accounts", "show", "a", env=admin
        )
        assert result.returncode == 7, (tls, result.stdout, result.stderr)
        assert "check that" not in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr  # no gRPC log lines
        return " ".join(result.stderr.split())

    assert "it expects TLS; pass --tls-ca" in await show(mutual)
    without_cert = await show(mutual, "--tls-ca", pki["ca.pem"])
    assert "it requires a client certificate; pass --tls-cert and --tls-key" in without_cert
    rogue = await show(
        mutual,
        "--tls-ca",
        pki["ca.pem"],
        "--tls-cert",
        pki["rogue.pem"],
        "--tls-key",
        pki["rogue-key.pem"],
    )
    assert f"it does not accept the client certificate {pki['rogue.pem']}" in rogue
    # Trusting another CA than the one that signed the service's certificate.
    wrong_ca = await show(mutual, "--tls-ca", pki["rogue.pem"])
    assert f"is not signed by the CA in --tls-ca {pki['rogue.pem']}" in wrong_ca
    plaintext = await start_cardpoints(
        CardpointsSettings(
            address="127.0.0.1:0",
            database_url=make_db_url("plain"),
            insecure_plaintext=True,
            token_public_key=str(auth.public_key),
        )
    )
    try:
        assert "does not speak TLS (it serves plaintext)" in await show(
            f"localhost:{plaintext.port}", "--tls-ca", pki["ca.pem"]
        )
    finally:
        await plaintext.stop(1)
