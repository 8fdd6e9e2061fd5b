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


class InlineConnection:
    def __init__(self, sync: Connection) -> None:
        self.sync = sync

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
