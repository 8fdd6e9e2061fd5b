"""SQLite checkpoints run on a worker thread every so many commits; nothing written is lost."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from dsf_core.fhir.storage import wal
from dsf_core.fhir.storage.schema import resources
from dsf_core.fhir.storage.store import Store


async def _write_tasks(store: Store, count: int) -> None:
    for _ in range(count):
        async with store.write() as tx:
            await tx.create({"resourceType": "Task", "status": "draft", "intent": "order"})
        await asyncio.sleep(0)  # as between requests: the checkpoint task gets its turn


async def _until(condition, timeout: float = 30.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    return bool(condition())


async def test_checkpoints_run_in_the_background_and_lose_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fhir.sqlite'}"
    store = await Store.open(url)
    try:
        raw = store.engine.sync_engine.raw_connection()
        try:
            assert raw.driver_connection.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == wal.AUTOCHECKPOINT_PAGES
        finally:
            raw.close()
        await _write_tasks(store, 2 * wal.CHECKPOINT_EVERY + 1)
        assert await _until(lambda: store.wal.checkpoints >= 2)
    finally:
        await store.close()
    reopened = await Store.open(url)
    try:
        async with reopened.read() as tx:
            count = (await tx.conn.execute(select(func.count()).select_from(resources).where(resources.c.type == "Task"))).scalar()
        assert count == 2 * wal.CHECKPOINT_EVERY + 1
    finally:
        await reopened.close()


async def test_a_failing_checkpoint_leaves_writes_working(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = await Store.open(f"sqlite:///{tmp_path / 'fhir.sqlite'}")
    calls: list[int] = []

    def broken(self: wal.Checkpointer) -> None:
        calls.append(1)
        raise OSError("disk on fire")

    monkeypatch.setattr(wal.Checkpointer, "passive", broken)
    try:
        await _write_tasks(store, 2 * wal.CHECKPOINT_EVERY)
        assert await _until(lambda: len(calls) >= 2 and store.wal.running is None)
        await _write_tasks(store, 1)
        assert store.wal.checkpoints == 0
    finally:
        await store.close()


async def test_the_write_lock_is_taken_only_for_a_large_wal_that_a_checkpoint_could_not_finish(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wal, "CHECKPOINT_EVERY", 20)
    monkeypatch.setattr(wal, "RESTART_PAGES", 1000)
    path = tmp_path / "fhir.sqlite"
    store = await Store.open(f"sqlite:///{path}")
    try:
        # Checkpoints that finish (nobody reads an old snapshot): never under the write lock.
        for _ in range(10):
            await _write_tasks(store, 20)
            await _until(lambda: store.wal.running is None)
        assert store.wal.checkpoints >= 9 and store.wal.locked == 0
        # A reader holding an old snapshot keeps checkpoints from finishing: once the WAL is
        # large, the lock is taken — not for every checkpoint.
        reader = sqlite3.connect(path)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM resources").fetchone()
        before = store.wal.checkpoints
        for _ in range(30):
            await _write_tasks(store, 20)
            await _until(lambda: store.wal.running is None)
        reader.rollback()
        reader.close()
        assert 1 <= store.wal.locked < store.wal.checkpoints - before
    finally:
        await store.close()
