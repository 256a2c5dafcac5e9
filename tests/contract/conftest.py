"""The stores the storage contract runs over: the in-memory fakes, SQLite and PostgreSQL.

Each test of tests/contract/ runs once per store, so a fake that drifts from the SQL
repositories fails the same test that the SQL repositories pass.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

import pytest
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.util import greenlet_spawn

from cardpoints.adapters import orm as cardpoints_orm
from cardpoints.adapters.repository import CardpointsUnitOfWork
from cardpoints.entrypoints import server as cardpoints_server
from cardpoints.service_layer.ports import UnitOfWork as CardpointsUoW
from ecommerce.adapters import orm as ecommerce_orm
from ecommerce.adapters.unit_of_work import SqlUnitOfWork as EcommerceUnitOfWork
from ecommerce.entrypoints import server as ecommerce_server
from ecommerce.service_layer.ports import UnitOfWork as EcommerceUoW
from servicekit.db import Database, create_db_engine, upgrade_schema
from servicekit.devtools.databases import drop_database
from tests.cardpoints import fakes as cardpoints_fakes
from tests.conftest import create_pg_database
from tests.ecommerce import fakes as ecommerce_fakes

STORES = ["fake", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]

U = TypeVar("U")


@dataclass(frozen=True)
class Store(Generic[U]):
    """One store of one service: fresh units of work over it, and how it refuses a bad row."""

    kind: str
    uow: Callable[[], U]
    # What the store raises for a row that breaks a unique or check constraint. The SQL
    # stores raise IntegrityError (which Database reruns as a concurrent duplicate); the
    # fakes stand in with an assertion.
    refusal: type[Exception]


CardpointsStore = Store[CardpointsUoW]
EcommerceStore = Store[EcommerceUoW]


@dataclass(frozen=True)
class Schema:
    """One service's schema: its migrations, and the tables a test may have written."""

    name: str
    migrations: str
    version_table: str
    tables: tuple[str, ...]


CARDPOINTS = Schema(
    "cardpoints",
    cardpoints_server.MIGRATIONS,
    cardpoints_server.VERSION_TABLE,
    tuple(cardpoints_orm.Base.metadata.tables),
)
ECOMMERCE = Schema(
    "ecommerce",
    ecommerce_server.MIGRATIONS,
    ecommerce_server.VERSION_TABLE,
    tuple(ecommerce_orm.Base.metadata.tables),
)


@pytest.fixture(params=STORES)
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _migrated(url: str, schema: Schema) -> Database:
    engine = create_db_engine(url)
    upgrade_schema(engine, schema.migrations, schema.version_table)
    return Database(engine, workers=1)


# The servers run their units of work on PostgreSQL on the event loop (asyncpg, servicekit.db):
# the contract runs the repositories there too, each PostgreSQL test inside a greenlet on
# this one loop, which the pooled connections belong to.
_LOOP = asyncio.new_event_loop()


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    callspec = getattr(pyfuncitem, "callspec", None)
    if callspec is None or callspec.params.get("store_kind") != "postgres":
        return None
    names = pyfuncitem._fixtureinfo.argnames
    arguments = {name: pyfuncitem.funcargs[name] for name in names}
    _LOOP.run_until_complete(greenlet_spawn(functools.partial(pyfuncitem.obj, **arguments)))
    return True


@pytest.fixture(scope="session")
def postgres_databases() -> Iterator[Callable[[Schema], Database]]:
    """One migrated PostgreSQL database per service for the whole run, emptied per test.

    Creating and migrating a database costs about a second on PostgreSQL; deleting the
    tables (TRUNCATE: the ledger refuses DELETE) costs less, and leaves the schema the
    migrations made.
    Tests never rely on the values of sequences, only on their order.
    """
    opened: dict[str, tuple[Database, Engine, str]] = {}

    def empty(schema: Schema) -> Database:
        if schema.name not in opened:
            url = create_pg_database()
            migrated = _migrated(url, schema)
            on_loop = Database(create_db_engine(url, on_loop=True), workers=1)
            opened[schema.name] = (on_loop, migrated.engine, url)
        database, engine, _ = opened[schema.name]
        with engine.begin() as connection:
            tables = ", ".join(f'"{table}"' for table in schema.tables)
            connection.exec_driver_sql(f"TRUNCATE {tables}")
        return database

    yield empty
    for database, engine, url in opened.values():
        _LOOP.run_until_complete(database.aclose())
        engine.dispose()
        drop_database(url)


@pytest.fixture
def sql_database(
    store_kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[[Schema], Database]]:
    """Opens an empty database of the store's backend, migrated by the real migrations."""
    opened: list[Database] = []

    def open_database(schema: Schema) -> Database:
        if store_kind == "postgres":
            postgres: Callable[[Schema], Database] = request.getfixturevalue("postgres_databases")
            return postgres(schema)
        database = _migrated(f"sqlite:///{tmp_path / schema.name}.db", schema)
        opened.append(database)
        return database

    yield open_database
    for database in opened:
        database.close()


@pytest.fixture
def cardpoints(store_kind: str, sql_database: Callable[[Schema], Database]) -> CardpointsStore:
    if store_kind == "fake":
        state = cardpoints_fakes.Store()
        return Store(store_kind, lambda: cardpoints_fakes.FakeUnitOfWork(state), AssertionError)
    database = sql_database(CARDPOINTS)
    return Store(store_kind, lambda: CardpointsUnitOfWork(database.sessions), IntegrityError)


@pytest.fixture
def ecommerce(store_kind: str, sql_database: Callable[[Schema], Database]) -> EcommerceStore:
    if store_kind == "fake":
        state = ecommerce_fakes.FakeDatabase()
        return Store(store_kind, lambda: ecommerce_fakes.FakeUnitOfWork(state), AssertionError)
    database = sql_database(ECOMMERCE)
    return Store(store_kind, lambda: EcommerceUnitOfWork(database.sessions), IntegrityError)
