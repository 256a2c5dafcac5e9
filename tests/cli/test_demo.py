"""`make demo` with nothing to talk to says what to do first."""

from __future__ import annotations

from pathlib import Path

import pytest

from pointsbridge_cli import devstack
from servicekit.devtools.credentials import Credentials
from tests.support import free_port


def test_demo_with_nothing_running_says_to_start_make_run_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nowhere = [
        "--cardpoints",
        f"127.0.0.1:{free_port()}",
        "--ecommerce",
        f"127.0.0.1:{free_port()}",
    ]
    # Never run here: not even the development keys exist.
    assert devstack.main(["demo", "--var", str(tmp_path), *nowhere]) == 1
    assert "start `make run` first" in capsys.readouterr().err
    # Run before, stopped now: the keys are there, the services are not.
    Credentials.ensure(tmp_path / "dev-keys")
    assert devstack.main(["demo", "--var", str(tmp_path), *nowhere]) == 1
    said = capsys.readouterr().err
    assert said.startswith("error: nothing answers at 127.0.0.1:"), said
    assert "start `make run` first" in said
    assert "UNAVAILABLE" not in said
