"""Database engines, where units of work run, and migrations.

Units of work are synchronous SQLAlchemy sessions. On SQLite they run on a small
thread pool beside the grpc.aio event loop (sqlite3 blocks in its fsync), group-
committed; measured on this machine, sync SQLAlchemy on sqlite3 commits many times
more transactions per second than the async drivers (see docs/ARCHITECTURE.md).
On PostgreSQL a server's units of work run on the event loop itself, on asyncpg:
the same synchronous code, each statement's round trip awaited through a greenlet
(SQLAlchemy's asyncio adaptation), with no thread hop per unit and no worker threads
contending for the interpreter.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar, Self, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.util import await_only, greenlet_spawn

from servicekit.compiled import Connector
from servicekit.outbox import OutboxWriter

log = logging.getLogger(__name__)

T = TypeVar("T")

READ_ONLY = "pointsbridge_read_only"
# Session.info key of the lock that SQLite write units of work of one Database take.
WRITER_LOCK = "pointsbridge_writer_lock"
# As long as SQLite's busy timeout: past it, the unit of work goes on without the lock.
WRITER_LOCK_TIMEOUT = 30.0
# Write units of work that may share one SQLite transaction and its fsync (group commit).
GROUP_COMMIT = 64


def normalize_url(url: str) -> str:
    """`postgresql://` means psycopg 3 here; relative SQLite paths get their folder created."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    return parsed.render_as_string(hide_password=False)


