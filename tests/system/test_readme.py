"""The README's commands, run as written against `make run`'s stack (only the ports differ)."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest

from pointsbridge.cardpoints.v1 import cardpoints_pb2 as cp
from pointsbridge.cardpoints.v1 import cardpoints_pb2_grpc as cp_grpc
from servicekit.devtools.credentials import Credentials
from tests.support import ROOT, free_port
from tests.system.devstack import DevStack


def shell_commands(markdown: str) -> list[str]:
    """Each command of each ```sh block, with backslash continuations joined."""
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", markdown, flags=re.DOTALL):
        for command in re.sub(r"\\\n\s*", "", block).splitlines():
            if command.strip():
                commands.append(command.strip())
    return commands


README_GRPCURL = [c for c in shell_commands((ROOT / "README.md").read_text()) if "grpcurl" in c]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    stack = DevStack(tmp_path_factory.mktemp("devstack"))
    yield stack
    assert stack.stop() == 0
    assert "stopped" in stack.output


def run(stack: DevStack, command: str) -> dict[str, object]:
    command = command.replace("localhost:50051", f"localhost:{stack.cardpoints_port}")
    command = command.replace("localhost:50052", f"localhost:{stack.ecommerce_port}")
    # `pointsbridge token` signs with the stack's key, wherever its var/ folder is.
    env = {**os.environ, "POINTSBRIDGE_SIGNING_KEY": str(keys(stack).signing_key)}
    done = subprocess.run(
        command, shell=True, cwd=ROOT, capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 0, (command, done.stdout, done.stderr)
    result: dict[str, object] = json.loads(done.stdout) if done.stdout.strip() else {}
    return result


def keys(stack: DevStack) -> Credentials:
    return Credentials(stack.var / "dev-keys")


def balance(stack: DevStack, account_id: str) -> int:
    with grpc.insecure_channel(f"127.0.0.1:{stack.cardpoints_port}") as channel:
        account = cp_grpc.CardPointsServiceStub(channel).GetAccount(
            cp.GetAccountRequest(account_id=account_id),
            timeout=10,
            metadata=keys(stack).bearer("tester", "admin"),
        )
    return account.account.balance


def test_readme_has_the_commands_this_test_runs() -> None:
    methods = [c.split("/")[-1] for c in README_GRPCURL]
    assert methods[:4] == ["QuoteRedemption", "RedeemPoints", "ListCoupons", "UseCoupon"]
    assert {"OpenAccount", "CreditPoints", "ListTransactions"} <= set(methods)


def test_the_printed_link_opens_the_storefront_signed_in(stack: DevStack) -> None:
    with httpx.Client(timeout=10) as client:
        page = client.get(stack.sign_in_url, follow_redirects=True)
        assert page.status_code == 200
        assert str(page.url) == f"{stack.storefront_url}/products"
        assert "Signed in as demo-customer" in page.text
        assert "100,000" in page.text
        assert "/redeem/coupon-10" in page.text
        health = client.get(f"{stack.storefront_url}/healthz")
        assert health.json() == {"status": "ok"}
    assert stack.storefront_url.startswith("http://127.0.0.1:")


def test_the_readme_walkthrough_redeems_three_coupons(stack: DevStack) -> None:
    quote_cmd, redeem_cmd, list_cmd, use_cmd = README_GRPCURL[:4]
    before = balance(stack, "demo-card")
    assert before == 100_000

    quote = run(stack, quote_cmd)["quote"]
    assert isinstance(quote, dict)
    assert quote["points_required"] == "3000"
    assert quote["available_points"] == "100000"

    redemption = run(stack, redeem_cmd)["redemption"]
    assert isinstance(redemption, dict)
    assert redemption["state"] == "REDEMPTION_STATE_COMPLETED"
    codes = [c["code"] for c in redemption["coupons"]]
    assert len(codes) == len(set(codes)) == 3
    assert balance(stack, "demo-card") == before - 3000

    again = run(stack, redeem_cmd)["redemption"]
    assert isinstance(again, dict)
    assert again["redemption_id"] == redemption["redemption_id"]
    assert balance(stack, "demo-card") == before - 3000

    listed = run(stack, list_cmd)["coupons"]
    assert isinstance(listed, list)
    assert {c["code"] for c in listed} == set(codes)

    used = run(stack, use_cmd.replace("<CODE>", codes[0]))["coupon"]
    assert isinstance(used, dict)
    assert used["state"] == "COUPON_STATE_USED"
    assert used["used_order_id"] == "order-1"


def test_the_readme_card_points_commands(stack: DevStack) -> None:
    for command in README_GRPCURL[4:]:
        run(stack, command)
    assert balance(stack, "bob-card") == 5000


def test_make_run_prints_commands_that_work(stack: DevStack) -> None:
    printed = [line for line in stack.output.splitlines() if line.startswith(".venv/bin/grpcurl")]
    assert [line.split("/")[-1] for line in printed] == [
        "QuoteRedemption",
        "RedeemPoints",
        "ListCoupons",
        "UseCoupon",
    ]
    quote = run(stack, printed[0])["quote"]
    assert isinstance(quote, dict)
    assert quote["ratio_version"] == "1"
    assert Path(ROOT / ".venv/bin/grpcurl").exists()
    assert "Events: recorded in the outbox, not published" in stack.output


def test_make_demo_redeems_and_reports(stack: DevStack) -> None:
    before = balance(stack, "demo-card")
    done = subprocess.run(
        [
            str(ROOT / ".venv/bin/python"),
            "-m",
            "pointsbridge_cli.devstack",
            "demo",
            "--cardpoints",
            f"localhost:{stack.cardpoints_port}",
            "--ecommerce",
            f"localhost:{stack.ecommerce_port}",
            "--var",
            str(stack.var),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert f"balance:  {before} -> {before - 3000} points on demo-card" in done.stdout
    codes = [line.split()[-1] for line in done.stdout.splitlines() if line.startswith("coupon:")]
    assert len(set(codes)) == 3


def security_blocks() -> list[str]:
    """The ```sh blocks of the README's Security model section, in order."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Security model", 1)[1].split("\n## ", 1)[0]
    return [
        re.sub(r"\\\n\s*", "", b).strip()
        for b in re.findall(r"```sh\n(.*?)```", section, flags=re.S)
    ]


