"""SQLite without a thread hop per statement.

aiosqlite runs every statement on a worker thread and hands the result back through
the event loop: about 0.5 ms per statement here, more than the indexed query itself.
SQLite in WAL mode answers indexed reads in microseconds, so dsf-py runs its statements
directly on the event-loop thread through this thin adapter, which offers the subset
of SQLAlchemy's ``AsyncEngine``/``AsyncConnection`` API the store uses.  Writers are
serialised by the store's lock, so a statement never waits for another writer of this
process; ``busy_timeout`` covers other processes (one mailbox process per SQLite file).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.engine import Result

T = TypeVar("T")


class RawRow:
    """A result row of the raw fast path: ``row._mapping[name]`` and ``row.name`` like SQLAlchemy's Row."""

    __slots__ = ("_mapping",)

    def __init__(self, mapping: dict[str, Any]) -> None:
        self._mapping = mapping

    def __getattr__(self, name: str) -> Any:
        try:
            return self._mapping[name]
        except KeyError:
            raise AttributeError(name) from None


_INSERT_RESOURCE = (
    "INSERT INTO resources (type, id, version, last_updated, deleted, current, method, content, blob_id) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_INDEX = "INSERT INTO search_index (rid, type, param, system, value, norm, low, high) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
_INSERT_ACCESS = (
    "INSERT INTO read_access (rid, access, organization, parent, role_system, role_code) VALUES (?, ?, ?, ?, ?, ?)"
)

_ROWS_PER_INSERT = 100  # 800 variables a statement: under SQLite's limit in every version (999 before 3.32)
_INDEX_ROWS: dict[int, str] = {}


def _insert_index_rows(n: int) -> str:
    """INSERT of ``n`` search-index rows in one statement."""
    sql = _INDEX_ROWS.get(n)
    if sql is None:
        sql = _INDEX_ROWS[n] = _INSERT_INDEX + ", (?, ?, ?, ?, ?, ?, ?, ?)" * (n - 1)
    return sql


# statement id -> (statement kept alive, SQL, bind names in order, default bind values)
_COMPILED: dict[int, tuple[Any, str, tuple[str, ...], dict[str, Any]]] = {}


class InlineConnection:
    def __init__(self, sync: Connection) -> None:
        self.sync = sync

    def insert_version_raw(
        self,
        row: tuple[Any, ...],
        index: list[tuple[Any, ...]],
        access: list[tuple[Any, ...]],
    ) -> int:
        """Insert a resource version with its index and read-access rows through sqlite3 (hot write path).

        Runs inside the transaction SQLAlchemy began on this connection; column order as in ``schema``.
        """
        raw = self.sync.connection.dbapi_connection
        assert raw is not None
        cursor = raw.execute(_INSERT_RESOURCE, row)
        rid = int(cursor.lastrowid or 0)
        type_ = row[0]
        # multi-row INSERTs: a statement run per row cost ~10 % more
        for start in range(0, len(index), _ROWS_PER_INSERT):
            chunk = index[start : start + _ROWS_PER_INSERT]
            values: list[Any] = []
            for r in chunk:
                values += (rid, type_, *r)
            raw.execute(_insert_index_rows(len(chunk)), values)
        if access:
            raw.executemany(_INSERT_ACCESS, [(rid, *a) for a in access])
        return rid

    def _compiled(self, statement: Any) -> tuple[Any, str, tuple[str, ...], dict[str, Any]] | None:
        """The SQL of a prebuilt (long-lived) statement, compiled once; None if only SQLAlchemy can run it."""
        entry = _COMPILED.get(id(statement))
        if entry is None or entry[0] is not statement:
            compiled = statement.compile(dialect=self.sync.dialect)
            if "POSTCOMPILE" in compiled.string:  # expanding IN lists need SQLAlchemy's execution
                return None
            names = tuple(compiled.positiontup or ())
            entry = (statement, compiled.string, names, dict(compiled.params))
            if len(_COMPILED) > 10_000:
                _COMPILED.clear()
            _COMPILED[id(statement)] = entry
        return entry

    def _cursor(self, entry: tuple[Any, str, tuple[str, ...], dict[str, Any]], parameters: dict[str, Any]) -> Any:
        _, sql, names, defaults = entry
        values = [parameters[n] if n in parameters else defaults[n] for n in names]
        raw = self.sync.connection.dbapi_connection
        assert raw is not None
        return raw.execute(sql, values)

    async def first_raw(self, statement: Any, parameters: dict[str, Any]) -> RawRow | None:
        """One row of a prebuilt (long-lived) SELECT straight through sqlite3.

        For the hottest reads: SQLAlchemy's execution machinery costs several times the indexed
        lookup.  The statement is compiled once; a single SELECT needs no explicit transaction.
        """
        entry = self._compiled(statement)
        if entry is None:
            row = self.sync.execute(statement, parameters).first()
            return None if row is None else RawRow(dict(row._mapping))
        cursor = self._cursor(entry, parameters)
        try:
            row = cursor.fetchone()
            if row is None:
                return None
            columns = [d[0] for d in cursor.description]
        finally:
            cursor.close()
        return RawRow(dict(zip(columns, row, strict=True)))

    async def all_raw(self, statement: Any, parameters: dict[str, Any]) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
        """Every row of a prebuilt (long-lived) SELECT straight through sqlite3 (a search page):
        the column names and the rows as tuples."""
        entry = self._compiled(statement)
        if entry is None:
            result = self.sync.execute(statement, parameters)
            return tuple(result.keys()), [tuple(row) for row in result.all()]
        cursor = self._cursor(entry, parameters)
        try:
            rows = cursor.fetchall()
            columns = tuple(d[0] for d in cursor.description)
        finally:
            cursor.close()
        return columns, rows

    async def execute(self, statement: Any, parameters: Any = None) -> Result[Any]:
        if parameters is None:
            return self.sync.execute(statement)
        return self.sync.execute(statement, parameters)

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[None]:
        with self.sync.begin():
            yield

    async def rollback(self) -> None:
        self.sync.rollback()

    async def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        return fn(self.sync, *args)

    async def execution_options(self, **options: Any) -> InlineConnection:
        return InlineConnection(self.sync.execution_options(**options))


class InlineEngine:
    def __init__(self, sync_engine: Engine) -> None:
        self.sync_engine = sync_engine

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[InlineConnection]:
        with self.sync_engine.connect() as conn:
            yield InlineConnection(conn)

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[InlineConnection]:
        with self.sync_engine.begin() as conn:
            yield InlineConnection(conn)

    async def dispose(self) -> None:
        self.sync_engine.dispose()
