"""Versioned resource storage on SQLite or PostgreSQL (SQLAlchemy 2 async, Core).

``Store.write()`` opens one write transaction (``WriteTx``); everything done in it —
resource versions, search-index rows, read-access rows, blob links — commits or rolls
back together.  Events for subscriptions are published only after commit, and so are the
file removals a permanent delete asks for (``WriteTx.after_commit``).  Binary payloads are
``Store.blobs`` (``blobs.py``: files in ``binary_dir``, or chunk rows).

Concurrency: SQLite has one writer, so writes of a process are serialised by an
asyncio lock (and ``BEGIN IMMEDIATE`` guards against other processes); the writes of a
few event-loop turns share one transaction, each in its own savepoint, and return once
it has committed (``group_commit.py``).  On PostgreSQL
writers run concurrently; uniqueness checks take ``pg_advisory_xact_lock`` on the
key they protect (``WriteTx.lock``) so two transactions cannot both see "absent",
and the current row of an id is locked ``FOR UPDATE`` before a new version is added.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import (
    Engine,
    Select,
    bindparam,
    create_engine,
    delete,
    event,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from dsf_core.errors import Conflict, PreconditionFailed
from dsf_core.fhir.dates import format_instant
from dsf_core.fhir.ids import new_id
from dsf_core.fhir.indexing import index_rows
from dsf_core.fhir.read_access import read_access_of
from dsf_core.fhir.storage import migrations, schema
from dsf_core.fhir.storage.blobs import STALE_SECONDS, BlobInfo, BlobStore
from dsf_core.fhir.storage.caches import TypeCache
from dsf_core.fhir.storage.group_commit import GroupCommit
from dsf_core.fhir.storage.inline import InlineConnection, InlineEngine, RawRow
from dsf_core.fhir.storage.schema import (
    read_access,
    resources,
    search_index,
    store_info,
)
from dsf_core.fhir.storage.wal import Checkpointer, defer_checkpoints
from dsf_core.fhir.xml import json_default

log = logging.getLogger(__name__)

Clock = Callable[[], int]  # milliseconds since the epoch


def system_clock() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class Stored:
    """One stored version of a resource."""

    rid: int
    type: str
    id: str
    version: int
    last_updated: int
    deleted: bool
    method: str
    content: str | None
    blob_id: str | None = None

    @property
    def resource(self) -> dict[str, Any]:
        if self.content is None:
            raise ValueError(f"{self.type}/{self.id} version {self.version} is a deletion")
        return orjson.loads(self.content)  # type: ignore[no-any-return]

    @property
    def etag(self) -> str:
        return f'W/"{self.version}"'

    @property
    def reference(self) -> str:
        return f"{self.type}/{self.id}"

    @classmethod
    def from_row(cls, row: Any) -> Stored:
        m = row._mapping
        return cls(
            m["rid"], m["type"], m["id"], m["version"], m["last_updated"], m["deleted"], m["method"], m["content"], m["blob_id"]
        )


@dataclass(frozen=True, slots=True)
class ResourceEvent:
    """A committed write, for websocket subscriptions."""

    method: str  # POST, PUT, DELETE
    stored: Stored


RESOURCE_COLUMNS = (
    resources.c.rid,
    resources.c.type,
    resources.c.id,
    resources.c.version,
    resources.c.last_updated,
    resources.c.deleted,
    resources.c.method,
    resources.c.content,
    resources.c.blob_id,
)


# Built once: constructing SQLAlchemy statements costs more than running these indexed lookups.
_CURRENT = select(*RESOURCE_COLUMNS).where(
    resources.c.type == bindparam("t"), resources.c.id == bindparam("i"), resources.c.current
)
_VERSION = select(*RESOURCE_COLUMNS).where(
    resources.c.type == bindparam("t"), resources.c.id == bindparam("i"), resources.c.version == bindparam("v")
)

# A new version's rows, as tuples in column order (the SQLite path hands them to sqlite3 as they are).
_RESOURCE_KEYS = ("type", "id", "version", "last_updated", "deleted", "current", "method", "content", "blob_id")
_INDEX_KEYS = ("param", "system", "value", "norm", "low", "high")
_ACCESS_KEYS = ("access", "organization", "parent", "role_system", "role_code")
_INSERT_RESOURCE = insert(resources).returning(resources.c.rid)
_INSERT_INDEX = insert(search_index)
_INSERT_ACCESS = insert(read_access)

_CHANNEL = "dsf_resources"


# statement id -> (statement kept alive, SQL with $n placeholders, bind names in order, defaults)
_PG_COMPILED: dict[int, tuple[Any, str, tuple[str, ...], dict[str, Any]]] = {}


async def _first_asyncpg(conn: AsyncConnection, stmt: Select[Any], parameters: dict[str, Any]) -> Any:
    """One row of a prebuilt SELECT straight through asyncpg, outside a transaction.

    A single read needs no BEGIN/ROLLBACK round trips, and asyncpg's own statement cache
    skips SQLAlchemy's execution machinery (several times the cost of the lookup itself).
    """
    entry = _PG_COMPILED.get(id(stmt))
    if entry is None or entry[0] is not stmt:
        compiled = stmt.compile(dialect=conn.dialect)
        if "POSTCOMPILE" in compiled.string:
            return (await conn.execute(stmt, parameters)).first()
        entry = (stmt, compiled.string, tuple(compiled.positiontup or ()), dict(compiled.params))
        if len(_PG_COMPILED) > 10_000:
            _PG_COMPILED.clear()
        _PG_COMPILED[id(stmt)] = entry
    _, sql, names, defaults = entry
    raw = await conn.get_raw_connection()
    driver = raw.driver_connection
    assert driver is not None
    record = await driver.fetchrow(sql, *[parameters[n] if n in parameters else defaults[n] for n in names])
    return None if record is None else RawRow(dict(record))


def normalize_database_url(url: str) -> str:
    """Accept SQLAlchemy URLs, plain ``postgresql://`` and Java-style ``jdbc:postgresql://``."""
    if url.startswith("jdbc:"):
        url = url[len("jdbc:") :]
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+asyncpg://" + url.split("://", 1)[1]
    if url.startswith("sqlite:///"):
        url = "sqlite+aiosqlite:///" + url[len("sqlite:///") :]
    return url


