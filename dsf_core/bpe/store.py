"""The engine's own database: deployed specs, process instances, the due-time index.

One schema for SQLite (the default, ``engine.sqlite`` under the node's data directory) and
PostgreSQL:

``bpe_process_specs``  one row per process id + version: the serialized spec, stored once
``bpe_instances``      one row per instance: state without the spec, its FHIR Tasks,
                       status, business key, and ``next_due`` — the earliest timer of the
                       instance (indexed, so the scheduler asks for due instances instead of
                       scanning them)
``bpe_waits``          what each running instance waits for by name (signals), kept with
                       every save, so a signal reaches exactly the instances that catch it
``bpe_handled_tasks``  every Task id the engine took on, so a Task seen twice (websocket push
                       and catch-up) is handled once
``bpe_last_events``    the connectors' last event time per resource type

Every save of an instance is one transaction (state, waits, handled Tasks).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.ext.asyncio import create_async_engine

from dsf_core.fhir.storage.inline import InlineEngine
from dsf_core.fhir.storage.store import configure_sqlite, normalize_database_url

__all__ = ["EngineStore", "InstanceRow", "SpecRow"]

metadata = MetaData()

process_specs = Table(
    "bpe_process_specs",
    metadata,
    Column("process_id", String(255), primary_key=True),
    Column("version", String(40), primary_key=True),
    Column("plugin", String(255), nullable=False),
    Column("plugin_version", String(40), nullable=False),
    Column("digest", String(64), nullable=False),
    Column("spec", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("deployed_at", BigInteger, nullable=False),
)

instances = Table(
    "bpe_instances",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("process_id", String(255), nullable=False),
    Column("version", String(40), nullable=False),
    Column("business_key", String(255), nullable=False),
    Column("status", String(16), nullable=False),  # running | completed | failed
    Column("next_due", BigInteger),  # epoch ms of the earliest timer, NULL when none
    Column("state", Text, nullable=False),
    Column("tasks", Text, nullable=False),
    Column("revision", Integer, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Index("ix_bpe_instances_business_key", "business_key"),
    Index("ix_bpe_instances_due", "status", "next_due"),
)

waits = Table(
    "bpe_waits",
    metadata,
    Column("instance_id", String(36), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("name", String(512), nullable=False),
    Index("ix_bpe_waits_instance", "instance_id"),
    Index("ix_bpe_waits_name", "kind", "name"),
)

handled_tasks = Table(
    "bpe_handled_tasks",
    metadata,
    Column("task_id", String(64), primary_key=True),
    Column("instance_id", String(36)),
    Column("handled_at", BigInteger, nullable=False),
)

last_events = Table(
    "bpe_last_events",
    metadata,
    Column("kind", String(64), primary_key=True),
    Column("last_event", String(64), nullable=False),
)


_PG_INDEXES = """
  d AS (DELETE FROM bpe_waits WHERE instance_id = $1),
  w AS (INSERT INTO bpe_waits (instance_id, kind, name)
        SELECT $1, k, n FROM unnest($12::text[], $13::text[]) AS t(k, n)),
  h AS (INSERT INTO bpe_handled_tasks (task_id, instance_id, handled_at)
        SELECT t, $1, $11 FROM unnest($14::text[]) AS t)