def test_the_readme_security_section_runs_as_written(tmp_path: Path) -> None:
    certs, cardpoints, ecommerce, operator = security_blocks()
    assert certs == "make certs"
    assert cardpoints.startswith(".venv/bin/cardpoints-server ")
    assert ecommerce.startswith(".venv/bin/ecommerce-server ")
    # The checkout as a reader has it: only the ports are made free ones here, and
    # `make certs` runs the module it runs, in a scratch folder.
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    ports = {"50061": str(free_port()), "50062": str(free_port())}

    def as_here(command: str) -> str:
        for written, actual in ports.items():
            command = command.replace(f":{written}", f":{actual}")
        return command

    env = {k: v for k, v in os.environ.items() if not k.startswith("POINTSBRIDGE_")}
    subprocess.run(
        [str(ROOT / ".venv/bin/python"), "-m", "servicekit.devcerts", "--out", "certs"],
        cwd=tmp_path,
        check=True,
        timeout=60,
        capture_output=True,
    )
    servers = []
    try:
        for command, name in ((cardpoints, "cardpoints"), (ecommerce, "ecommerce")):
            log = (tmp_path / f"{name}.log").open("wb")
            servers.append(
                subprocess.Popen(
                    shlex.split(as_here(command)), cwd=tmp_path, env=env, stdout=log, stderr=log
                )
            )
            port = int(ports["50061" if name == "cardpoints" else "50062"])
            deadline = time.monotonic() + 60
            while b"serving on port" not in (tmp_path / f"{name}.log").read_bytes():
                assert servers[-1].poll() is None, (tmp_path / f"{name}.log").read_text()
                assert time.monotonic() < deadline, (tmp_path / f"{name}.log").read_text()
                time.sleep(0.1)
            assert f"port {port}".encode() in (tmp_path / f"{name}.log").read_bytes()
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", f"set -x\n{as_here(operator)}"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-4000:]
        assert re.search(r"tess-card\s+Tess Lin\s+ACTIVE\s+1400\s", done.stdout), done.stdout
        assert re.search(r"State\s+COMPLETED", done.stdout), done.stdout
        assert "INSECURE" not in (tmp_path / "ecommerce.log").read_text()
        # The databases are the section's own, under var/tls/, not make run's.
        assert sorted(p.name for p in (tmp_path / "var" / "tls").glob("*.db")) == [
            "cardpoints.db",
            "ecommerce.db",
        ]
        assert not (tmp_path / "var" / "cardpoints.db").exists()
    finally:
        for server in servers:
            server.send_signal(signal.SIGTERM)
        for server in servers:
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
