"""The README's commands, run as written against `make run`'s stack (only the ports differ)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest

from pointsbridge.cardpoints.v1 import cardpoints_pb2 as cp
from pointsbridge.cardpoints.v1 import cardpoints_pb2_grpc as cp_grpc
from pointsbridge_cli.devstack import DevKeys
from tests.support import ROOT
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


def keys(stack: DevStack) -> DevKeys:
    return DevKeys(stack.var / "dev-keys")


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
    assert balance(stack, "alice-card") == 5000


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