class ReadTx:
    """Reads inside one database transaction."""

    def __init__(self, store: Store, conn: AsyncConnection | InlineConnection) -> None:
        self.store = store
        self.conn = conn

    @property
    def dialect(self) -> str:
        return self.store.dialect

    async def first(self, stmt: Select[Any], parameters: dict[str, Any]) -> Any:
        """The first row of a long-lived prebuilt SELECT (raw fast path on SQLite), or None."""
        if isinstance(self.conn, InlineConnection):
            return await self.conn.first_raw(stmt, parameters)
        if not self.conn.in_transaction():
            return await _first_asyncpg(self.conn, stmt, parameters)
        return (await self.conn.execute(stmt, parameters)).first()

    async def rows(self, stmt: Select[Any]) -> Sequence[Row[Any]]:
        result: Sequence[Row[Any]] = (await self.conn.execute(stmt)).all()
        return result

    async def current(self, type_: str, id_: str, *, for_update: bool = False) -> Stored | None:
        """The current version (possibly a deletion) of an id, or None if it never existed."""
        if for_update and isinstance(self, WriteTx):
            # Lock the id, not the row: the current row of a concurrent writer stops being current when it
            # commits, and FOR UPDATE on it would then find nothing under READ COMMITTED.
            await self.lock(f"resource|{type_}|{id_}")
        row = await self.first(_CURRENT, {"t": type_, "i": id_})
        return Stored.from_row(row) if row else None

    async def version(self, type_: str, id_: str, version: int) -> Stored | None:
        row = (await self.conn.execute(_VERSION, {"t": type_, "i": id_, "v": version})).first()
        return Stored.from_row(row) if row else None

    async def by_rids(self, rids: Sequence[int]) -> list[Stored]:
        if not rids:
            return []
        result = await self.conn.execute(select(*RESOURCE_COLUMNS).where(resources.c.rid.in_(list(rids))))
        by_rid = {row.rid: Stored.from_row(row) for row in result}
        return [by_rid[r] for r in rids if r in by_rid]


