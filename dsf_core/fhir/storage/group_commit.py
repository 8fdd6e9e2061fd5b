"""SQLite writes of a few event-loop turns committed together (group commit).

A commit writes every page the transaction changed to the write-ahead log, two system calls a
page, and a Task alone changes ~21 pages (its row, its index and read-access rows, and the
b-trees over them): the COMMIT was half of SQLite's time for a Task. Consecutive writes change
mostly the same pages, so a transaction holding several costs far less per write (measured
here: 300 µs for one Task alone, 170 µs each for eight).

So a write does not commit on its own. The first write opens a transaction (``BEGIN
IMMEDIATE``) and asks for a commit :data:`TURNS` turns of the event loop later; every write that
runs before then joins it. Under load each turn runs a few request handlers, so three turns
gather ~4 writes (one turn: ~1.2), and the mailbox creates ~20 % more Tasks a second.

Each write runs inside its own ``SAVEPOINT``: a write that fails rolls back exactly its own
changes, and the others commit. A write returns only once the transaction holding it has
committed, so nothing is answered before it is durable, and a client that waits for an answer
before its next request reads its own writes. A failed ``COMMIT`` fails every write of the
group.

Writes stay serialised by the store's write lock (SQLite has one writer). The lock is free
between the writes of a group; whoever takes it meanwhile (a checkpoint, say) runs while the
transaction is open, and the commit waits for the lock in turn. A group is committed early once
it holds :data:`MAX_WRITES` writes or has been open :data:`MAX_SECONDS`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from dsf_core.fhir.storage.inline import InlineConnection

__all__ = ["MAX_SECONDS", "MAX_WRITES", "TURNS", "GroupCommit", "Member"]

log = logging.getLogger(__name__)

MAX_WRITES = 64
MAX_SECONDS = 0.005
#: turns of the event loop a group stays open (see the module docstring)
TURNS = 3


@dataclass(eq=False)
class Member:
    """One write of a group: its connection (inside its savepoint) and what it hands to ``on_commit``."""

    conn: InlineConnection
    payload: Any = None


@dataclass(eq=False)
class _Group:
    conn: InlineConnection
    transaction: Any  # SQLAlchemy RootTransaction
    opened: float
    done: asyncio.Future[None]
    members: list[Member] = field(default_factory=list)


class GroupCommit:
    """The kept-open SQLite write connection and the transaction the current writes share."""

    def __init__(self, engine: Engine, lock: asyncio.Lock, on_commit: Callable[[list[Any]], None]) -> None:
        self.engine = engine
        self.lock = lock
        #: called right after each COMMIT with the members' payloads in commit order
        self.on_commit = on_commit
        self.writer: InlineConnection | None = None
        self._group: _Group | None = None
        self._flushing: set[asyncio.Task[None]] = set()
        #: groups committed and writes they held (for tests and metrics)
        self.commits = 0
        self.writes = 0

    @asynccontextmanager
    async def join(self) -> AsyncIterator[Member]:
        """A write in the current group; returns once its group has committed (raises if not)."""
        async with self.lock:
            group = self._group or self._open()
            member = Member(group.conn)
            raw = _raw(group.conn)
            try:
                raw.execute("SAVEPOINT write")
            except Exception as exc:
                self._abandon(group, exc)
                raise
            try:
                yield member
            except BaseException:
                self._undo(group)
                raise
            try:
                raw.execute("RELEASE write")
            except Exception as exc:
                self._abandon(group, exc)
                raise
            group.members.append(member)
            if len(group.members) >= MAX_WRITES or time.monotonic() - group.opened >= MAX_SECONDS:
                self._commit(group)
        await asyncio.shield(group.done)

    async def close(self) -> None:
        """Commit what is open and close the connection."""
        async with self.lock:
            if self._group is not None:
                self._commit(self._group)
        for task in list(self._flushing):
            await task
        if self.writer is not None:
            writer, self.writer = self.writer, None
            writer.sync.close()

    # --- the group's life -------------------------------------------------------------

    def _connection(self) -> InlineConnection:
        """The kept-open write connection; one that broke, or that a failed rollback left inside
        a transaction, is replaced."""
        writer = self.writer
        if writer is not None and (writer.sync.closed or writer.sync.invalidated or writer.sync.in_transaction()):
            writer.sync.close()
            writer = None
        if writer is None:
            writer = self.writer = InlineConnection(self.engine.connect().execution_options(sqlite_immediate=True))
            # A savepoint keeps the original of every page it changes (the sub-journal), by default in
            # a temporary file: ~50 µs of a Task's write. In memory it costs ~10 µs; it holds the pages
            # one write changes, so a large transaction Bundle needs that much memory until it ends.
            _raw(writer).execute("PRAGMA temp_store = MEMORY")
        return writer

    def _open(self) -> _Group:
        conn = self._connection()
        loop = asyncio.get_running_loop()
        group = _Group(conn, conn.sync.begin(), time.monotonic(), loop.create_future())
        self._group = group
        loop.call_soon(self._tick, group, TURNS)
        return group

    def _tick(self, group: _Group, turns: int) -> None:
        if turns > 1 and self._group is group:
            asyncio.get_running_loop().call_soon(self._tick, group, turns - 1)
        else:
            self._flush(group)

    def _flush(self, group: _Group) -> None:
        """Commit now, or once the write holding the lock is done."""
        if self._group is not group:
            return
        if not self.lock.locked():
            self._commit(group)
            return
        task = asyncio.get_running_loop().create_task(self._flush_locked(group))
        self._flushing.add(task)
        task.add_done_callback(self._flushing.discard)

    async def _flush_locked(self, group: _Group) -> None:
        async with self.lock:
            if self._group is group:
                self._commit(group)

    def _commit(self, group: _Group) -> None:
        self._group = None
        try:
            group.transaction.commit()
        except Exception as exc:
            log.error("SQLite commit of %d writes failed: %s", len(group.members), exc)
            self._fail(group, exc)
            return
        self.commits += 1
        self.writes += len(group.members)
        try:
            self.on_commit([m.payload for m in group.members])
        except Exception:  # committed is committed: the listeners' trouble is theirs
            log.exception("after-commit callback failed")
        group.done.set_result(None)

    def _undo(self, group: _Group) -> None:
        """Roll back the failed write's savepoint; if even that fails, the whole group."""
        raw = _raw(group.conn)
        try:
            raw.execute("ROLLBACK TO write")
            raw.execute("RELEASE write")
        except Exception as exc:
            self._abandon(group, exc)

    def _abandon(self, group: _Group, exc: Exception) -> None:
        """The connection failed inside the group: every write of it fails."""
        log.error("SQLite failed inside a group of writes, the %d writes before fail too: %s", len(group.members), exc)
        if self._group is group:
            self._group = None
        self._fail(group, exc)

    def _fail(self, group: _Group, exc: Exception) -> None:
        try:
            group.transaction.rollback()
        except Exception:  # a broken connection: the next group gets a new one
            log.warning("SQLite rollback failed; the write connection will be replaced", exc_info=True)
        if not group.done.done():
            group.done.set_exception(exc)
            if not group.members:
                group.done.exception()  # nobody waits: mark it retrieved


def _raw(conn: InlineConnection) -> Any:
    raw = conn.sync.connection.dbapi_connection
    assert raw is not None
    return raw
