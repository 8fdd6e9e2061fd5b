"""Two stores on one PostgreSQL database (two workers): a write of one invalidates the other's caches."""

from __future__ import annotations

import asyncio
import time

from dsf_core.fhir.storage.store import Store
from dsf_core.testing import postgres


async def _eventually(condition, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.01)
    return condition()  # type: ignore[no-any-return]


async def test_writes_of_one_worker_clear_the_caches_of_another(pg_cluster: postgres.PostgresCluster) -> None:
    url = pg_cluster.create_database()
    first, second = await Store.open(url), await Store.open(url)
    try:
        assert first.exact_invalidation and second.exact_invalidation
        cache = second.type_cache("test", "Task")
        cache.put("answer", 42)
        async with first.write() as tx:
            await tx.create({"resourceType": "Task", "status": "draft", "intent": "order"})
        assert await _eventually(lambda: cache.get("answer") is None)
        # a write of another type leaves it alone (notifications arrive in commit order)
        cache.put("answer", 43)
        patients = second.type_cache("patients", "Patient")
        patients.put("answer", 1)
        async with first.write() as tx:
            await tx.create({"resourceType": "Patient"})
        assert await _eventually(lambda: patients.get("answer") is None)
        assert cache.get("answer") == 43
    finally:
        await first.close()
        await second.close()