SELECT 1"""

_PG_INSERT = (
    "WITH i AS (INSERT INTO bpe_instances (id, process_id, version, business_key, status, next_due, state, tasks, "
    "revision, updated_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)),"
    + _PG_INDEXES
)
_PG_UPDATE = (
    "WITH u AS (UPDATE bpe_instances SET process_id = $2, version = $3, business_key = $4, status = $5, "
    "next_due = $6, state = $7, tasks = $8, revision = $9, updated_at = $10 WHERE id = $1),"
    + _PG_INDEXES
)


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


@dataclass(frozen=True)
class SpecRow:
    process_id: str
    version: str
    plugin: str
    plugin_version: str
    digest: str
    spec: str
    status: str


@dataclass(frozen=True)
class InstanceRow:
    id: str
    process_id: str
    version: str
    business_key: str
    status: str
    state: str
    tasks: str
    revision: int


class EngineStore:
    """Async access to the engine database (SQLite on the loop thread, or PostgreSQL via asyncpg)."""

    def __init__(self, engine: Any, dialect: str) -> None:
        self.engine = engine
        self.dialect = dialect

    @classmethod
    async def open(cls, url: str) -> EngineStore:
        url = normalize_database_url(url)
        if url.startswith("sqlite"):
            sync = create_engine(
                url.replace("sqlite+aiosqlite://", "sqlite://", 1), connect_args={"check_same_thread": False}
            )
            configure_sqlite(sync)
            store = cls(InlineEngine(sync), "sqlite")
        else:
            store = cls(create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True), "postgresql")
        async with store.engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
        return store

    async def close(self) -> None:
        await self.engine.dispose()

    # -- specs --------------------------------------------------------------------------

    async def load_spec(self, process_id: str, version: str) -> SpecRow | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(process_specs).where(
                        process_specs.c.process_id == process_id, process_specs.c.version == version
                    )
                )
            ).first()
        return None if row is None else SpecRow(**{k: row._mapping[k] for k in SpecRow.__dataclass_fields__})

    async def save_spec(self, row: SpecRow, *, now: datetime) -> None:
        values = {**row.__dict__, "deployed_at": _ms(now)}
        async with self.engine.begin() as conn:
            await conn.execute(
                delete(process_specs).where(
                    process_specs.c.process_id == row.process_id, process_specs.c.version == row.version
                )
            )
            await conn.execute(insert(process_specs).values(**values))

    # -- instances ----------------------------------------------------------------------

    async def save_instance(
        self,
        row: InstanceRow,
        *,
        next_due: datetime | None,
        waits_for: Iterable[tuple[str, str]],
        handled: Sequence[str],
        now: datetime,
        new: bool,
    ) -> None:
        """Insert or update an instance with its wait index and newly handled Task ids, atomically."""
        values = {
            "process_id": row.process_id,
            "version": row.version,
            "business_key": row.business_key,
            "status": row.status,
            "state": row.state,
            "tasks": row.tasks,
            "revision": row.revision,
            "next_due": None if next_due is None or row.status != "running" else _ms(next_due),
            "updated_at": _ms(now),
        }
        wait_rows = [{"instance_id": row.id, "kind": k, "name": n} for k, n in set(waits_for)] if row.status == "running" else []
        if self.dialect == "sqlite":
            await self._save_instance_raw(row.id, values, wait_rows, handled, _ms(now), new)
        else:
            await self._save_instance_asyncpg(row.id, values, wait_rows, handled, _ms(now), new)

    async def _save_instance_raw(
        self, instance_id: str, values: dict[str, Any], wait_rows: list[dict[str, str]], handled: Sequence[str],
        now_ms: int, new: bool,
    ) -> None:
        # The engine saves after every step; SQLAlchemy's statement machinery costs several times
        # what SQLite needs for these four statements, so the hot path goes through sqlite3 directly
        # (inside the transaction SQLAlchemy began, as the mailbox's raw write path does).
        async with self.engine.begin() as conn:
            raw = conn.sync.connection.dbapi_connection
            v = values
            if new:
                raw.execute(
                    "INSERT INTO bpe_instances (id, process_id, version, business_key, status, next_due, state, tasks, "
                    "revision, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (instance_id, v["process_id"], v["version"], v["business_key"], v["status"], v["next_due"],
                     v["state"], v["tasks"], v["revision"], now_ms, v["updated_at"]),
                )
            else:
                raw.execute(
                    "UPDATE bpe_instances SET process_id = ?, version = ?, business_key = ?, status = ?, next_due = ?, "
                    "state = ?, tasks = ?, revision = ?, updated_at = ? WHERE id = ?",
                    (v["process_id"], v["version"], v["business_key"], v["status"], v["next_due"], v["state"],
                     v["tasks"], v["revision"], v["updated_at"], instance_id),
                )
                raw.execute("DELETE FROM bpe_waits WHERE instance_id = ?", (instance_id,))
            if wait_rows:
                raw.executemany("INSERT INTO bpe_waits (instance_id, kind, name) VALUES (?, ?, ?)",
                                [(w["instance_id"], w["kind"], w["name"]) for w in wait_rows])
            if handled:
                raw.executemany("INSERT INTO bpe_handled_tasks (task_id, instance_id, handled_at) VALUES (?, ?, ?)",
                                [(t, instance_id, now_ms) for t in handled])

    async def _save_instance_asyncpg(
        self, instance_id: str, values: dict[str, Any], wait_rows: list[dict[str, str]], handled: Sequence[str],
        now_ms: int, new: bool,
    ) -> None:
        # As on SQLite: the save is the engine's hottest statement group, and SQLAlchemy's async
        # layer costs several times what asyncpg needs. One statement does it all — the row,
        # the wait index (old rows out, new rows in: data-modifying CTEs share one snapshot, so the
        # DELETE cannot see the rows the INSERT adds) and the handled Tasks — which makes it atomic
        # without a transaction block and one round trip; asyncpg prepares and caches it.
        v = values
        write = _PG_INSERT if new else _PG_UPDATE
        async with self.engine.connect() as conn:
            driver = (await conn.get_raw_connection()).driver_connection
            assert driver is not None
            await driver.execute(
                write,
                instance_id, v["process_id"], v["version"], v["business_key"], v["status"], v["next_due"],
                v["state"], v["tasks"], v["revision"], v["updated_at"], now_ms,
                [w["kind"] for w in wait_rows], [w["name"] for w in wait_rows], list(handled),
            )

    async def load_instance(self, instance_id: str) -> InstanceRow | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(instances).where(instances.c.id == instance_id))).first()
        return None if row is None else _instance(row)

    async def running_by_business_key(self, business_key: str) -> list[str]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(instances.c.id).where(instances.c.business_key == business_key, instances.c.status == "running")
            )
            return [r.id for r in rows]

    async def running_ids(self) -> list[str]:
        async with self.engine.connect() as conn:
            return [r.id for r in await conn.execute(select(instances.c.id).where(instances.c.status == "running"))]

    async def waiting_for(self, kind: str, name: str) -> list[str]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(waits.c.instance_id).where(waits.c.kind == kind, waits.c.name == name).distinct()
            )
            return [r.instance_id for r in rows]

    async def due(self, now: datetime, limit: int = 100) -> list[str]:
        """Running instances with a timer due at ``now``, earliest first."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(instances.c.id)
                .where(instances.c.status == "running", instances.c.next_due <= _ms(now))
                .order_by(instances.c.next_due)
                .limit(limit)
            )
            return [r.id for r in rows]

    async def next_due(self) -> datetime | None:
        async with self.engine.connect() as conn:
            value = (
                await conn.execute(select(func.min(instances.c.next_due)).where(instances.c.status == "running"))
            ).scalar()
        return None if value is None else datetime.fromtimestamp(value / 1000, timezone.utc)

    async def count(self, status: str | None = None) -> int:
        async with self.engine.connect() as conn:
            stmt = select(func.count()).select_from(instances)
            if status is not None:
                stmt = stmt.where(instances.c.status == status)
            return int((await conn.execute(stmt)).scalar() or 0)

    # -- handled Tasks and connector state ------------------------------------------------

    async def handled_by(self, task_id: str) -> str | None | bool:
        """The instance a Task was handled by; ``None`` if it was handled without one (failed); ``False`` if never."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(handled_tasks.c.instance_id).where(handled_tasks.c.task_id == task_id))).first()
        return False if row is None else row.instance_id

    async def mark_handled(self, task_id: str, instance_id: str | None, now: datetime) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(delete(handled_tasks).where(handled_tasks.c.task_id == task_id))
            await conn.execute(insert(handled_tasks).values(task_id=task_id, instance_id=instance_id, handled_at=_ms(now)))

    async def load(self, kind: str) -> datetime | None:
        """``LastEventStore.load`` for the connectors."""
        async with self.engine.connect() as conn:
            value = (await conn.execute(select(last_events.c.last_event).where(last_events.c.kind == kind))).scalar()
        return None if value is None else datetime.fromisoformat(value)

    async def save(self, kind: str, at: datetime) -> None:
        """``LastEventStore.save`` for the connectors."""
        async with self.engine.begin() as conn:
            await conn.execute(delete(last_events).where(last_events.c.kind == kind))
            await conn.execute(insert(last_events).values(kind=kind, last_event=at.isoformat()))


def _instance(row: Any) -> InstanceRow:
    m = row._mapping
    return InstanceRow(
        id=m["id"],
        process_id=m["process_id"],
        version=m["version"],
        business_key=m["business_key"],
        status=m["status"],
        state=m["state"],
        tasks=m["tasks"],
        revision=m["revision"],
    )
