"""SQLite's write-ahead log copied back into the database file without stalling the event loop.

A checkpoint ends in an fsync (~15 ms here). Done by the committing connection (SQLite's
default, every 1,000 WAL pages) it stalls the event loop, and with it every request in flight.
The store checkpoints on a worker thread instead, every :data:`CHECKPOINT_EVERY` commits,
alongside the writers. Under steady writes such a checkpoint may not complete (frames arrive
while it copies), and the WAL starts over only after one that did: once an incomplete one leaves
:data:`RESTART_PAGES` in the WAL, the checkpoint runs once more holding the write lock (~13 ms),
completes, and the next writer starts the WAL over. Writers thus wait every few thousand commits
instead of every hundred (a stall every 100 creates is exactly the p99). The committing
connections checkpoint themselves only past :data:`AUTOCHECKPOINT_PAGES` (a safety net for very
large transactions).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy import Engine, event

__all__ = ["AUTOCHECKPOINT_PAGES", "CHECKPOINT_EVERY", "RESTART_PAGES", "Checkpointer", "defer_checkpoints"]

log = logging.getLogger(__name__)

CHECKPOINT_EVERY = 100
RESTART_PAGES = 4_096
AUTOCHECKPOINT_PAGES = 10_000


def defer_checkpoints(engine: Engine) -> None:
    """Let the committing connections checkpoint only past :data:`AUTOCHECKPOINT_PAGES`."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute(f"PRAGMA wal_autocheckpoint={AUTOCHECKPOINT_PAGES}").close()


class Checkpointer:
    """Counts the store's commits and checkpoints on a worker thread (see the module docstring)."""

    def __init__(self, engine: Engine, write_lock: asyncio.Lock) -> None:
        self.engine = engine
        self.write_lock = write_lock
        self.commits = 0  # since the last checkpoint
        self.running: asyncio.Task[None] | None = None
        #: checkpoints done, and how many had to finish under the write lock (for tests)
        self.checkpoints = 0
        self.locked = 0

    def committed(self) -> None:
        self.commits += 1
        if self.commits >= CHECKPOINT_EVERY and self.running is None:
            self.commits = 0
            self.running = asyncio.get_running_loop().create_task(self._checkpoint())

    async def wait(self) -> None:
        """Until the checkpoint under way (if any) is done."""
        if self.running is not None:
            await self.running

    async def _checkpoint(self) -> None:
        try:
            frames, copied = await asyncio.to_thread(self.passive)
            if copied < frames and frames >= RESTART_PAGES:
                async with self.write_lock:
                    await asyncio.to_thread(self.passive)
                self.locked += 1
            self.checkpoints += 1
        except Exception:  # the next checkpoint (or SQLite's own, past AUTOCHECKPOINT_PAGES) catches up
            log.exception("SQLite checkpoint failed")
        finally:
            self.running = None

    def passive(self) -> tuple[int, int]:
        """One PASSIVE checkpoint: the pages the WAL holds and how many of them are copied back."""
        raw = self.engine.raw_connection()
        try:
            driver: Any = raw.driver_connection
            cursor = driver.execute("PRAGMA wal_checkpoint(PASSIVE)")
            try:
                row = cursor.fetchone()
            finally:
                cursor.close()
        finally:
            raw.close()
        if row is None or row[1] is None or row[1] < 0:
            return 0, 0
        return int(row[1]), int(row[2])
