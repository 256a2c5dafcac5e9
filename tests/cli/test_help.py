"""Every command explains itself: --help exits 0, shows an example, and gives one per option."""

from __future__ import annotations

import subprocess

import pytest
from typer.core import TyperCommand, TyperGroup
from typer.main import get_command
from typer.testing import CliRunner

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
