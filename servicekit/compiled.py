"""Hot-path statements compiled once and run on the DBAPI cursor.

`Connection.execute` of a Core statement costs tens of microseconds of Python per
call (cache key, execution context, result object) where SQLite takes a few to run
it. A `CompiledStatement` keeps the SQLAlchemy statement as the one definition of
its SQL; per dialect and set of parameter names it compiles it once, and then only
applies the same bind and result processors SQLAlchemy would, on the cursor of the
connection (so inside its transaction). DBAPI errors come out as SQLAlchemy's
(`IntegrityError`, `OperationalError`, ...), as from `Connection.execute`.

`CompiledInsert` writes many rows of one table as one multi-row INSERT (one
statement and, on PostgreSQL, one round trip), compiled once per number of rows.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, Table, bindparam, insert
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import Executable

Processor = Callable[[Any], Any] | None


class _Plan:
    __slots__ = (
        "defaults",
        "names",
        "pick",
        "positional",
        "processed_at",
        "processors",
        "results",
        "row",
        "sql",
    )

    def __init__(self, statement: Any, dialect: Dialect, keys: Sequence[str]) -> None:
        compiled = statement.compile(dialect=dialect, column_keys=list(keys))
        self.sql: str = compiled.string
        self.positional: bool = bool(compiled.positional)
        self.names: tuple[str, ...] = tuple(compiled.positiontup or ())
        # Literal values the statement carries (a state to match, say) are binds too.
        self.defaults: dict[str, Any] = {
            name: value
            for name, value in compiled.construct_params(_check=False).items()
            if name not in keys
        }
        self.processors: dict[str, Callable[[Any], Any]] = dict(compiled._bind_processors)
        # Positional: the values in the statement's order, picked in one call, and the
        # positions whose value a processor converts.
        self.pick: Callable[[Mapping[str, Any]], tuple[Any, ...]] = _picker(self.names)
        self.processed_at: tuple[tuple[int, Callable[[Any], Any]], ...] = tuple(
            (i, self.processors[name])
            for i, name in enumerate(self.names)
            if name in self.processors
        )
        columns = _returned_columns(statement)
        self.results: tuple[Processor, ...] = tuple(
            column.type._cached_result_processor(dialect, None) for column in columns
        )
        # An INSERT without RETURNING may still return the key it generated (PostgreSQL):
        # its rows stay plain tuples.
        self.row: Callable[..., Any] = (
            namedtuple("Row", [column.key for column in columns], rename=True)
            if columns
            else _plain
        )

    def parameters(self, params: Mapping[str, Any]) -> Any:
        values = {**self.defaults, **params} if self.defaults else params
        if self.positional:
            picked = self.pick(values)
            if not self.processed_at:
                return picked
            converted = list(picked)
            for i, processor in self.processed_at:
                converted[i] = processor(converted[i])
            return tuple(converted)
        values = dict(values)
        for name, processor in self.processors.items():
            if name in values:
                values[name] = processor(values[name])
        return values


def _picker(names: tuple[str, ...]) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    if len(names) > 1:
        return itemgetter(*names)
    if names:
        name = names[0]
        return lambda values: (values[name],)
    return lambda values: ()


def _plain(*values: Any) -> tuple[Any, ...]:
    return values


def _returned_columns(statement: Any) -> Sequence[Any]:
    returning = getattr(statement, "_returning", ())
    if returning:
        return list(returning)
    return list(getattr(statement, "selected_columns", ()))


class CompiledStatement:
    """One Core statement (SELECT, INSERT, UPDATE ... RETURNING) for a hot path."""

    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        self._plans: dict[tuple[str, str, tuple[str, ...]], _Plan] = {}

    def _plan(self, dialect: Dialect, keys: tuple[str, ...]) -> _Plan:
        plan = self._plans.get((dialect.name, dialect.driver, keys))
        if plan is None:
            plan = _Plan(self.statement, dialect, keys)
            self._plans[(dialect.name, dialect.driver, keys)] = plan
        return plan

    def _run(self, connection: Connection, params: Mapping[str, Any], fetch: bool) -> Any:
        dialect = connection.dialect
        plan = self._plan(dialect, tuple(params))
        values = plan.parameters(params)
        cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(plan.sql, values)
            if not fetch:
                return cursor.rowcount
            rows = cursor.fetchall() if cursor.description is not None else []
        except dialect.loaded_dbapi.Error as error:
            raise DBAPIError.instance(
                plan.sql, values, error, dialect.loaded_dbapi.Error, dialect=dialect
            ) from error
        finally:
            cursor.close()
        results, make = plan.results, plan.row
        if not any(results):
            return [make(*row) for row in rows]
        return [
            make(*(v if p is None else p(v) for p, v in zip(results, row, strict=True)))
            for row in rows
        ]

    def execute(self, connection: Connection, params: Mapping[str, Any]) -> list[Any]:
        """Run on `connection`'s DBAPI cursor; the rows it returns, processed as by SQLAlchemy,
        as named tuples (`row.balance`)."""
        rows: list[Any] = self._run(connection, params, True)
        return rows

    def rowcount(self, connection: Connection, params: Mapping[str, Any]) -> int:
        """Run an UPDATE or DELETE as `execute` does; how many rows it matched."""
        count: int = self._run(connection, params, False)
        return count

    def first(self, connection: Connection, params: Mapping[str, Any]) -> Any:
        rows = self.execute(connection, params)
        return rows[0] if rows else None


class CompiledInsert:
    """Many rows of one table in one multi-row INSERT, for a hot path.

    Per number of rows (up to `max_rows` a statement; more go in several) the
    statement is `insert(table).values([...])` with one bind per row and column,
    of the column's type, and runs as a `CompiledStatement`: the same bind
    processors, and a duplicate row fails the whole statement with SQLAlchemy's
    `IntegrityError`.
    """

    def __init__(self, table: Table, max_rows: int = 64) -> None:
        self.table = table
        self.max_rows = max_rows
        self._statements: dict[tuple[tuple[str, ...], int], CompiledStatement] = {}

    def _statement(self, keys: tuple[str, ...], count: int) -> CompiledStatement:
        statement = self._statements.get((keys, count))
        if statement is None:
            columns = self.table.c
            rows = [
                {key: bindparam(f"{key}_r{i}", type_=columns[key].type) for key in keys}
                for i in range(count)
            ]
            statement = CompiledStatement(insert(self.table).values(rows))
            self._statements[(keys, count)] = statement
        return statement

    def execute(self, connection: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert `rows`, which all name the same columns; nothing for none."""
        if not rows:
            return
        keys = tuple(rows[0])
        for start in range(0, len(rows), self.max_rows):
            chunk = rows[start : start + self.max_rows]
            params: dict[str, Any] = {}
            for i, row in enumerate(chunk):
                if tuple(row) != keys:
                    raise ValueError("every row must name the same columns, in the same order")
                for key in keys:
                    params[f"{key}_r{i}"] = row[key]
            self._statement(keys, len(chunk)).execute(connection, params)


class Connector:
    """The connection of a session's transaction, looked up once per transaction.

    `Session.connection()` walks the session's transaction state on every call, which
    costs as much CPU as a compiled statement takes to run; each unit of work holds
    one (servicekit.db.SqlUnitOfWork.connection), which its repositories share. A
    commit or rollback of the session closes the connection it held, and the next
    call asks the session again.
    """

    __slots__ = ("_connection", "session")

    def __init__(self, session: Session) -> None:
        self.session = session
        self._connection: Connection | None = None

    def __call__(self) -> Connection:
        found = self._connection
        if found is None or found.closed:
            found = self._connection = self.session.connection()
        return found
