"""Every command explains itself: --help exits 0, shows an example, and gives one per option."""

from __future__ import annotations

import re
import subprocess
from typing import Any

import pytest
from typer.core import TyperCommand, TyperGroup
from typer.main import get_command
from typer.testing import CliRunner

from pointsbridge.cardpoints.v1 import cardpoints_pb2 as cp
from pointsbridge.ecommerce.v1 import ecommerce_pb2 as ec
from pointsbridge_cli.failures import EXIT_CODE_MEANINGS
from pointsbridge_cli.main import app
from tests.cli.conftest import CLI, flat


def _walk(command: object, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], object]:
    found: dict[tuple[str, ...], object] = {path: command}
    if isinstance(command, TyperGroup):
        for name, sub in command.commands.items():
            found.update(_walk(sub, (*path, name)))
    return found


COMMANDS = _walk(get_command(app))
LEAVES = {path: c for path, c in COMMANDS.items() if isinstance(c, TyperCommand)}


def test_the_commands_are_the_ones_operators_were_promised() -> None:
    assert {" ".join(path) for path in LEAVES} == {
        *(f"accounts {c}" for c in ("open", "credit", "show", "list", "freeze", "unfreeze")),
        "accounts close",
        "accounts transactions",
        *(f"products {c}" for c in ("create", "list", "set-ratio", "ratios")),
        "products activate",
        "products deactivate",
        "cards link",
        "quote",
        "redeem",
        "redemptions show",
        "redemptions list",
        "coupons list",
        "coupons use",
        "coupons refund",
        "reconcile",
        "token",
        "events setup",
        "events tail",
    }


@pytest.mark.parametrize("path", sorted(COMMANDS), ids=lambda p: " ".join(p) or "pointsbridge")
def test_help_exits_0(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage: pointsbridge" in result.output
    if path in LEAVES:
        assert "Example:" in result.output
        assert f"pointsbridge {' '.join(path)}" in flat(result.output)


@pytest.mark.parametrize("path", sorted(LEAVES), ids=" ".join)
def test_every_command_has_json_and_explains_each_parameter_with_an_example(
    path: tuple[str, ...],
) -> None:
    command = LEAVES[path]
    assert isinstance(command, TyperCommand)
    assert "json" in {param.name for param in command.params}
    for param in command.params:
        explained = getattr(param, "help", None) or ""
        assert "e.g." in explained, (path, param.name, explained)


def test_the_installed_command_lists_the_exit_codes_in_its_help() -> None:
    result = subprocess.run(
        [str(CLI), "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    shown = flat(result.stdout)
    for code, meaning in EXIT_CODE_MEANINGS.items():
        assert f"{int(code)}: {meaning}" in shown


def test_a_group_without_a_command_shows_its_help() -> None:
    result = subprocess.run(
        [str(CLI), "coupons"], capture_output=True, text=True, timeout=60, check=False
    )
    assert "Usage: pointsbridge coupons" in result.stdout + result.stderr
    for command in ("list", "use", "refund"):
        assert command in result.stdout + result.stderr


def _option_help(path: tuple[str, ...], name: str) -> str:
    command = LEAVES[path]
    assert isinstance(command, TyperCommand)
    [option] = [p for p in command.params if p.name == name]
    return str(getattr(option, "help", ""))


def test_no_flag_shows_a_value_type() -> None:
    for path in COMMANDS:
        shown = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"}).output
        assert "<bool>" not in shown, path


# What each command prints with --json: the message its --json example must read from.
_JSON_OUTPUT: dict[str, Any] = {
    "accounts open": cp.OpenAccountResponse,
    "accounts credit": cp.CreditPointsResponse,
    "accounts show": cp.GetAccountResponse,
    "accounts list": cp.ListAccountsResponse,
    "accounts freeze": cp.SetAccountStateResponse,
    "accounts unfreeze": cp.SetAccountStateResponse,
    "accounts close": cp.SetAccountStateResponse,
    "accounts transactions": cp.ListTransactionsResponse,
    "products create": ec.CreateCouponProductResponse,
    "products list": ec.ListCouponProductsResponse,
    "products set-ratio": ec.SetExchangeRatioResponse,
    "products ratios": ec.ListExchangeRatiosResponse,
    "products activate": ec.SetCouponProductActiveResponse,
    "products deactivate": ec.SetCouponProductActiveResponse,
    "cards link": ec.LinkCardAccountResponse,
    "quote": ec.QuoteRedemptionResponse,
    "redeem": ec.RedeemPointsResponse,
    "redemptions show": ec.GetRedemptionResponse,
    "redemptions list": ec.ListRedemptionsResponse,
    "coupons list": ec.ListCouponsResponse,
    "coupons use": ec.UseCouponResponse,
    "coupons refund": ec.RefundCouponsResponse,
}


def _resolves(message: Any, jq: str) -> bool:
    """Whether a jq path such as .redemption.coupons[].code names fields of the message."""
    descriptor = message.DESCRIPTOR
    for step in jq.strip("'").lstrip(".").split("."):
        field = descriptor.fields_by_name.get(step.removesuffix("[]"))
        if field is None or step.endswith("[]") != field.is_repeated:
            return False
        descriptor = field.message_type
        if descriptor is None:
            return True
    return True


@pytest.mark.parametrize("path", sorted(LEAVES), ids=" ".join)
def test_each_json_example_reads_a_field_its_command_prints(path: tuple[str, ...]) -> None:
    explained = _option_help(path, "json")
    example = re.search(r"--json \| jq (?:-r )?(\S+?)`", explained)
    assert example is not None, explained
    name = " ".join(path)
    if name in _JSON_OUTPUT:
        assert "protobuf JSON" in explained
        assert _resolves(_JSON_OUTPUT[name], example[1]), (name, example[1])
    else:  # token and reconcile print JSON of their own making
        assert "protobuf" not in explained, name


def test_request_id_examples_fit_their_command() -> None:
    examples = {
        " ".join(path): re.search(r"--request-id (\S+)\.", _option_help(path, "request_id"))
        for path in LEAVES
        if any(p.name == "request_id" for p in LEAVES[path].params)
    }
    named = {command: found[1] for command, found in examples.items() if found}
    assert named == {
        "accounts credit": "welcome-2026-01",
        "redeem": "order-1001",
        "coupons refund": "order-1001-refund-1",
    }


@pytest.mark.parametrize(
    "args",
    [
        ("redeem", "alice@example", "coffee-10", "-2"),
        ("quote", "alice@example", "coffee-10", "-2"),
        ("accounts", "credit", "alice-card", "-500"),
        ("products", "set-ratio", "coffee-10", "-1"),
    ],
)
def test_a_negative_number_is_a_bad_number_not_an_unknown_option(args: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    assert result.exit_code == 2
    assert "No such option" not in result.output
    assert "must be a whole number from 1 to" in result.output
    assert f"got '{args[-1]}'" in result.output
    # A misspelt option is still called what it is.
    typo = CliRunner().invoke(app, [*args[:-1], "1", "--bogus"], env={"COLUMNS": "200"})
    assert typo.exit_code == 2 and "No such option: --bogus" in typo.output
