"""Development PKI: a CA and one certificate per service, for mutual TLS on one machine.

    python -m servicekit.devcerts --out certs

Writes ca.pem, <name>.pem / <name>-key.pem for cardpoints and ecommerce, ops.pem /
ops-key.pem for operators' clients (the CLI), and the bearer-token key pair
token-signing-key.pem / token-public-key.pem. Private keys are
created 0600 and are never committed (certs/ is ignored). For production, use
certificates from the bank's own CA and a signing key kept by the token issuer; the
servers only need the file paths.
"""

from __future__ import annotations

import argparse
import ipaddress
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from servicekit.devtools.credentials import write_file, write_signing_key

SERVICES = ("cardpoints", "ecommerce")
# The operators' client certificate: it gets the CLI through mutual TLS, and nothing
# more. Its name is no service identity, so what an operator may do comes from their
# token alone; it is a client certificate only, so no server can pose with it.
OPERATOR = "ops"
OPERATOR_COMMON_NAME = "PointsBridge operator"


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "PointsBridge development"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_ca(
    common_name: str, days: int = 365
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return cert, key


def make_leaf(
    common_name: str,
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    days: int = 365,
    *,
    server: bool = True,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A certificate for mTLS: client as `common_name` and, when `server`, server for localhost."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if server:
        names: list[x509.GeneralName] = [
            x509.DNSName(common_name),
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1")),
        ]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        usages.insert(0, ExtendedKeyUsageOID.SERVER_AUTH)
    cert = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False).sign(
        ca_key, hashes.SHA256()
    )
    return cert, key


def write_dev_pki(out: Path, services: tuple[str, ...] = SERVICES) -> None:
    ca, ca_key = make_ca("PointsBridge development CA")
    write_file(out / "ca.pem", ca.public_bytes(serialization.Encoding.PEM))
    leaves = [(name, make_leaf(name, ca, ca_key)) for name in services]
    leaves.append((OPERATOR, make_leaf(OPERATOR_COMMON_NAME, ca, ca_key, server=False)))
    for name, (cert, key) in leaves:
        write_file(out / f"{name}.pem", cert.public_bytes(serialization.Encoding.PEM))
        write_file(out / f"{name}-key.pem", _pem_key(key), private=True)
    write_signing_key(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m servicekit.devcerts", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--out", default="certs", help="folder to write the PEM files to")
    args = parser.parse_args(argv)
    write_dev_pki(Path(args.out))
    print(
        f"wrote a development CA, certificates for {', '.join(SERVICES)}, an operator "
        f"client certificate ({OPERATOR}.pem) and a token signing key to {args.out}/"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
