"""The token file: picked up when it changes, kept through a half-written rotation."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from servicekit.config import ConfigError
from servicekit.token_file import TokenFile
from tests.auth import Callers


def test_a_changed_file_is_read_and_an_emptied_one_keeps_the_token_held(
    tmp_path: Path, auth: Callers
) -> None:
    path = tmp_path / "service.token"
    first, second = auth.token("ecommerce", "service", ttl=60), auth.token("x", "service")
    path.write_text(first + "\n")
    now = [0.0]
    tokens = TokenFile(str(path), clock=lambda: now[0])
    assert tokens.token() == first
    assert tokens.expires_at is not None
    now[0] = tokens.expires_at - 10
    assert tokens.seconds_left() == pytest.approx(10)
    assert tokens.warn_within() == pytest.approx(15)  # a quarter of a 60 s life
    path.write_text("")  # a rotation caught half-way
    assert tokens.token() == first
    fresh = tmp_path / "service.new"
    fresh.write_text(second)
    os.replace(fresh, path)
    assert tokens.token() == second
    assert not tokens.reload()  # nothing new since


def test_an_empty_or_missing_file_is_refused_at_start(tmp_path: Path) -> None:
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError, match="empty"):
        TokenFile(str(tmp_path / "empty"))
    with pytest.raises(ConfigError, match="cannot read"):
        TokenFile(str(tmp_path / "missing"))
