"""SQLite's kept-open connections.

Writes share one: a failed write leaves nothing behind, a broken connection is replaced.
Reads share another while it is free; overlapping reads take pooled ones.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import text

from dsf_core.fhir.storage.store import Store


@pytest_asyncio.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(f"sqlite:///{tmp_path / 'fhir.sqlite'}")
    yield s
    await s.close()


async def _create(store: Store) -> str:
    async with store.write() as tx:
        return (await tx.create({"resourceType": "Task", "status": "draft", "intent": "order"})).id


async def _exists(store: Store, id_: str) -> bool:
    async with store.read() as tx:
        return await tx.current("Task", id_) is not None


async def test_a_failed_write_leaves_nothing_and_the_next_one_works(store: Store) -> None:
    created: list[str] = []
    with pytest.raises(RuntimeError):
        async with store.write() as tx:
            created.append((await tx.create({"resourceType": "Task", "status": "draft", "intent": "order"})).id)
            raise RuntimeError("refused after the insert")
    assert not await _exists(store, created[0])
    assert await _exists(store, await _create(store))


@pytest.mark.parametrize("damage", ["invalidated", "closed", "left-in-a-transaction"])
async def test_a_broken_writer_is_replaced(store: Store, damage: str) -> None:
    await _create(store)
    assert store.group is not None
    writer = store.group.writer
    assert writer is not None
    if damage == "invalidated":
        writer.sync.invalidate()
    elif damage == "closed":
        writer.sync.close()
    else:
        writer.sync.begin()
        writer.sync.execute(text("SELECT 1"))
    assert await _exists(store, await _create(store))
    assert store.group.writer is not writer


async def test_reads_see_every_commit_and_overlapping_reads_get_their_own_connection(store: Store) -> None:
    first = await _create(store)
    async with store.read() as outer:
        assert await outer.current("Task", first) is not None
        # a write and a read while the kept reader is in use: the inner read is pooled
        second = await _create(store)
        async with store.read() as inner:
            assert inner.conn is not outer.conn
            assert await inner.current("Task", second) is not None
        # the kept reader, between statements, sees the newer commit too
        assert await outer.current("Task", second) is not None
    async with store.read() as again:
        assert again.conn is outer.conn  # the kept reader is free again
        assert await again.current("Task", second) is not None


async def test_a_failing_read_frees_the_kept_reader(store: Store) -> None:
    id_ = await _create(store)
    with pytest.raises(RuntimeError):
        async with store.read() as tx:
            kept = tx.conn
            raise RuntimeError("the caller failed")
    async with store.read() as tx:
        assert tx.conn is kept and await tx.current("Task", id_) is not None
