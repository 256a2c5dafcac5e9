"""docs/USAGE.md, run block by block in one shell session against `make run`'s stack."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from pointsbridge.cardpoints.v1 import cardpoints_pb2 as cp
from pointsbridge.cardpoints.v1 import cardpoints_pb2_grpc as cp_grpc
from pointsbridge.ecommerce.v1 import ecommerce_pb2 as ec
from pointsbridge.ecommerce.v1 import ecommerce_pb2_grpc as ec_grpc
from servicekit.devtools.credentials import Credentials
from tests.support import ROOT
from tests.system.devstack import DevStack
from tests.system.test_readme import README_GRPCURL, balance, run

USAGE = ROOT / "docs" / "USAGE.md"


def sh_blocks(markdown: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", markdown, flags=re.DOTALL)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    stack = DevStack(tmp_path_factory.mktemp("usage-stack"))
    yield stack
    assert stack.stop() == 0


def test_the_walkthrough_runs_as_written(stack: DevStack, tmp_path: Path) -> None:
    # A reader who followed the README first: its commands ran on the same system.
    for command in README_GRPCURL:
        run(stack, command.replace("<CODE>", _first_issued_code(stack)))
    blocks = sh_blocks(USAGE.read_text())
    assert len(blocks) >= 10
    script = "\n".join(blocks)
    # Only the ports differ from what a reader types: the stack picked free ones.
    for written, actual in (
        ("localhost:50051", stack.cardpoints_port),
        ("localhost:50052", stack.ecommerce_port),
        ("localhost:9151", stack.cardpoints_metrics),
        ("localhost:9152", stack.ecommerce_metrics),
    ):
        script = script.replace(written, f"localhost:{actual}")
    # A scratch folder stands in for the checkout, so the files the walkthrough writes
    # stay out of the repository.
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("POINTSBRIDGE_")},
        "POINTSBRIDGE_SIGNING_KEY": str(Credentials(stack.var / "dev-keys").signing_key),
        "POINTSBRIDGE_CLI_CARDPOINTS": f"localhost:{stack.cardpoints_port}",
        "POINTSBRIDGE_CLI_ECOMMERCE": f"localhost:{stack.ecommerce_port}",
    }
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", f"set -x\n{script}"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    out = done.stdout
    # The walkthrough writes its scratch files elsewhere, never into the checkout.
    assert sorted(p.name for p in tmp_path.iterdir()) == [".venv"]

    # What the prose promises, checked against what the commands printed.
    assert "ratio" in out.lower()
    assert "a customer may not read the bank's books (exit 8)" in out
    assert "refused as already used (exit 5)" in out
    assert "INVALID_FIELD" in done.stdout + done.stderr
    assert re.search(r"^ecommerce_redemptions_total\{state=\"COMPLETED\"\} [1-9]", out, re.M)
    assert re.search(r"^ecommerce_coupons_total\{event=\"voided\"\} 1\.0", out, re.M)
    assert re.search(r"^cardpoints_points_total\{movement=\"deducted\"\} [1-9]", out, re.M)
    assert "clean: both systems agree" in out

    with grpc.insecure_channel(f"127.0.0.1:{stack.cardpoints_port}") as channel:
        account = cp_grpc.CardPointsServiceStub(channel).GetAccount(
            cp.GetAccountRequest(account_id="alice-card"),
            timeout=10,
            metadata=Credentials(stack.var / "dev-keys").bearer("tester", "admin"),
        )
    assert account.account.balance == 8050
    # The README's own account and demo redemption are untouched by the walkthrough.
    assert balance(stack, "bob-card") == 5000
    assert balance(stack, "demo-card") == 100_000 - 3000


def _first_issued_code(stack: DevStack) -> str:
    """A coupon of the demo customer's, for the README's <CODE>, once it redeemed one."""
    with grpc.insecure_channel(f"127.0.0.1:{stack.ecommerce_port}") as channel:
        listed = ec_grpc.RedemptionServiceStub(channel).ListCoupons(
            ec.ListCouponsRequest(customer_id="demo-customer", state=ec.COUPON_STATE_ISSUED),
            timeout=10,
            metadata=Credentials(stack.var / "dev-keys").bearer("tester", "admin"),
        )
    return listed.coupons[0].code if listed.coupons else "<CODE>"