class WriteTx(ReadTx):
    """A write transaction; all-or-nothing."""

    def __init__(self, store: Store, conn: AsyncConnection | InlineConnection) -> None:
        super().__init__(store, conn)
        self.events: list[ResourceEvent] = []
        #: run once the transaction has committed (and the SQLite write lock is released)
        self.after_commit: list[Callable[[], Awaitable[None]]] = []
        self._locked: set[str] = set()

    async def lock(self, key: str) -> None:
        """Serialise transactions that check-then-write the same uniqueness key (PostgreSQL)."""
        if self.dialect != "postgresql" or key in self._locked:
            return
        self._locked.add(key)
        await self.conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": key})

    def _stamp(self, resource: dict[str, Any], id_: str, version: int, ts: int) -> str:
        meta = resource.get("meta")
        if not isinstance(meta, dict):
            meta = {}
        # resourceType, id and meta first, as FHIR servers render them
        stamped: dict[str, Any] = {
            "resourceType": resource["resourceType"],
            "id": id_,
            "meta": {"versionId": str(version), "lastUpdated": format_instant(ts)}
            | {k: v for k, v in meta.items() if k not in ("versionId", "lastUpdated")},
        }
        stamped.update((k, v) for k, v in resource.items() if k not in ("resourceType", "id", "meta"))
        resource.clear()
        resource.update(stamped)
        return orjson.dumps(resource, default=json_default).decode()

    async def _insert_version(
        self, resource: dict[str, Any], id_: str, version: int, method: str, blob_id: str | None
    ) -> Stored:
        type_ = resource["resourceType"]
        ts = self.store.next_timestamp()
        content = self._stamp(resource, id_, version, ts)
        row = (type_, id_, version, ts, False, True, method, content, blob_id)
        index = [(r.param, r.system, r.value, r.norm, r.low, r.high) for r in index_rows(resource)]
        access = [(a.access, a.organization, a.parent, a.role_system, a.role_code) for a in read_access_of(resource)]
        if isinstance(self.conn, InlineConnection):
            rid = self.conn.insert_version_raw(row, index, access)
        else:
            rid = (await self.conn.execute(_INSERT_RESOURCE, dict(zip(_RESOURCE_KEYS, row, strict=True)))).scalar_one()
            if index:
                await self.conn.execute(
                    _INSERT_INDEX, [{"rid": rid, "type": type_} | dict(zip(_INDEX_KEYS, r, strict=True)) for r in index]
                )
            if access:
                await self.conn.execute(_INSERT_ACCESS, [{"rid": rid} | dict(zip(_ACCESS_KEYS, a, strict=True)) for a in access])
        stored = Stored(rid, type_, id_, version, ts, False, method, content, blob_id)
        self.events.append(ResourceEvent(method, stored))
        return stored

    async def _retire(self, previous: Stored) -> None:
        await self.conn.execute(update(resources).where(resources.c.rid == previous.rid).values(current=False))
        await self.conn.execute(delete(search_index).where(search_index.c.rid == previous.rid))

    async def create(self, resource: dict[str, Any], *, id_: str | None = None, blob_id: str | None = None) -> Stored:
        """Store version 1 of a new resource (a fresh UUID unless ``id_`` is given)."""
        created_id = id_ or new_id()
        if id_ is not None and await self.current(resource["resourceType"], created_id) is not None:
            raise Conflict(f"{resource['resourceType']}/{created_id} exists already")
        if blob_id is not None:
            await self.store.blobs.link(self, blob_id)
        return await self._insert_version(resource, created_id, 1, "POST", blob_id)

    async def update(
        self,
        resource: dict[str, Any],
        id_: str,
        *,
        expected_version: int | None = None,
        blob_id: str | None = None,
        keep_blob: bool = True,
    ) -> Stored:
        """Store a new version of an existing id (a deleted id is revived, as FHIR allows)."""
        type_ = resource["resourceType"]
        previous = await self.current(type_, id_, for_update=True)
        if previous is None:
            raise Conflict(f"{type_}/{id_} does not exist")
        if expected_version is not None and previous.version != expected_version:
            raise PreconditionFailed(
                f"version conflict: {type_}/{id_} is at version {previous.version}, If-Match asked for {expected_version}"
            )
        await self._retire(previous)
        if blob_id is not None:
            await self.store.blobs.link(self, blob_id)
        elif keep_blob:
            blob_id = previous.blob_id
        return await self._insert_version(resource, id_, previous.version + 1, "PUT", blob_id)

    async def delete(self, type_: str, id_: str) -> Stored | None:
        """Logical delete: a deletion version becomes current.  None if there was nothing to delete."""
        previous = await self.current(type_, id_, for_update=True)
        if previous is None or previous.deleted:
            return None
        await self._retire(previous)
        ts = self.store.next_timestamp()
        version = previous.version + 1
        rid = (
            await self.conn.execute(
                insert(resources)
                .values(
                    type=type_,
                    id=id_,
                    version=version,
                    last_updated=ts,
                    deleted=True,
                    current=True,
                    method="DELETE",
                    content=None,
                    blob_id=None,
                )
                .returning(resources.c.rid)
            )
        ).scalar_one()
        stored = Stored(rid, type_, id_, version, ts, True, "DELETE", None, None)
        self.events.append(ResourceEvent("DELETE", stored))
        return stored

    async def permanent_delete(self, type_: str, id_: str) -> int:
        """Remove every version of an id, its index rows and its payloads.  Returns the versions removed."""
        rows = (
            await self.conn.execute(
                select(resources.c.rid, resources.c.blob_id).where(resources.c.type == type_, resources.c.id == id_)
            )
        ).all()
        rids = [r.rid for r in rows]
        blob_ids = sorted({r.blob_id for r in rows if r.blob_id})
        if not rids:
            return 0
        await self.conn.execute(delete(search_index).where(search_index.c.rid.in_(rids)))
        await self.conn.execute(delete(read_access).where(read_access.c.rid.in_(rids)))
        await self.conn.execute(delete(resources).where(resources.c.rid.in_(rids)))
        await self.store.blobs.delete_in(self, blob_ids)
        return len(rids)


