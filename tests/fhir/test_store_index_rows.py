"""A resource's search-index rows are all written, however many (SQLite inserts them in chunks)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select

from dsf_core.fhir.indexing import index_rows
from dsf_core.fhir.search import find
from dsf_core.fhir.storage.schema import search_index
from dsf_core.fhir.storage.store import Store


async def test_every_index_row_of_a_resource_with_hundreds_is_written(tmp_path: Path) -> None:
    store = await Store.open(f"sqlite:///{tmp_path / 'fhir.sqlite'}")
    try:
        organization = {
            "resourceType": "Organization",
            "active": True,
            "identifier": [{"system": "http://example.org/sid/o", "value": f"o-{n}"} for n in range(1234)],
        }
        expected = len(index_rows(organization))
        assert expected > 1234  # more rows than one statement takes
        async with store.write() as tx:
            stored = await tx.create(organization)
        async with store.read() as tx:
            count = (await tx.conn.execute(select(func.count()).where(search_index.c.rid == stored.rid))).scalar()
            assert count == expected
            for value in ("o-0", "o-99", "o-100", "o-1233"):
                found = await find(tx, "Organization", [("identifier", f"http://example.org/sid/o|{value}")])
                assert [s.id for s in found] == [stored.id]
    finally:
        await store.close()
