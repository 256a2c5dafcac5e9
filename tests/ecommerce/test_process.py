"""The e-commerce server as real OS processes: --help, settings from the environment, replicas."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

import grpc
import pytest

from cardpoints.entrypoints.server import Settings as CardpointsSettings
from cardpoints.entrypoints.server import parse_settings as parse_cardpoints_settings
from cardpoints.entrypoints.server import start as start_cardpoints
from ecommerce.entrypoints.server import Settings, parse_settings
from pointsbridge.cardpoints.v1 import cardpoints_pb2 as cpb
from pointsbridge.cardpoints.v1 import cardpoints_pb2_grpc as cpb_grpc
from pointsbridge.ecommerce.v1 import ecommerce_pb2 as pb
from pointsbridge.ecommerce.v1 import ecommerce_pb2_grpc as pb_grpc
from servicekit.status import remote_error
from tests.auth import Callers
from tests.support import ROOT, start_server

MODULE = [sys.executable, "-m", "ecommerce.entrypoints.server"]


def test_help_documents_every_setting_with_its_environment_variable() -> None:
    shown = subprocess.run(
        [*MODULE, "--help"], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    for setting in fields(Settings):
        assert f"--{setting.name.replace('_', '-')}" in shown
        assert f"POINTSBRIDGE_ECOMMERCE_{setting.name.upper()}" in " ".join(shown.split())


def test_flags_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POINTSBRIDGE_ECOMMERCE_DATABASE_URL", "sqlite:///from-env.db")
    monkeypatch.setenv("POINTSBRIDGE_ECOMMERCE_DEDUCT_TIMEOUT", "2.5")
    monkeypatch.setenv("POINTSBRIDGE_ECOMMERCE_MIGRATE", "false")
    settings, migrate_only = parse_settings(["--deduct-timeout", "1.5"])
    assert settings == Settings(
        database_url="sqlite:///from-env.db", deduct_timeout=1.5, migrate=False
    )
    assert not migrate_only


@pytest.mark.parametrize("flag", ["--group-commit", "--workers"])
@pytest.mark.parametrize("value", ["0", "-3", "many", "1.5"])
def test_a_count_below_one_is_refused_by_name(
    flag: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as refused:
        parse_settings([flag, value])
    assert refused.value.code == 2
    error = capsys.readouterr().err
    assert flag in error and f"at least 1, got '{value}'" in error
    settings = parse_settings([flag, "1"])[0]
    assert getattr(settings, flag.removeprefix("--").replace("-", "_")) == 1


async def test_two_replicas_on_one_database_redeem_each_request_once_and_drain(
    make_db_url: Callable[[str], str],
    auth: Callers,
) -> None:
    cardpoints = await start_cardpoints(
        CardpointsSettings(
            **auth.server_security, address="127.0.0.1:0", database_url=make_db_url("cardpoints")
        )
    )
    url = make_db_url("ecommerce")
    args = [*MODULE, "--address", "127.0.0.1:0", "--cardpoints-address"]
    env = {"POINTSBRIDGE_ECOMMERCE_DATABASE_URL": url}
    # One after the other: the first one migrates the shared database.
    replicas = [
        start_server([*args, f"127.0.0.1:{cardpoints.port}", *auth.ecommerce_flags], env)
        for _ in range(2)
    ]
    channels = [auth.channel(f"127.0.0.1:{r.port}") for r in replicas]
    to_cardpoints = auth.channel(f"127.0.0.1:{cardpoints.port}")
    try:
        points_admin = cpb_grpc.CardPointsAdminServiceStub(to_cardpoints)
        await points_admin.OpenAccount(
            cpb.OpenAccountRequest(account_id="card-1", holder_name="A"), timeout=10
        )
        await points_admin.CreditPoints(
            cpb.CreditPointsRequest(request_id="seed", account_id="card-1", points=10_000),
            timeout=10,
        )
        admin = pb_grpc.EcommerceAdminServiceStub(channels[0])
        await admin.CreateCouponProduct(
            pb.CreateCouponProductRequest(
                product_id="coupon-10",
                display_name="10 off",
                face_value_minor=1000,
                currency="CNY",
                points_per_coupon=1000,
                validity_days=30,
                max_quantity_per_redemption=20,
            ),
            timeout=10,
        )
        await admin.LinkCardAccount(
            pb.LinkCardAccountRequest(customer_id="alice", card_account_id="card-1"), timeout=10
        )
        stubs = [pb_grpc.RedemptionServiceStub(c) for c in channels]

        def redeem(i: int) -> pb.RedeemPointsRequest:
            return pb.RedeemPointsRequest(
                request_id=f"r-{i}", customer_id="alice", product_id="coupon-10", quantity=1
            )

        # 16 redemptions, each sent to both replicas at once; the card covers 10.
        results = await asyncio.gather(
            *(stubs[k].RedeemPoints(redeem(i), timeout=30) for i in range(16) for k in (0, 1)),
            return_exceptions=True,
        )
        completed: set[str] = set()
        for first, second in zip(results[::2], results[1::2], strict=True):
            if isinstance(first, pb.RedeemPointsResponse):
                assert isinstance(second, pb.RedeemPointsResponse)
                assert second.redemption == first.redemption
                completed.add(first.redemption.redemption_id)
            else:
                assert isinstance(first, grpc.aio.AioRpcError)
                assert isinstance(second, grpc.aio.AioRpcError)
                assert remote_error(first).reason == remote_error(second).reason
                assert remote_error(first).reason == "INSUFFICIENT_POINTS"
        assert len(completed) == 10
        ledger = await cpb_grpc.CardPointsServiceStub(to_cardpoints).ListTransactions(
            cpb.ListTransactionsRequest(account_id="card-1"), timeout=10
        )
        deductions = [e for e in ledger.transactions if e.type == cpb.ENTRY_TYPE_DEDUCTION]
        assert {e.request_id for e in deductions} == {f"redemption:{r}" for r in completed}
        assert len(deductions) == 10
        coupons = await stubs[1].ListCoupons(pb.ListCouponsRequest(customer_id="alice"), timeout=10)
        assert {c.redemption_id for c in coupons.coupons} == completed
        assert len(coupons.coupons) == 10
    finally:
        for channel in [*channels, to_cardpoints]:
            await channel.close()
        exit_codes = [r.stop() for r in replicas]
        await cardpoints.stop(1)
    assert exit_codes == [0, 0], [r.log() for r in replicas]


@pytest.mark.parametrize(
    ("argv", "plaintext", "migrate"),
    [
        (["--insecure-plaintext"], True, True),
        (["--insecure-plaintext", "true", "--migrate", "false"], True, False),
        (["--migrate", "--insecure-plaintext"], True, True),
        (["--migrate=no", "--insecure-plaintext=yes"], True, False),
        (["--insecure-plaintext", "off", "--workers", "2"], False, True),
        ([], False, True),
    ],
)
def test_switches_take_a_value_or_none(argv: list[str], plaintext: bool, migrate: bool) -> None:
    for parse in (parse_settings, parse_cardpoints_settings):
        settings = parse(argv)[0]
        assert (settings.insecure_plaintext, settings.migrate) == (plaintext, migrate), parse


def test_switches_show_as_switches_in_help() -> None:
    shown = subprocess.run(
        [*MODULE, "--help"], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    assert "--insecure-plaintext [true|false]" in shown
    assert "--migrate [true|false]" in shown


@pytest.mark.parametrize(
    ("module", "flags", "refusal"),
    [
        # ecommerce without a way to authenticate to cardpoints
        (MODULE, ["--token-public-key", "{public_key}"], "--cardpoints-token-file"),
        # cardpoints without the key that checks tokens
        ([sys.executable, "-m", "cardpoints.entrypoints.server"], [], "--token-public-key"),
    ],
)
def test_a_refusal_to_start_is_not_preceded_by_warnings(
    tmp_path: Path, module: list[str], flags: list[str], refusal: str, auth: Callers
) -> None:
    refused = subprocess.run(
        [
            *module,
            "--insecure-plaintext",
            *(flag.format(public_key=auth.public_key) for flag in flags),
            "--database-url",
            f"sqlite:///{tmp_path}/db.db",
            "--address",
            "127.0.0.1:0",
            "--log-format",
            "text",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert refused.returncode == 2, refused.stderr
    # One line, the refusal: no warning about plaintext or a token it does not have.
    assert [line for line in refused.stderr.splitlines() if line.strip()] == [
        line for line in refused.stderr.splitlines() if refusal in line
    ], refused.stderr
    assert "INSECURE" not in refused.stderr
