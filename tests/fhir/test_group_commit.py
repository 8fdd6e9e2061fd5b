"""SQLite group commit: writes of a few event-loop turns share one transaction, each in its own savepoint."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import text

from dsf_core.fhir.storage import group_commit
from dsf_core.fhir.storage.store import ResourceEvent, Store


@pytest_asyncio.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(f"sqlite:///{tmp_path / 'fhir.sqlite'}")
    yield s
    await s.close()


def _task(marker: str) -> dict[str, Any]:
    return {"resourceType": "Task", "status": "draft", "intent": "order", "note": [{"text": marker}]}


async def _create(store: Store, marker: str, *, fail: bool = False) -> str:
    async with store.write() as tx:
        stored = await tx.create(_task(marker))
        if fail:
            raise RuntimeError(f"{marker} refused after its insert")
        return stored.id


async def _ids(store: Store) -> set[str]:
    async with store.read() as tx:
        rows = await tx.conn.execute(text("SELECT id FROM resources WHERE type = 'Task' AND current = 1"))
        return {row[0] for row in rows}


async def test_concurrent_writes_commit_together_and_each_returns_after_its_commit(store: Store) -> None:
    assert store.group is not None
    writes, commits = store.group.writes, store.group.commits
    seen: list[int] = []

    async def create_and_read(n: int) -> None:
        id_ = await _create(store, f"w{n}")
        # returned: committed, so a read on another connection finds it
        assert id_ in await _ids(store)
        seen.append(n)

    await asyncio.gather(*(create_and_read(n) for n in range(20)))
    assert sorted(seen) == list(range(20))
    assert store.group.writes - writes == 20
    assert store.group.commits - commits < 20  # grouped


async def test_a_failing_write_rolls_back_only_its_own_changes(store: Store) -> None:
    results = await asyncio.gather(
        *(_create(store, f"w{n}", fail=n % 3 == 0) for n in range(9)), return_exceptions=True
    )
    failed = [r for r in results if isinstance(r, BaseException)]
    kept = {r for r in results if isinstance(r, str)}
    assert len(failed) == 3 and all(isinstance(r, RuntimeError) for r in failed)
    assert await _ids(store) == kept and len(kept) == 6


async def test_events_are_published_once_committed_in_commit_order(store: Store) -> None:
    events: list[ResourceEvent] = []
    visible: list[bool] = []

    def listener(event: ResourceEvent) -> None:
        events.append(event)
        # committed: another connection sees it already
        with sqlite3.connect(db) as conn:
            visible.append(conn.execute("SELECT 1 FROM resources WHERE rid = ?", (event.stored.rid,)).fetchone() is not None)

    db = store.engine.sync_engine.url.database
    store.listeners.append(listener)
    ids = await asyncio.gather(*(_create(store, f"w{n}") for n in range(5)))
    assert [e.stored.id for e in events] == list(ids)
    assert [e.stored.rid for e in events] == sorted(e.stored.rid for e in events)
    assert visible == [True] * 5


async def test_a_failed_commit_fails_every_write_of_the_group_and_the_next_group_works(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert store.group is not None
    real_open = store.group._open

    def open_failing() -> Any:
        group = real_open()

        class FailingCommit:
            def commit(self) -> None:
                raise sqlite3.OperationalError("disk I/O error (simulated)")

            def rollback(self) -> None:
                group_transaction.rollback()

        group_transaction = group.transaction
        group.transaction = FailingCommit()
        return group

    monkeypatch.setattr(store.group, "_open", open_failing)
    results = await asyncio.gather(*(_create(store, f"w{n}") for n in range(4)), return_exceptions=True)
    assert all(isinstance(r, sqlite3.OperationalError) for r in results), results
    assert await _ids(store) == set()
    monkeypatch.undo()
    after = await _create(store, "after")
    assert await _ids(store) == {after}


async def test_a_cancelled_writer_does_not_take_its_group_down(store: Store) -> None:
    first = asyncio.ensure_future(_create(store, "cancelled"))
    second = asyncio.ensure_future(_create(store, "kept"))
    await asyncio.sleep(0)  # both wrote; their group is not committed yet
    assert await _ids(store) == set()
    first.cancel()
    kept = await second
    with pytest.raises(asyncio.CancelledError):
        await first
    # the cancelled writer had written: its insert was committed with the group, as a write
    # whose client went away after the commit
    ids = await _ids(store)
    assert kept in ids and len(ids) == 2


async def test_a_group_open_while_another_holds_the_lock_commits_after_it(store: Store) -> None:
    assert store.group is not None
    writer = asyncio.ensure_future(_create(store, "w"))
    await asyncio.sleep(0)
    async with store.group.lock:  # e.g. a checkpoint finishing under the lock
        for _ in range(group_commit.TURNS + 2):
            await asyncio.sleep(0)
        assert not writer.done()  # the commit waits for the lock
    id_ = await asyncio.wait_for(writer, 5)
    assert id_ in await _ids(store)


async def test_close_commits_the_open_group(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fhir.sqlite'}"
    store = await Store.open(url)
    writer = asyncio.ensure_future(_create(store, "w"))
    await asyncio.sleep(0)
    await store.close()
    id_ = await writer
    reopened = await Store.open(url)
    try:
        assert await _ids(reopened) == {id_}
    finally:
        await reopened.close()
