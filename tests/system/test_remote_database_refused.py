"""The chaos harness and the bench refuse a PostgreSQL server off this machine as a usage error."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest

from bench.options import parse_options as bench_options
from chaos.plan import parse_options as chaos_options

REMOTE = "postgresql://postgres@192.0.2.1:5432/test"


@pytest.mark.parametrize("parse", [chaos_options, bench_options], ids=["chaos", "bench"])
def test_a_remote_pg_url_is_exit_2_with_one_sentence(
    parse: Callable[[Sequence[str]], Any], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        parse(["--pg-url", REMOTE])
    assert stopped.value.code == 2
    said = capsys.readouterr().err
    assert "--pg-url: only a server on 127.0.0.1 will do, not 192.0.2.1" in said
    assert "Traceback" not in said


@pytest.mark.parametrize("parse", [chaos_options, bench_options], ids=["chaos", "bench"])
def test_a_local_pg_url_is_taken(parse: Callable[[Sequence[str]], Any]) -> None:
    assert parse(["--pg-url", "postgresql://postgres@127.0.0.1:5432/test"]).pg_url.endswith(
        "127.0.0.1:5432/test"
    )
