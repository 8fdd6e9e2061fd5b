"""Start-up upkeep of the schema and the search index: new columns and indexes, re-indexing types
whose parameters changed.

``create_all`` creates missing tables with their indexes, but neither a column nor an index added
later to a table that exists; ``upgrade`` adds those (nullable columns only, e.g. ``blobs.location``
of schema 3; ``CREATE INDEX`` on a large store takes a while, once) and drop the indexes a later
schema replaced (``RETIRED_INDEXES``).

Index rows are written with each resource, from the registry as it was then.  When a parameter
of a type is added or its paths change, the rows of resources stored before are missing or
stale and searches would silently miss them.  Each type's parameters therefore have a
fingerprint, and ``search_params_state`` keeps the fingerprint the stored rows were built with.
At start-up (``Store.migrate``, inside the migration transaction that PostgreSQL workers
serialise on an advisory lock) the rows of every type whose fingerprint differs are rebuilt,
batch by batch, and the new fingerprints recorded.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import orjson
from sqlalchemy import delete, false, insert, inspect, select, text

from dsf_core.fhir.indexing import index_rows
from dsf_core.fhir.resource_types import RESOURCE_TYPES, STORE_EXTRA_TYPES
from dsf_core.fhir.search_params import params_for
from dsf_core.fhir.storage.schema import metadata, resources, search_index, search_params_state

log = logging.getLogger(__name__)

# Bump when indexing.py changes the rows a parameter yields (not only when the registry changes).
INDEXER_VERSION = 2
_BATCH = 1000


async def upgrade(conn: Any) -> None:
    """Add columns and indexes missing from existing tables, then re-index what changed."""
    await conn.run_sync(_add_missing_columns)
    await conn.run_sync(_create_missing_indexes)
    await reindex_changed(conn)


def _add_missing_columns(sync_conn: Any) -> None:
    inspector = inspect(sync_conn)
    for table in metadata.sorted_tables:
        present = {c["name"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in present:
                continue
            if not column.nullable:
                raise RuntimeError(f"cannot add the NOT NULL column {table.name}.{column.name} to an existing table")
            log.info("schema: adding column %s.%s", table.name, column.name)
            type_ = column.type.compile(dialect=sync_conn.dialect)
            sync_conn.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {type_}"))


#: indexes earlier schemas had and this one replaced (dropped at start-up)
RETIRED_INDEXES = ("ix_search_value", "ix_search_norm")


def _create_missing_indexes(sync_conn: Any) -> None:
    present = {name for table in metadata.sorted_tables for name in _index_names(sync_conn, table.name)}
    for table in metadata.sorted_tables:
        for index in table.indexes:
            if index.name not in present:
                log.info("schema: creating index %s (on a large store this takes a while, once)", index.name)
                index.create(sync_conn)
    for name in RETIRED_INDEXES:
        if name in present:
            log.info("schema: dropping the index %s (replaced)", name)
            sync_conn.execute(text(f"DROP INDEX {name}"))


def _index_names(sync_conn: Any, table: str) -> set[str]:
    return {str(index["name"]) for index in inspect(sync_conn).get_indexes(table)}


def fingerprints() -> dict[str, str]:
    """Per type: a digest of its search parameters and of the indexer version."""
    result: dict[str, str] = {}
    for type_ in (*RESOURCE_TYPES, *STORE_EXTRA_TYPES):
        params = sorted(repr((p.name, p.type, p.paths, p.targets, p.only_targets)) for p in params_for(type_).values())
        result[type_] = hashlib.sha256(repr((INDEXER_VERSION, params)).encode()).hexdigest()
    return result


async def reindex_changed(conn: Any) -> list[str]:
    """Rebuild the index rows of every type whose parameters changed; returns those types."""
    recorded = {row.type: row.fingerprint for row in (await conn.execute(select(search_params_state))).all()}
    wanted = fingerprints()
    changed = sorted(t for t, digest in wanted.items() if recorded.get(t) != digest)
    if not changed:
        return []
    empty = (await conn.execute(select(resources.c.rid).limit(1))).first() is None
    if not empty:
        for type_ in changed:
            log.info("search parameters of %s changed: rebuilding its search index", type_)
            count = await _reindex(conn, type_)
            log.info("search index of %s rebuilt for %d resources", type_, count)
    await conn.execute(delete(search_params_state).where(search_params_state.c.type.in_(changed)))
    await conn.execute(insert(search_params_state), [{"type": t, "fingerprint": wanted[t]} for t in changed])
    return changed


async def _reindex(conn: Any, type_: str) -> int:
    last, done = -1, 0
    while True:
        batch = (
            await conn.execute(
                select(resources.c.rid, resources.c.content)
                .where(
                    resources.c.type == type_,
                    resources.c.current,
                    resources.c.deleted == false(),
                    resources.c.rid > last,
                )
                .order_by(resources.c.rid)
                .limit(_BATCH)
            )
        ).all()
        if not batch:
            return done
        rids = [row.rid for row in batch]
        await conn.execute(delete(search_index).where(search_index.c.rid.in_(rids)))
        rows = [
            {"rid": row.rid, "type": type_, "param": r.param, "system": r.system, "value": r.value, "norm": r.norm,
             "low": r.low, "high": r.high}
            for row in batch
            if row.content is not None
            for r in index_rows(orjson.loads(row.content))
        ]
        if rows:
            await conn.execute(insert(search_index), rows)
        last, done = rids[-1], done + len(batch)
        if done % (_BATCH * 100) == 0:
            log.info("search index of %s: %d resources rebuilt so far", type_, done)
