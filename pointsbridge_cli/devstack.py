"""The whole system on one machine for development: `make run` and `make demo`.

python -m pointsbridge_cli.devstack run   # both services and the storefront, SQLite under var/
python -m pointsbridge_cli.devstack demo  # a scripted redemption against a running system
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import grpc

from pointsbridge.cardpoints.v1 import cardpoints_pb2 as cp
from pointsbridge.cardpoints.v1 import cardpoints_pb2_grpc as cp_grpc
from pointsbridge.ecommerce.v1 import ecommerce_pb2 as ec
from pointsbridge.ecommerce.v1 import ecommerce_pb2_grpc as ec_grpc
from servicekit import lifeline
from servicekit.auth import (
    ROLE_ADMIN,
    ROLE_CUSTOMER,
    ROLE_SERVICE,
    TokenIssuer,
    generate_signing_key,
)
from servicekit.status import remote_error
from servicekit.streams import safe_url

BIN = Path(sys.executable).parent
DEMO_CARD = "demo-card"
DEMO_CUSTOMER = "demo-customer"
DEMO_PRODUCT = "coupon-10"
DEMO_POINTS = 100_000
TIMEOUT = 10.0

_START_FIRST = "start `make run` first (in another terminal), then run `make demo` again"
_PORT_LINE = re.compile(r"serving on port (\d+)")
_METRICS_LINE = re.compile(r"metrics on port (\d+)")


@dataclass(frozen=True)
class DevKeys:
    """The development token keys under var/: made once, kept across restarts."""

    folder: Path

    @property
    def signing_key(self) -> Path:
        return self.folder / "token-signing-key.pem"

    @property
    def public_key(self) -> Path:
        return self.folder / "token-public-key.pem"

    @property
    def service_token(self) -> Path:
        return self.folder / "ecommerce-service.token"

    def ensure(self) -> None:
        if not self.signing_key.exists():
            private, public = generate_signing_key()
            self.folder.mkdir(parents=True, exist_ok=True)
            self.signing_key.touch(mode=0o600)
            self.signing_key.write_bytes(private)
            self.public_key.write_bytes(public)
        # A fresh service token at every start: short-lived tokens are the habit to keep.
        self.service_token.touch(mode=0o600)
        self.service_token.write_text(self.issue("ecommerce", ROLE_SERVICE, ttl=7 * 86_400))

    def issue(self, subject: str, role: str, ttl: int = 3600) -> str:
        return TokenIssuer(self.signing_key.read_bytes()).issue(subject, [role], ttl)

    def bearer(self, subject: str, role: str) -> tuple[tuple[str, str]]:
        return (("authorization", f"Bearer {self.issue(subject, role)}"),)


class Child:
    """A service process whose log is relayed to ours; its port is read from its log.

    Create children from the main thread: the kernel's parent-death signal
    (servicekit.lifeline) follows the thread that started the child, not the process.
    """

    def __init__(self, name: str, command: Sequence[str]) -> None:
        self.name = name
        self.process = subprocess.Popen(
            # Tied to this process: if it dies before stopping the child (SIGKILL, a
            # closed terminal), the child is sent SIGTERM and frees its port.
            lifeline.command(os.getpid(), command),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            start_new_session=True,  # Ctrl-C reaches us; we stop the children in order
        )
        self._port: int | None = None
        self.metrics_port: int | None = None
        self._ready = threading.Event()
        threading.Thread(target=self._relay, args=(self.process.stdout,), daemon=True).start()

    def _relay(self, stream: IO[str] | None) -> None:
        assert stream is not None
        for line in stream:
            sys.stderr.write(line)
            if self.metrics_port is None and (metrics := _METRICS_LINE.search(line)):
                self.metrics_port = int(metrics.group(1))
            if self._port is None and (found := _PORT_LINE.search(line)):
                self._port = int(found.group(1))
                self._ready.set()
        self._ready.set()

    def wait_port(self, timeout: float = 60) -> int:
        self._ready.wait(timeout)
        if self._port is None:
            try:  # its log has ended: it is exiting, or hangs with its output closed
                code: int | None = self.process.wait(5)
            except subprocess.TimeoutExpired:
                code = None
            raise SystemExit(f"{self.name} did not start (exit code {code})")
        return self._port

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait()


def seed(cardpoints: str, ecommerce: str, keys: DevKeys) -> None:
    """Demo data, created once: every step is idempotent, so a restart changes nothing."""
    operator = keys.bearer("devstack", ROLE_ADMIN)
    with grpc.insecure_channel(cardpoints) as channel:
        admin = cp_grpc.CardPointsAdminServiceStub(channel)
        admin.OpenAccount(
            cp.OpenAccountRequest(account_id=DEMO_CARD, holder_name="Demo Customer"),
            timeout=TIMEOUT,
            metadata=operator,
        )
        admin.CreditPoints(
            cp.CreditPointsRequest(
                request_id="demo-seed-credit",
                account_id=DEMO_CARD,
                points=DEMO_POINTS,
                reason="demo data",
            ),
            timeout=TIMEOUT,
            metadata=operator,
        )
    with grpc.insecure_channel(ecommerce) as channel:
        shop = ec_grpc.EcommerceAdminServiceStub(channel)
        try:
            shop.CreateCouponProduct(
                ec.CreateCouponProductRequest(
                    product_id=DEMO_PRODUCT,
                    display_name="10 CNY e-coupon",
                    face_value_minor=1000,
                    currency="CNY",
                    points_per_coupon=1000,
                    validity_days=30,
                    max_quantity_per_redemption=20,
                ),
                timeout=TIMEOUT,
                metadata=operator,
            )
        except grpc.RpcError as error:
            if remote_error(error).reason != "PRODUCT_ALREADY_EXISTS":
                raise
        shop.LinkCardAccount(
            ec.LinkCardAccountRequest(customer_id=DEMO_CUSTOMER, card_account_id=DEMO_CARD),
            timeout=TIMEOUT,
            metadata=operator,
        )


def grpcurl_commands(ecommerce: str) -> list[str]:
    """The commands `make run` prints; README.md shows the same ones."""
    grpcurl = (
        ".venv/bin/grpcurl -plaintext -H "
        '"authorization: Bearer $(.venv/bin/pointsbridge token --customer demo-customer)"'
    )
    service = "pointsbridge.ecommerce.v1.RedemptionService"

    def call(method: str, body: str) -> str:
        return f"{grpcurl} -d {shlex.quote(body)} {ecommerce} {service}/{method}"

    return [
        call(
            "QuoteRedemption",
            '{"customerId": "demo-customer", "productId": "coupon-10", "quantity": 3}',
        ),
        call(
            "RedeemPoints",
            '{"requestId": "demo-redeem-1", "customerId": "demo-customer", '
            '"productId": "coupon-10", "quantity": 3, "expectedPoints": "3000"}',
        ),
        call("ListCoupons", '{"customerId": "demo-customer"}'),
        call(
            "UseCoupon",
            '{"customerId": "demo-customer", "code": "<a code from ListCoupons>", '
            '"orderId": "order-1"}',
        ),
    ]


def run(args: argparse.Namespace) -> int:
    var = Path(args.var)
    var.mkdir(parents=True, exist_ok=True)
    # The children's logs come through a pipe; keep them readable on a terminal.
    log_format = ["--log-format", "text"] if sys.stderr.isatty() else []
    print(
        "WARNING: development mode: plaintext gRPC between the services and to clients,\n"
        f"         and a development token-signing key in {var / 'dev-keys'}.",
        file=sys.stderr,
    )
    # The servers read POINTSBRIDGE_NATS_URL themselves; say what it means for this run.
    nats_url = os.environ.get("POINTSBRIDGE_NATS_URL", "")
    print(
        f"Events: published to NATS JetStream at {safe_url(nats_url)} (POINTSBRIDGE_NATS_URL)."
        if nats_url
        else "Events: recorded in the outbox, not published; set POINTSBRIDGE_NATS_URL "
        "(e.g. nats://127.0.0.1:4222) to publish them.",
        file=sys.stderr,
    )
    keys = DevKeys(var / "dev-keys")
    keys.ensure()
    security = ["--insecure-plaintext", "true", "--token-public-key", str(keys.public_key)]
    cardpoints = Child(
        "cardpoints",
        [
            str(BIN / "cardpoints-server"),
            "--address",
            f"127.0.0.1:{args.cardpoints_port}",
            "--database-url",
            f"sqlite:///{var / 'cardpoints.db'}",
            "--metrics-address",
            f"127.0.0.1:{args.cardpoints_metrics_port}",
            *security,
            *log_format,
        ],
    )
    children = [cardpoints]
    try:
        cardpoints_port = cardpoints.wait_port()
        ecommerce = Child(
            "ecommerce",
            [
                str(BIN / "ecommerce-server"),
                "--address",
                f"127.0.0.1:{args.ecommerce_port}",
                "--database-url",
                f"sqlite:///{var / 'ecommerce.db'}",
                "--metrics-address",
                f"127.0.0.1:{args.ecommerce_metrics_port}",
                "--cardpoints-address",
                f"127.0.0.1:{cardpoints_port}",  # where cardpoints listens, and only there
                *security,
                "--cardpoints-token-file",
                str(keys.service_token),
                *log_format,
            ],
        )
        children.append(ecommerce)
        ecommerce_port = ecommerce.wait_port()
        seed(f"localhost:{cardpoints_port}", f"localhost:{ecommerce_port}", keys)
        storefront = Child(
            "storefront",
            [
                str(BIN / "storefront-server"),
                "--address",
                f"127.0.0.1:{args.storefront_port}",
                "--ecommerce-address",
                f"127.0.0.1:{ecommerce_port}",
                "--dev-sign-in",
                "true",
                *log_format,
            ],
        )
        children.append(storefront)
        storefront_url = f"http://127.0.0.1:{storefront.wait_port()}"
        demo_token = keys.issue(DEMO_CUSTOMER, ROLE_CUSTOMER, ttl=12 * 3600)
        commands = "\n\n".join(grpcurl_commands(f"localhost:{ecommerce_port}"))
        print(
            f"\nPointsBridge is up: cardpoints on localhost:{cardpoints_port}, "
            f"ecommerce on localhost:{ecommerce_port}.\n"
            f"Metrics: cardpoints on localhost:{cardpoints.metrics_port}, "
            f"ecommerce on localhost:{ecommerce.metrics_port} (GET /metrics).\n"
            f"Demo data: card {DEMO_CARD} ({DEMO_POINTS} points at first) linked to "
            f"{DEMO_CUSTOMER}; product {DEMO_PRODUCT} (1000 points per 10 CNY coupon).\n"
            f"Storefront: {storefront_url} - open this link to be signed in as "
            f"{DEMO_CUSTOMER} (development only):\n\n"
            f"  {storefront_url}/dev/sign-in?token={demo_token}\n\n"
            f"Try, from another terminal in this folder:\n\n{commands}\n\n"
            "Or run `make demo`. Ctrl-C stops every service.\n",
            flush=True,
        )
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        while not stop.is_set():
            if any(child.process.poll() is not None for child in children):
                print("a service exited; stopping", file=sys.stderr)
                return 1
            stop.wait(0.5)
        return 0
    finally:
        for child in reversed(children):  # callers first: storefront, ecommerce, cardpoints
            child.stop()
        print("stopped", file=sys.stderr)


def demo(args: argparse.Namespace) -> int:
    """Redeem three demo coupons and show what moved."""
    cardpoints, ecommerce = args.cardpoints, args.ecommerce
    keys = DevKeys(Path(args.var) / "dev-keys")
    if not keys.signing_key.exists():
        missing = f"no system has run here yet ({keys.signing_key} is missing)"
        print(f"error: {missing}; {_START_FIRST}", file=sys.stderr)
        return 1
    operator = keys.bearer("devstack", ROLE_ADMIN)
    customer = keys.bearer(DEMO_CUSTOMER, ROLE_CUSTOMER)
    with (
        grpc.insecure_channel(cardpoints) as cp_channel,
        grpc.insecure_channel(ecommerce) as ec_channel,
    ):
        bank = cp_grpc.CardPointsServiceStub(cp_channel)
        shop = ec_grpc.RedemptionServiceStub(ec_channel)

        def balance() -> int:
            account = bank.GetAccount(
                cp.GetAccountRequest(account_id=DEMO_CARD), timeout=TIMEOUT, metadata=operator
            )
            return account.account.balance

        before = balance()
        quote = shop.QuoteRedemption(
            ec.QuoteRedemptionRequest(
                customer_id=DEMO_CUSTOMER, product_id=DEMO_PRODUCT, quantity=3
            ),
            timeout=TIMEOUT,
            metadata=customer,
        ).quote
        redemption = shop.RedeemPoints(
            ec.RedeemPointsRequest(
                request_id=f"demo-{os.getpid()}-{time.time_ns()}",
                customer_id=DEMO_CUSTOMER,
                product_id=DEMO_PRODUCT,
                quantity=3,
                expected_points=quote.points_required,
            ),
            timeout=30,
            metadata=customer,
        ).redemption
        after = balance()
    print(
        f"quote:    3 x {DEMO_PRODUCT} = {quote.points_required} points"
        f" (ratio v{quote.ratio_version})"
    )
    print(f"balance:  {before} -> {after} points on {DEMO_CARD}")
    print(f"redeemed: {redemption.redemption_id} ({ec.RedemptionState.Name(redemption.state)})")
    for coupon in redemption.coupons:
        print(f"coupon:   {coupon.code}")
    return 0 if before - after == quote.points_required else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pointsbridge_cli.devstack", description=__doc__.splitlines()[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser(
        "run", help="start both services and the storefront, with demo data"
    )
    run_parser.add_argument("--var", default="var", help="folder for the SQLite databases")
    run_parser.add_argument("--cardpoints-port", type=int, default=50051, help="0 picks one")
    run_parser.add_argument("--ecommerce-port", type=int, default=50052, help="0 picks one")
    run_parser.add_argument(
        "--cardpoints-metrics-port", type=int, default=9151, help="Prometheus /metrics; 0 picks one"
    )
    run_parser.add_argument(
        "--ecommerce-metrics-port", type=int, default=9152, help="Prometheus /metrics; 0 picks one"
    )
    run_parser.add_argument(
        "--storefront-port", type=int, default=8080, help="the web pages, on loopback; 0 picks one"
    )
    run_parser.set_defaults(handler=run)
    demo_parser = commands.add_parser("demo", help="redeem three coupons on a running system")
    demo_parser.add_argument("--cardpoints", default="localhost:50051", help="host:port")
    demo_parser.add_argument("--ecommerce", default="localhost:50052", help="host:port")
    demo_parser.add_argument("--var", default="var", help="folder `run` keeps its keys in")
    demo_parser.set_defaults(handler=demo)
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except grpc.RpcError as error:
        failure = remote_error(error)
        unreached = failure.code is grpc.StatusCode.UNAVAILABLE and not failure.reason
        if args.command == "demo" and unreached:
            where = f"{args.cardpoints} and {args.ecommerce}"
            print(f"error: nothing answers at {where}; {_START_FIRST}", file=sys.stderr)
            return 1
        print(f"error: {failure.code.name} {failure.reason}: {failure.message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
