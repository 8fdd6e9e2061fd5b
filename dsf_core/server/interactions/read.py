"""FHIR read, vread, search and history.

https://hl7.org/fhir/R4/http.html#read — read access is checked in SQL with the same
clause search uses, so what a peer can read, search and page through agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from functools import lru_cache
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, bindparam, exists, false, func, or_, select, true

from dsf_core.errors import Forbidden, Gone, InvalidRequest, NotFound
from dsf_core.fhir.authz.access import access_clause, access_for, may_read_statement
from dsf_core.fhir.authz.identity import Identity
from dsf_core.fhir.authz.rules import audit_decision
from dsf_core.fhir.dates import DateError, date_range
from dsf_core.fhir.resource_types import RESOURCE_TYPES
from dsf_core.fhir.search import SearchRequest, SearchResult, execute_search, parse_search
from dsf_core.fhir.storage.schema import resources
from dsf_core.fhir.storage.store import RESOURCE_COLUMNS, ReadTx, Stored
from dsf_core.server.interactions.context import Ctx


_H = resources.alias("h")
_NEWER = resources.alias("newer")


async def _may_read(tx: ReadTx, ctx: Ctx, stored: Stored) -> bool:
    stmt = may_read_statement(ctx.identity, stored.type)
    if stmt is None:
        return True
    return (await tx.conn.execute(stmt, {"rid": stored.rid})).first() is not None


async def _may_read_history_of(tx: ReadTx, ctx: Ctx, type_: str, id_: str) -> bool:
    """History and old versions: visible when the identity may read the current version.

    The local organisation sees the history of everything on its own mailbox, deletions included.
    """
    if ctx.identity.unrestricted or ctx.identity.kind == "local":
        return True
    current = await tx.current(type_, id_)
    return current is not None and not current.deleted and await _may_read(tx, ctx, current)


@lru_cache(maxsize=4096)
def _read_statement(identity: Identity, type_: str) -> Select[Any]:
    """The current row of an id plus whether the identity may read it: one round trip per read."""
    clause = access_clause(identity, type_)
    allowed = (clause if clause is not None else true()).label("allowed")
    return select(*RESOURCE_COLUMNS, allowed).where(
        resources.c.type == type_, resources.c.id == bindparam("i"), resources.c.current
    )


async def read(ctx: Ctx, type_: str, id_: str) -> Stored:
    async with ctx.store.read() as tx:
        row = await tx.first(_read_statement(ctx.identity, type_), {"i": id_})
        if row is None:
            raise NotFound(f"{type_}/{id_} not found")
        current = Stored.from_row(row)
        if current.deleted:
            raise Gone(f"{type_}/{id_} was deleted", headers={"ETag": current.etag})
        if not row.allowed:
            audit_decision(ctx.identity, "Read", current.reference, False, "no read access")
            raise Forbidden(f"read of {type_}/{id_} not allowed for {ctx.identity.name}")
        return current


async def vread(ctx: Ctx, type_: str, id_: str, version: str) -> Stored:
    try:
        number = int(version)
    except ValueError:
        raise NotFound(f"{type_}/{id_}/_history/{version} not found") from None
    async with ctx.store.read() as tx:
        stored = await tx.version(type_, id_, number)
        if stored is None:
            raise NotFound(f"{type_}/{id_}/_history/{version} not found")
        if not await _may_read_history_of(tx, ctx, type_, id_):
            audit_decision(ctx.identity, "Read", f"{type_}/{id_}/_history/{version}", False, "no read access")
            raise Forbidden(f"read of {type_}/{id_} not allowed for {ctx.identity.name}")
        if stored.deleted:
            raise Gone(f"{type_}/{id_} version {version} is a deletion")
        return stored


async def search(ctx: Ctx, type_: str, params: Sequence[tuple[str, str]], *, strict: bool) -> tuple[SearchRequest, SearchResult]:
    request = parse_search(type_, params, strict=strict, default_count=ctx.page_count, max_count=ctx.max_count)
    async with ctx.store.read() as tx:
        result = await execute_search(
            tx,
            request,
            access_for(ctx.identity),
            base_url=ctx.base_url,
            count_key=(request.criteria, ctx.identity, ctx.base_url),
        )
    return request, result


@dataclass
class HistoryResult:
    total: int
    count: int
    page: int
    entries: list[Stored] = field(default_factory=list)
    echo: list[tuple[str, str]] = field(default_factory=list)


def _instant(name: str, value: str) -> int:
    try:
        return date_range(value.replace(" ", "+"))[0]
    except DateError:
        raise InvalidRequest(f"{name} must be a FHIR instant, got {value!r}") from None


async def history(
    ctx: Ctx, type_: str | None, id_: str | None, params: Sequence[tuple[str, str]]
) -> HistoryResult:
    """System, type or instance history, newest first; ``_since``, ``_at``, ``_count``, ``_page``."""
    h = _H
    count, page = ctx.page_count, 1
    where: list[ColumnElement[bool]] = []
    echo: list[tuple[str, str]] = []
    for name, value in params:
        if name == "_count":
            count = min(int(value), ctx.max_count) if value.isdigit() else ctx.page_count
        elif name == "_page":
            page = max(1, int(value)) if value.isdigit() else 1
        elif name == "_since":
            where.append(h.c.last_updated >= _instant("_since", value))
        elif name == "_at":
            at = _instant("_at", value)
            newer = _NEWER
            where.append(h.c.last_updated <= at)
            where.append(
                ~exists().where(
                    newer.c.type == h.c.type,
                    newer.c.id == h.c.id,
                    newer.c.version > h.c.version,
                    newer.c.last_updated <= at,
                )
            )
        elif name in ("_format", "_pretty"):
            continue
        else:
            raise InvalidRequest(f"unsupported history parameter {name!r}")
        if name != "_page":
            echo.append((name, value))
    if type_ is not None:
        where.append(h.c.type == type_)
    if id_ is not None:
        where.append(h.c.id == id_)
    async with ctx.store.read() as tx:
        if id_ is not None and type_ is not None:
            if await tx.current(type_, id_) is None:
                raise NotFound(f"{type_}/{id_} not found")
            if not await _may_read_history_of(tx, ctx, type_, id_):
                raise Forbidden(f"history of {type_}/{id_} not allowed for {ctx.identity.name}")
        elif not (ctx.identity.unrestricted or ctx.identity.kind == "local"):
            where.append(_remote_history_clause(ctx, h, type_))
        total = int((await tx.conn.execute(select(func.count()).select_from(h).where(*where))).scalar_one())
        columns = [h.c[c.name] for c in RESOURCE_COLUMNS]
        stmt = (
            select(*columns)
            .where(*where)
            .order_by(h.c.last_updated.desc(), h.c.rid.desc())
            .limit(count)
            .offset((page - 1) * count)
        )
        entries = [Stored.from_row(r) for r in (await tx.conn.execute(stmt)).all()] if count else []
    return HistoryResult(total, count, page, entries, echo)


def _remote_history_clause(ctx: Ctx, h: Any, type_: str | None) -> ColumnElement[bool]:
    """A remote identity sees history entries of resources whose current version it may read."""
    options = []
    for t in [type_] if type_ else list(RESOURCE_TYPES):
        clause = access_clause(ctx.identity, t)
        visible = select(resources.c.rid).where(
            resources.c.type == h.c.type,
            resources.c.id == h.c.id,
            resources.c.current,
            resources.c.deleted == false(),
            *([clause] if clause is not None else []),
        )
        options.append(and_(h.c.type == t, exists(visible)))
    return or_(*options)
