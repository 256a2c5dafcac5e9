"""The throwaway databases of the tools (chaos, bench): SQLite files, or loopback PostgreSQL."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from servicekit.devtools.databases import fresh_databases


def test_sqlite_databases_are_one_file_per_service_in_a_folder_made_for_them(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "run" / "dbs"
    with fresh_databases("sqlite", folder, "tool") as dbs:
        assert folder.is_dir()
        assert (dbs.kind, dbs.cardpoints, dbs.ecommerce) == (
            "sqlite",
            f"sqlite:///{folder / 'cardpoints'}.db",
            f"sqlite:///{folder / 'ecommerce'}.db",
        )


def test_an_unknown_kind_of_database_is_refused(tmp_path: Path) -> None:
    refusal = pytest.raises(ValueError, match="unknown database kind 'mysql'")
    with refusal, fresh_databases("mysql", tmp_path, "tool"):
        raise AssertionError("no databases for an unknown kind")


def test_a_postgresql_server_off_loopback_is_refused_before_any_database_is_made(
    tmp_path: Path,
) -> None:
    # 192.0.2.1 is a documentation address: the refusal comes before any connection.
    remote = "postgresql://postgres@192.0.2.1:5432/postgres"
    refusal = pytest.raises(
        ValueError, match=re.escape("only a server on 127.0.0.1 will do, not 192.0.2.1")
    )
    with refusal, fresh_databases("postgres", tmp_path, "tool", remote):
        raise AssertionError("no databases on a remote server")
