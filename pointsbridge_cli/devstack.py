"""The whole system on one machine for development: `make run` and `make demo`.

python -m pointsbridge_cli.devstack run   # both services and the storefront, SQLite under var/
python -m pointsbridge_cli.devstack demo  # a scripted redemption against a running system
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import grpc

from pointsbridge_cli.demo import (
    DEMO_CARD,
    DEMO_CUSTOMER,
    DEMO_POINTS,
    DEMO_PRODUCT,
    START_FIRST,
    demo,
    seed,
)
from servicekit.auth import ROLE_CUSTOMER
from servicekit.devtools.credentials import Credentials
from servicekit.devtools.launch import BIN, ServiceProcess
from servicekit.status import remote_error
from servicekit.streams import safe_url

SERVICE_TOKEN_TTL = 7 * 86_400


def start_child(name: str, command: Sequence[str]) -> ServiceProcess:
    """A service process whose output is relayed to ours.

    Tied to this process (servicekit.lifeline): if it dies before stopping the child
    (SIGKILL, a closed terminal), the child is sent SIGTERM and frees its port. In its
    own session, so that Ctrl-C reaches us and we stop the children in order. Start
    children from the main thread: the tie follows the thread that started the child.
    """
    return ServiceProcess(name, command, own_session=True, cwd=None).spawn()


def wait_port(process: ServiceProcess) -> int:
    try:
        return process.wait_port(timeout=60)
    except RuntimeError:
        code = process.process.returncode
        raise SystemExit(f"{process.name} did not start (exit code {code})") from None


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
    keys = Credentials.ensure(var / "dev-keys", service_ttl=SERVICE_TOKEN_TTL)
    cardpoints = start_child(
        "cardpoints",
        [
            str(BIN / "cardpoints-server"),
            "--address",
            f"127.0.0.1:{args.cardpoints_port}",
            "--database-url",
            f"sqlite:///{var / 'cardpoints.db'}",
            "--metrics-address",
            f"127.0.0.1:{args.cardpoints_metrics_port}",
            *keys.server_flags,
            *log_format,
        ],
    )
    children = [cardpoints]
    try:
        cardpoints_port = wait_port(cardpoints)
        ecommerce = start_child(
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
                *keys.ecommerce_flags,
                *log_format,
            ],
        )
        children.append(ecommerce)
        ecommerce_port = wait_port(ecommerce)
        seed(f"localhost:{cardpoints_port}", f"localhost:{ecommerce_port}", keys)
        storefront = start_child(
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
        storefront_url = f"http://127.0.0.1:{wait_port(storefront)}"
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
            if not all(child.running for child in children):
                print("a service exited; stopping", file=sys.stderr)
                return 1
            stop.wait(0.5)
        return 0
    finally:
        for child in reversed(children):  # callers first: storefront, ecommerce, cardpoints
            child.stop(timeout=30)
        print("stopped", file=sys.stderr)


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
            print(f"error: nothing answers at {where}; {START_FIRST}", file=sys.stderr)
            return 1
        print(f"error: {failure.code.name} {failure.reason}: {failure.message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
