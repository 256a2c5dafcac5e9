"""Shared fixtures: a fresh database per test on every backend, real PostgreSQL included."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import grpc
import pytest

from cardpoints.entrypoints.server import App as CardpointsApp
from cardpoints.entrypoints.server import Settings as CardpointsSettings
from cardpoints.entrypoints.server import start as start_cardpoints
from servicekit.devtools.databases import create_database, drop_database
from tests.auth import Callers

PG_ADMIN_URL = os.environ.get(
    "POINTSBRIDGE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def create_pg_database() -> str:
    """A fresh, empty database on the test PostgreSQL server."""
    return create_database(PG_ADMIN_URL, f"pbtest_{secrets.token_hex(6)}")


@pytest.fixture(scope="session")
def auth(tmp_path_factory: pytest.TempPathFactory) -> Callers:
    """One signing key for the whole run, and tokens for every kind of caller."""
    return Callers.create(tmp_path_factory.mktemp("keys"))


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
        url = create_pg_database()
        created.append(url)
        return url

    yield make
    for url in created:
        drop_database(url)


@pytest.fixture
async def cardpoints_app(
    make_db_url: Callable[[str], str], auth: Callers
) -> AsyncIterator[CardpointsApp]:
    """A real card-points server on 127.0.0.1:0 over a fresh database of the test's backend."""
    app = await start_cardpoints(
        CardpointsSettings(
            **auth.server_security,
            address="127.0.0.1:0",
            database_url=make_db_url("cardpoints"),
            workers=4,
        )
    )
    yield app
    await app.stop(grace=1)


@pytest.fixture
async def cardpoints_channel(
    cardpoints_app: CardpointsApp, auth: Callers
) -> AsyncIterator[grpc.aio.Channel]:
    async with auth.channel(f"127.0.0.1:{cardpoints_app.port}") as channel:
        yield channel
