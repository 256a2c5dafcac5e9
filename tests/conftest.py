"""Shared fixtures: a fresh database per test on every backend, real PostgreSQL included."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import grpc
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from cardpoints.entrypoints.server import App as CardpointsApp
from cardpoints.entrypoints.server import Settings as CardpointsSettings
from cardpoints.entrypoints.server import start as start_cardpoints
from tests import auth
from tests.auth import SERVER_SECURITY

PG_ADMIN_URL = os.environ.get(
    "POINTSBRIDGE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def _create_pg_database() -> str:
    name = f"pbtest_{secrets.token_hex(6)}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    return make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)


def _drop_pg_database(url: str) -> None:
    name = make_url(url).database
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_db_url(backend: str, tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """Returns fresh, empty database URLs on the test's backend, one per name asked for."""
    created: list[str] = []

    def make(name: str) -> str:
        if backend == "sqlite":
            return f"sqlite:///{tmp_path / name}.db"
        url = _create_pg_database()
        created.append(url)
        return url

    yield make
    for url in created:
        _drop_pg_database(url)


@pytest.fixture
async def cardpoints_app(make_db_url: Callable[[str], str]) -> AsyncIterator[CardpointsApp]:
    """A real card-points server on 127.0.0.1:0 over a fresh database of the test's backend."""
    app = await start_cardpoints(
        CardpointsSettings(
            **SERVER_SECURITY,
            address="127.0.0.1:0",
            database_url=make_db_url("cardpoints"),
            workers=4,
        )
    )
    yield app
    await app.stop(grace=1)


@pytest.fixture
async def cardpoints_channel(cardpoints_app: CardpointsApp) -> AsyncIterator[grpc.aio.Channel]:
    async with auth.channel(f"127.0.0.1:{cardpoints_app.port}") as channel:
        yield channel
