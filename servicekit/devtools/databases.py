"""Databases for tests and tools: PostgreSQL databases made and dropped for one run,
and the newest migration of a service."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from servicekit.db import normalize_url

PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
SERVICES = ("cardpoints", "ecommerce")


def create_database(server_url: str, name: str) -> str:
    """Create an empty PostgreSQL database on the server of `server_url`; its URL."""
    admin = create_engine(normalize_url(server_url), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    finally:
        admin.dispose()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def drop_database(url: str) -> None:
    """Drop the PostgreSQL database of `url`, closing any connection still open to it."""
    parsed = make_url(url)
    admin = create_engine(
        normalize_url(parsed.set(database="postgres").render_as_string(hide_password=False)),
        isolation_level="AUTOCOMMIT",
    )
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)')
    finally:
        admin.dispose()


def head_revision(script_location: str) -> str | None:
    """The newest migration of one service."""
    config = Config()
    config.set_main_option("script_location", script_location)
    return ScriptDirectory.from_config(config).get_current_head()


@dataclass(frozen=True)
class Databases:
    kind: str
    cardpoints: str
    ecommerce: str


def require_local_server(pg_url: str) -> None:
    """Refuse (ValueError) a PostgreSQL server that is not on this machine's loopback."""
    host = make_url(normalize_url(pg_url)).host
    if host not in ("127.0.0.1", "localhost"):
        raise ValueError(f"only a server on 127.0.0.1 will do, not {host}")


@contextmanager
def fresh_databases(
    kind: str, folder: Path, prefix: str, pg_url: str = PG_URL
) -> Iterator[Databases]:
    """An empty database per service: SQLite files in `folder`, or PostgreSQL databases
    `<prefix>_<random>_<service>` made on the server of `pg_url` (which must be on
    127.0.0.1) and dropped afterwards."""
    if kind == "sqlite":
        folder.mkdir(parents=True, exist_ok=True)
        yield Databases(kind, *(f"sqlite:///{folder / service}.db" for service in SERVICES))
        return
    if kind != "postgres":
        raise ValueError(f"unknown database kind {kind!r}")
    require_local_server(pg_url)
    tag = secrets.token_hex(4)
    created: list[str] = []
    try:
        for service in SERVICES:
            created.append(create_database(pg_url, f"{prefix}_{tag}_{service}"))
        yield Databases(kind, *created)
    finally:
        for url in created:
            drop_database(url)