@dataclass
class Store:
    """The mailbox's resource store.  Create with ``await Store.open(url)``."""

    engine: Any  # AsyncEngine (PostgreSQL) or InlineEngine (SQLite)
    dialect: str
    clock: Clock = system_clock
    #: where new Binary payloads go as files; None: chunk rows in the database
    binary_dir: Path | None = None
    listeners: list[Callable[[ResourceEvent], None]] = field(default_factory=list)
    store_id: str = ""  # store_info.store_id, read at start-up
    blobs: BlobStore = field(init=False)
    _write_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _last_ts: int = 0
    _caches: dict[str, TypeCache] = field(default_factory=dict)
    _listener: Any = None  # asyncpg connection LISTENing for other workers' writes
    group: GroupCommit | None = None  # SQLite: the write connection and the writes committed together
    _reader: InlineConnection | None = None  # SQLite: the connection reads go through while it is free
    _reader_busy: bool = False
    wal: Checkpointer | None = None  # SQLite: checkpoints on a worker thread

    def __post_init__(self) -> None:
        self.blobs = BlobStore(self, self.binary_dir)

    def type_cache(self, name: str, *types: str) -> TypeCache:
        """The named cache of values derived from resources of ``types`` (created on first use)."""
        cache = self._caches.get(name)
        if cache is None:
            cache = self._caches[name] = TypeCache(frozenset(types), self._cache_ttl())
        return cache

    def _cache_ttl(self) -> float | None:
        # SQLite is one process: invalidation is complete.  PostgreSQL workers tell each other about
        # writes (NOTIFY); the TTL is the safety net for notifications lost while reconnecting.
        if self.dialect == "sqlite":
            return None
        return 60.0 if self._listener is not None else 5.0

    @property
    def exact_invalidation(self) -> bool:
        """Whether every committed write (of any worker) reaches ``type_cache`` invalidation promptly."""
        return self.dialect == "sqlite" or self._listener is not None

    def invalidate(self, types: set[str]) -> None:
        for cache in self._caches.values():
            if cache.types & types:
                cache.clear()

    async def _listen(self) -> None:
        """LISTEN for writes of other workers sharing this PostgreSQL database."""
        import asyncpg  # type: ignore[import-untyped]

        dsn = self.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        try:
            connection = await asyncpg.connect(dsn)
            await connection.add_listener(_CHANNEL, self._on_notify)
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("cannot LISTEN for other workers' writes (%s); caches expire after 5 s instead", exc)
            return
        connection.add_termination_listener(self._on_listener_lost)
        self._listener = connection
        for cache in self._caches.values():
            cache.ttl = self._cache_ttl()

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self.invalidate(set(payload.split(",")))

    def _on_listener_lost(self, _conn: Any) -> None:
        log.warning("lost the LISTEN connection; caches expire after 5 s until restart")
        self._listener = None
        for cache in self._caches.values():
            cache.ttl = 5.0
            cache.clear()

    @classmethod
    async def open(
        cls, url: str, *, clock: Clock = system_clock, pool_size: int = 5, binary_dir: Path | None = None
    ) -> Store:
        """Connect, migrate the schema, claim ``binary_dir`` and sweep what crashes left of payloads.

        Raises :class:`~dsf_core.fhir.storage.blobs.BinaryStorageError` when ``binary_dir`` belongs
        to another database, or when payloads are files and ``binary_dir`` is None.
        """
        url = normalize_database_url(url)
        if url.startswith("sqlite"):
            sync_url = url.replace("sqlite+aiosqlite://", "sqlite://", 1)
            engine: Any = InlineEngine(
                create_engine(sync_url, pool_size=pool_size, max_overflow=10, connect_args={"check_same_thread": False})
            )
            configure_sqlite(engine.sync_engine)
            defer_checkpoints(engine.sync_engine)
            dialect = "sqlite"
        else:
            engine = create_async_engine(
                url,
                pool_size=max(pool_size, 20),
                max_overflow=20,
                pool_pre_ping=True,
                # asyncpg prepares statements; PostgreSQL's generic plans for them join and sort every
                # match of a search instead of stopping at the page, so plan each execution.
                connect_args={"server_settings": {"plan_cache_mode": "force_custom_plan"}},
            )
            dialect = "postgresql"
        store = cls(engine, dialect, clock, binary_dir)
        if dialect == "sqlite":
            store.wal = Checkpointer(engine.sync_engine, store._write_lock)
            store.group = GroupCommit(engine.sync_engine, store._write_lock, store._committed)
        try:
            await store.migrate()
            await store.blobs.open(store.store_id)
            # One process owns a SQLite store; PostgreSQL workers may be writing payloads right now.
            await store.blobs.sweep(stale_seconds=0.0 if dialect == "sqlite" else STALE_SECONDS)
        except BaseException:
            if store.group is not None:
                await store.group.close()
            await engine.dispose()
            raise
        if dialect == "postgresql":
            await store._listen()
        return store

    async def close(self) -> None:
        if self.group is not None:
            await self.group.close()
        if self.wal is not None:
            await self.wal.wait()
        if self._reader is not None:
            reader, self._reader = self._reader, None
            reader.sync.close()
        await self.blobs.close()
        if self._listener is not None:
            listener, self._listener = self._listener, None
            await listener.close()
        await self.engine.dispose()

    def next_timestamp(self) -> int:
        """Strictly increasing write time in ms, so ``_lastUpdated=gt<t>`` never skips a write of this process."""
        ts = max(self.clock(), self._last_ts + 1)
        self._last_ts = ts
        return ts

    async def migrate(self) -> None:
        async with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                # Two workers starting together must not both create the schema.
                await conn.execute(text("SELECT pg_advisory_xact_lock(4242001)"))
            await conn.run_sync(schema.metadata.create_all)
            current: Sequence[int] = (await conn.execute(select(schema.schema_version.c.version))).scalars().all()
            if schema.SCHEMA_VERSION not in current:
                await conn.execute(
                    insert(schema.schema_version).values(version=schema.SCHEMA_VERSION, applied=self.clock())
                )
            await migrations.upgrade(conn)
            store_id = (await conn.execute(select(store_info.c.value).where(store_info.c.key == "store_id"))).scalar()
            if store_id is None:
                store_id = uuid.uuid4().hex
                await conn.execute(insert(store_info).values(key="store_id", value=store_id))
            self.store_id = str(store_id)
            if self.dialect == "sqlite":
                await conn.execute(text("PRAGMA optimize"))

    @asynccontextmanager
    async def read(self) -> AsyncIterator[ReadTx]:
        if self.dialect == "sqlite" and not self._reader_busy:
            # SQLite statements run on the event-loop thread, so a read rarely overlaps another:
            # one kept-open connection serves them (a pool checkout and check-in cost more than
            # reading a Task); a read that starts while it is in use takes a pooled one.
            conn = self._sqlite_reader()
            self._reader_busy = True
            try:
                yield ReadTx(self, conn)
            finally:
                self._reader_busy = False
                await conn.rollback()
            return
        async with self.engine.connect() as conn:
            yield ReadTx(self, conn)
            await conn.rollback()

    def _sqlite_reader(self) -> InlineConnection:
        reader = self._reader
        if reader is not None and (reader.sync.closed or reader.sync.invalidated):
            reader.sync.close()
            reader = None
        if reader is None:
            reader = self._reader = InlineConnection(self.engine.sync_engine.connect())
        return reader

    @asynccontextmanager
    async def write(self) -> AsyncIterator[WriteTx]:
        if self.group is not None:
            async with self.group.join() as member:
                tx = WriteTx(self, member.conn)
                yield tx
                member.payload = tx.events
                # this process's caches at once; again at the commit (a read may refill them before)
                self.invalidate({ev.stored.type for ev in tx.events})
            await self._after_commit(tx)
        else:
            async with self.engine.connect() as conn:
                tx = WriteTx(self, conn)
                async with conn.begin():
                    yield tx
                    if tx.events:
                        # delivered to every listening worker when (and only if) this commits
                        types = ",".join(sorted({ev.stored.type for ev in tx.events}))
                        await conn.execute(text("SELECT pg_notify(:c, :p)"), {"c": _CHANNEL, "p": types})
                self._publish(tx.events)
            await self._after_commit(tx)

    def _committed(self, groups: list[list[ResourceEvent]]) -> None:
        """SQLite: a group of writes committed (``GroupCommit.on_commit``)."""
        for events in groups:
            self._publish(events)
        if self.wal is not None:
            self.wal.committed()

    @staticmethod
    async def _after_commit(tx: WriteTx) -> None:
        for action in tx.after_commit:
            try:
                await action()
            except Exception:  # committed is committed; what is left behind the start-up sweep removes
                log.exception("action after commit failed")

    def _publish(self, events: list[ResourceEvent]) -> None:
        self.invalidate({ev.stored.type for ev in events})
        for ev in events:
            for listener in list(self.listeners):
                try:
                    listener(ev)
                except Exception:  # a broken listener must not undo a committed write
                    log.exception("resource event listener failed")

    # --- blobs (blobs.py) ------------------------------------------------------------

    async def write_blob(self, chunks: AsyncIterable[bytes]) -> tuple[str, int]:
        """Stream a payload in; it stays invisible until a resource version names it (``blob_id``)."""
        return await self.blobs.write(chunks)

    async def delete_blob(self, blob_id: str) -> None:
        """Remove a payload no committed version names (after a failed or refused write)."""
        await self.blobs.discard(blob_id)

    async def blob_info(self, blob_id: str) -> BlobInfo | None:
        return await self.blobs.info(blob_id)

    async def read_blob(self, blob_id: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Yield bytes ``start`` .. ``end`` (inclusive) of a payload, a piece at a time."""
        info = await self.blobs.info(blob_id)
        if info is not None:
            async for piece in self.blobs.read(info, start, end):
                yield piece


def configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the driver so BEGIN IMMEDIATE can be issued for writes.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Straight to sqlite3: SQLAlchemy's statement execution costs several times the BEGIN itself.
        conn.connection.dbapi_connection.execute(
            "BEGIN IMMEDIATE" if conn.get_execution_options().get("sqlite_immediate") else "BEGIN"
        )