def create_db_engine(
    url: str, *, durable: bool = True, pool_size: int = 8, on_loop: bool = False
) -> Engine:
    """An engine tuned per backend.

    `on_loop` (PostgreSQL only; SQLite ignores it): the engine drives asyncpg, and a
    `Database` on it runs its units of work on the event loop that awaits them. Such
    an engine is only usable inside `Database.run`.

    SQLite runs in WAL mode. `durable` selects synchronous=FULL, so that a
    committed transaction survives power loss; NORMAL only survives a crash of
    the process. Write transactions start with BEGIN IMMEDIATE so that two
    writers queue on the busy timeout instead of failing a lock upgrade.
    """
    url = normalize_url(url)
    if make_url(url).get_backend_name() != "sqlite":
        # No ping per checkout (a round trip per unit of work): a connection found dead
        # is invalidated by SQLAlchemy, and Database.call reruns the unit on a new one.
        if on_loop:
            # asyncpg: psycopg's AsyncConnection, through the same adaptation, cost more
            # CPU per unit of work than psycopg on worker threads (docs/PERFORMANCE.md).
            # No overflow: `pool_size` units run at once, the others wait for a
            # connection, as they would for a worker thread, instead of opening (and,
            # on return, closing) a connection each.
            return create_async_engine(
                make_url(url).set(drivername="postgresql+asyncpg"),
                pool_size=pool_size,
                max_overflow=0,
            ).sync_engine
        return create_engine(url, pool_size=pool_size, max_overflow=pool_size)

    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": 30},
        pool_size=pool_size,
        max_overflow=0,
    )
    synchronous = "FULL" if durable else "NORMAL"

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        read_only = conn.get_execution_options().get(READ_ONLY, False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


def _is_transient(error: DBAPIError) -> bool:
    """Lock timeouts, deadlocks, serialization failures and lost connections: the whole
    unit is safe to rerun (a rerun after a COMMIT that did happen finds its own
    idempotency record)."""
    if error.connection_invalidated:
        return True
    if isinstance(error, IntegrityError):
        return True  # a concurrent duplicate; the rerun sees the winner's row
    if not isinstance(error, OperationalError):
        return False
    sqlstate = getattr(error.orig, "sqlstate", None)
    if sqlstate in ("40001", "40P01", "55P03"):
        return True
    return "database is locked" in str(error.orig)


class _Batch:
    """The SQLite transaction that the write units of work of one group commit share.

    Each unit is a savepoint, issued as plain SQL under one reused name: SQLAlchemy's
    nested transactions cost about 10 % of a deduction's CPU. The session never sees
    them, so each unit flushes before its RELEASE and leaves an empty identity map.
    """

    def __init__(self, sessions: sessionmaker[Session], session: Session) -> None:
        self.sessions = sessions
        self.session = session
        self.connection = session.connection()
        # The savepoints go straight to sqlite3: through exec_driver_sql each one costs
        # an execution context and a result, some 5 % of a deduction's CPU.
        self._execute = self.connection.connection.dbapi_connection.execute  # type: ignore[union-attr]
        # Units of work whose savepoint was released, and the events they will have
        # committed once the shared transaction commits.
        self.released: list[tuple[SqlUnitOfWork, list[object]]] = []

    def _run(self, sql: str) -> None:
        try:
            self._execute(sql)
        except sqlite3.Error as error:  # as exec_driver_sql would raise it
            raise DBAPIError.instance(sql, (), error, sqlite3.Error) from error

    def savepoint(self) -> None:
        self._run("SAVEPOINT pointsbridge_unit")

    def release(self) -> None:
        self._run("RELEASE pointsbridge_unit")

    def roll_back(self) -> None:
        self._run("ROLLBACK TO pointsbridge_unit")
        self.release()


_batches = threading.local()


class _Unusable(Exception):
    """A unit of work left the shared session in a state only a full rollback clears."""


def _joining(sessions: sessionmaker[Session]) -> _Batch | None:
    batch: _Batch | None = getattr(_batches, "current", None)
    return batch if batch is not None and batch.sessions is sessions else None


class Database:
    """Runs units of work, rerunning them on transient conflicts: on worker threads, or on
    the event loop for an engine made `on_loop` (servicekit.db.create_db_engine).

    On SQLite, concurrent write units of work are group-committed: up to
    `group_commit` of them run one after another in one transaction, each in a
    savepoint of its own, and share its COMMIT and fsync. Each one's outcome,
    result or error, is delivered only once that COMMIT is durable, and a unit
    that fails is rolled back alone, exactly as if it had run by itself.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        workers: int = 8,
        attempts: int = 4,
        group_commit: int = GROUP_COMMIT,
    ) -> None:
        self.engine = engine
        # SQLite has one writer at a time. Writers of this process queue on a lock, and
        # each wakes as soon as the previous one is done, instead of polling the file
        # lock in SQLite's busy handler, which sleeps 1, 2, 5, 10 ... ms between tries.
        # Other processes still meet the busy timeout.
        writer: dict[str, Any] = {}
        sqlite = engine.dialect.name == "sqlite"
        if sqlite:
            writer[WRITER_LOCK] = threading.RLock()
        self.sessions = sessionmaker(engine, expire_on_commit=False, info=writer)
        self.read_sessions = sessionmaker(
            engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False
        )
        # An asyncio driver: units of work run in a greenlet on the awaiting event loop,
        # and each statement's round trip is awaited there.
        self.on_loop = bool(engine.dialect.is_async)
        self._units: set[asyncio.Future[Any]] = set()
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="uow")
        self._attempts = attempts
        # PostgreSQL runs writers side by side, and groups their WAL flushes itself.
        self.group_commit = group_commit if sqlite else 1
        self._queue: list[tuple[Callable[[], Any], asyncio.Future[Any]]] = []
        self._drainer: asyncio.Task[None] | None = None

    def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` (which opens its own unit of work) with bounded reruns."""
        for attempt in range(1, self._attempts + 1):
            try:
                return fn()
            except DBAPIError as error:
                if attempt == self._attempts or not _is_transient(error):
                    raise
                log.debug("rerunning unit of work after %s", type(error.orig).__name__)
                if self.on_loop:
                    await_only(asyncio.sleep(0.002 * attempt))
                else:
                    time.sleep(0.002 * attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    async def run(self, fn: Callable[[], T]) -> T:
        if self.on_loop:
            # A unit of work runs to its end in a task of its own, as it would on a worker
            # thread: a caller that is cancelled stops waiting, but a cancellation thrown
            # into a unit mid-statement or mid-COMMIT would leave its connection's
            # transaction state unknown (asyncpg would then nest the next unit's
            # transaction in it as a savepoint, whose "commit" commits nothing).
            unit = asyncio.ensure_future(greenlet_spawn(self.call, fn))
            self._units.add(unit)
            unit.add_done_callback(self._units.discard)
            result: T = await asyncio.shield(unit)
            return result
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.call, fn)

    async def write(self, fn: Callable[[], T]) -> T:
        """Like `run`, for `fn` that opens a write unit of work: group-committed on SQLite.

        Writes queue on the event loop that is draining this Database's batches, so a
        Database serves one event loop at a time (a server's).
        """
        if self.group_commit <= 1:
            return await self.run(fn)
        loop = asyncio.get_running_loop()
        outcome: asyncio.Future[T] = loop.create_future()
        self._queue.append((fn, outcome))
        if self._drainer is None:
            self._drainer = loop.create_task(self._drain())
        return await outcome

    async def _drain(self) -> None:
        """Run what is queued, a batch at a time; those that queue meanwhile form the next."""
        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                batch = self._queue[: self.group_commit]
                del self._queue[: self.group_commit]
                try:
                    outcomes = await loop.run_in_executor(
                        self._executor, self._call_batch, [fn for fn, _ in batch]
                    )
                except asyncio.CancelledError:
                    for _, future in (*batch, *self._queue):
                        future.cancel()
                    self._queue.clear()
                    raise
                except Exception as error:  # every caller hears of it
                    outcomes = [(False, error)] * len(batch)
                for (_, future), (ok, value) in zip(batch, outcomes, strict=True):
                    if future.done():
                        continue  # the caller was cancelled; its unit of work ran regardless
                    if ok:
                        future.set_result(value)
                    else:
                        future.set_exception(value)
        finally:
            self._drainer = None

    def _call_batch(self, fns: list[Callable[[], Any]]) -> list[tuple[bool, Any]]:
        """One transaction for all of `fns`; if it fails as a whole, each runs alone."""
        if len(fns) == 1:
            return [self._outcome(fns[0])]
        try:
            return self._shared_transaction(fns)
        except (DBAPIError, _Unusable) as error:
            # Nothing of the batch committed. Run each alone, with the usual reruns, so
            # that one failing unit of work (or a lock held by another process) costs
            # only itself.
            log.debug("group commit of %d rolled back (%s); one at a time", len(fns), error)
            return [self._outcome(fn) for fn in fns]

    def _outcome(self, fn: Callable[[], Any]) -> tuple[bool, Any]:
        try:
            return True, self.call(fn)
        except Exception as error:  # delivered to the caller of `write`
            return False, error

    def _shared_transaction(self, fns: list[Callable[[], Any]]) -> list[tuple[bool, Any]]:
        session = self.sessions()
        writer: threading.RLock = session.info[WRITER_LOCK]
        locked = writer.acquire(timeout=WRITER_LOCK_TIMEOUT)
        try:
            session.begin()
            batch = _Batch(self.sessions, session)
            _batches.current = batch
            outcomes: list[tuple[bool, Any]] = []
            for fn in fns:
                try:
                    outcomes.append((True, fn()))
                except DBAPIError:
                    raise  # the statement may have left the transaction unusable
                except Exception as error:  # its savepoint is rolled back
                    if not session.is_active:  # a failed flush: the session needs a rollback
                        raise _Unusable from error
                    outcomes.append((False, error))
            session.commit()
            for uow, events in batch.released:
                uow.committed_events += events
            return outcomes
        finally:
            _batches.current = None
            try:
                if session.in_transaction():
                    session.rollback()
                session.close()
            finally:
                if locked:
                    writer.release()

    def close(self) -> None:
        """Release the workers and the pool (of an `on_loop` engine: `aclose`)."""
        self._executor.shutdown(wait=True)
        self.engine.dispose()

    async def aclose(self) -> None:
        """`close`, from the event loop: the connections of an `on_loop` engine are closed
        on the loop they belong to."""
        if self.on_loop:
            self._executor.shutdown(wait=True)
            # Units whose callers stopped waiting still hold their connections.
            await asyncio.gather(*self._units, return_exceptions=True)
            await greenlet_spawn(self.engine.dispose)
        else:
            await asyncio.to_thread(self.close)


class SqlUnitOfWork:
    """One transaction: rolled back on leaving unless `commit()` was called.

    Services subclass it and attach their repositories in `_start`. Use cases
    append domain events to `events`; those of a committed transaction move to
    `committed_events`, for the entrypoint to publish. A service that sets `outbox`
    has each event's outbox row written in the same transaction (or savepoint).
    """

    session: Session
    # The transaction's connection, looked up once, for the repositories' statements.
    connection: Connector
    outbox: ClassVar[OutboxWriter | None] = None

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions
        self._writer: threading.RLock | None = None
        self._batch: _Batch | None = None
        self._savepoint = False
        self.events: list[object] = []
        self.committed_events: list[object] = []

    def _start(self, session: Session) -> None:
        """Attach repositories to the new session."""

    def __enter__(self) -> Self:
        self.events = []
        batch = _joining(self._sessions)
        if batch is not None:
            # A group commit: this unit of work is a savepoint of the shared transaction.
            self._batch = batch
            self.session = batch.session
            batch.savepoint()
            self._savepoint = True
            self.connection = Connector(self.session)
            self._start(self.session)
            return self
        self.session = self._sessions()
        writer = self.session.info.get(WRITER_LOCK)
        if writer is not None and writer.acquire(timeout=WRITER_LOCK_TIMEOUT):
            self._writer = writer
        try:
            self.session.begin()
            self.connection = Connector(self.session)
            self._start(self.session)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self._batch is not None:
            batch, self._batch = self._batch, None
            try:
                if self._savepoint and self.session.is_active:
                    self._savepoint = False
                    batch.roll_back()
            finally:
                # As closing a session would: the next unit of work of the batch must
                # not meet objects (or stale balances) that this one loaded.
                self.session.expunge_all()
            return
        try:
            if self.session.in_transaction():
                self.session.rollback()
        finally:
            try:
                self.session.close()
            finally:
                if self._writer is not None:
                    self._writer.release()
                    self._writer = None

    def commit(self) -> None:
        if self.events and self.outbox is not None:
            self.outbox.write(self.connection(), self.events)
        if self._batch is not None:
            assert self._savepoint, "a unit of work commits at most once"
            self.session.flush()
            self._batch.release()
            self._savepoint = False
            # Committed for real when the shared transaction is.
            self._batch.released.append((self, self.events))
        else:
            self.session.commit()
            self.committed_events += self.events
        self.events = []


def upgrade_schema(engine: Engine, script_location: str, version_table: str) -> None:
    """Apply every Alembic migration of one service to `engine`'s database."""
    config = Config()
    config.set_main_option("script_location", script_location)
    config.attributes["version_table"] = version_table
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Replicas starting together must not race each other's DDL.
            connection.exec_driver_sql(
                "SELECT pg_advisory_xact_lock(hashtext(%s))", (version_table,)
            )
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
