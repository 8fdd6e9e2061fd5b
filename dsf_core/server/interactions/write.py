"""FHIR create, update, delete (plain and conditional), and permanent delete.

https://hl7.org/fhir/R4/http.html#create — each ``*_in`` function runs inside a write
transaction handed in by the caller, so a transaction Bundle can chain them; the
plain functions open their own transaction.  Reference checks run before commit.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl

from dsf_core.errors import InvalidRequest, MethodNotAllowed, NotFound, PreconditionFailed
from dsf_core.fhir.authz import rules
from dsf_core.fhir.resource_types import default_profiles
from dsf_core.fhir.search import criterion_clause, find_internal, parse_search
from dsf_core.fhir.storage.store import WriteTx
from dsf_core.fhir.validation import validate_structure
from dsf_core.server.interactions.context import Ctx, WriteResult

_ETAG = re.compile(r'^(?:W/)?"?(\d+)"?$')


def parse_etag(value: str | None) -> int | None:
    if value is None:
        return None
    match = _ETAG.match(value.strip())
    if match is None:
        raise InvalidRequest(f"If-Match must be a version ETag like W/\"3\", got {value!r}")
    return int(match.group(1))


def prepare(ctx: Ctx, resource: dict[str, Any], type_: str) -> dict[str, Any]:
    """Check shape and type; drop server-managed meta; add the DSF default profile."""
    if not isinstance(resource, dict):
        raise InvalidRequest("request body is not a FHIR resource")
    if resource.get("resourceType") != type_:
        raise InvalidRequest(f"resourceType {resource.get('resourceType')!r} does not match the URL type {type_}")
    meta = resource.get("meta")
    if isinstance(meta, dict):
        meta.pop("versionId", None)
        meta.pop("lastUpdated", None)
        if not meta:
            resource.pop("meta")
    validate_structure(resource)
    defaults = default_profiles(type_) if ctx.dsf_rules else ()
    if defaults:
        meta = resource.setdefault("meta", {})
        profiles = meta.setdefault("profile", [])
        if not any(p in defaults for p in profiles):
            profiles.insert(0, defaults[0])
    return resource


async def matches(tx: WriteTx, ctx: Ctx, type_: str, query: str | Sequence[tuple[str, str]]) -> list[Any]:
    """Resources matching a conditional query (unfiltered: a conditional write must see duplicates)."""
    params = parse_qsl(query, keep_blank_values=True) if isinstance(query, str) else list(query)
    if not params:
        raise InvalidRequest("conditional request without search parameters")
    request = parse_search(type_, params, strict=True)
    await tx.lock(f"conditional|{type_}|{sorted(params)}")
    clauses = [criterion_clause(type_, c, ctx.base_url) for c in request.criteria]
    return await find_internal(tx, type_, clauses, limit=2)


async def create_in(
    tx: WriteTx,
    ctx: Ctx,
    resource: dict[str, Any],
    *,
    if_none_exist: str | None = None,
    blob_id: str | None = None,
    id_: str | None = None,
    check_references: bool = True,
) -> WriteResult:
    type_ = resource.get("resourceType", "")
    if if_none_exist:
        found = await matches(tx, ctx, type_, if_none_exist.split("?", 1)[-1])
        if len(found) > 1:
            raise PreconditionFailed(f"If-None-Exist matched more than one {type_}")
        if found:
            return WriteResult(200, found[0], "resource exists already (If-None-Exist)")
    await rules.authorize_create(tx, ctx.identity, resource, ctx.local_identifier)
    stored = await tx.create(resource, blob_id=blob_id, id_=id_)
    if check_references and ctx.dsf_rules:
        await rules.check_references(tx, resource, base_url=ctx.base_url, content=stored.content)
    return WriteResult(201, stored)


async def update_in(
    tx: WriteTx,
    ctx: Ctx,
    type_: str,
    id_: str,
    resource: dict[str, Any],
    *,
    if_match: int | None = None,
    blob_id: str | None = None,
    check_references: bool = True,
) -> WriteResult:
    if resource.get("id") not in (None, id_):
        raise InvalidRequest(f"resource id {resource.get('id')!r} does not match the URL id {id_!r}")
    current = await tx.current(type_, id_, for_update=True)
    if current is None and not ctx.dsf_rules and if_match is None:
        # Data-store mode creates with the client's id, as Blaze and HAPI do (generated data is PUT Type/id).
        await rules.authorize_create(tx, ctx.identity, resource, ctx.local_identifier)
        return WriteResult(201, await tx.create(resource, id_=id_, blob_id=blob_id))
    if current is None:
        if if_match is not None:
            raise PreconditionFailed(f"{type_}/{id_} does not exist, If-Match asked for version {if_match}")
        raise MethodNotAllowed(f"{type_}/{id_} does not exist; update as create is not supported, use POST")
    if if_match is not None and current.version != if_match:
        raise PreconditionFailed(f"{type_}/{id_} is at version {current.version}, If-Match asked for {if_match}")
    await rules.authorize_update(tx, ctx.identity, current, resource)
    stored = await tx.update(resource, id_, expected_version=current.version, blob_id=blob_id)
    if check_references and ctx.dsf_rules:
        await rules.check_references(tx, resource, base_url=ctx.base_url, content=stored.content)
    return WriteResult(200, stored)


async def conditional_update_in(
    tx: WriteTx,
    ctx: Ctx,
    type_: str,
    query: str | Sequence[tuple[str, str]],
    resource: dict[str, Any],
    *,
    if_match: int | None = None,
    check_references: bool = True,
) -> WriteResult:
    found = await matches(tx, ctx, type_, query)
    if len(found) > 1:
        raise PreconditionFailed(f"conditional update matched more than one {type_}")
    if not found:
        if resource.get("id"):
            raise InvalidRequest("conditional update that creates a resource must not carry an id")
        return await create_in(tx, ctx, resource, check_references=check_references)
    if resource.get("id") not in (None, found[0].id):
        raise InvalidRequest(f"resource id {resource.get('id')!r} does not match the matched {found[0].reference}")
    return await update_in(tx, ctx, type_, found[0].id, resource, if_match=if_match, check_references=check_references)


async def delete_in(tx: WriteTx, ctx: Ctx, type_: str, id_: str) -> WriteResult:
    current = await tx.current(type_, id_, for_update=True)
    if current is None:
        raise NotFound(f"{type_}/{id_} not found")
    if current.deleted:
        return WriteResult(200, current, f"{type_}/{id_} was deleted already")
    rules.authorize_delete(ctx.identity, current)
    stored = await tx.delete(type_, id_)
    return WriteResult(200, stored, f"{type_}/{id_} deleted")


async def conditional_delete_in(tx: WriteTx, ctx: Ctx, type_: str, query: str | Sequence[tuple[str, str]]) -> WriteResult:
    found = await matches(tx, ctx, type_, query)
    if len(found) > 1:
        raise PreconditionFailed(f"conditional delete matched more than one {type_}")
    if not found:
        return WriteResult(204, None, "nothing matched, nothing deleted")
    return await delete_in(tx, ctx, type_, found[0].id)


async def create(ctx: Ctx, resource: dict[str, Any], *, if_none_exist: str | None = None) -> WriteResult:
    async with ctx.store.write() as tx:
        return await create_in(tx, ctx, resource, if_none_exist=if_none_exist)


async def update(ctx: Ctx, type_: str, id_: str, resource: dict[str, Any], *, if_match: int | None = None) -> WriteResult:
    async with ctx.store.write() as tx:
        return await update_in(tx, ctx, type_, id_, resource, if_match=if_match)


async def conditional_update(
    ctx: Ctx, type_: str, query: Sequence[tuple[str, str]], resource: dict[str, Any], *, if_match: int | None = None
) -> WriteResult:
    async with ctx.store.write() as tx:
        return await conditional_update_in(tx, ctx, type_, query, resource, if_match=if_match)


async def delete(ctx: Ctx, type_: str, id_: str) -> WriteResult:
    async with ctx.store.write() as tx:
        return await delete_in(tx, ctx, type_, id_)


async def conditional_delete(ctx: Ctx, type_: str, query: Sequence[tuple[str, str]]) -> WriteResult:
    async with ctx.store.write() as tx:
        return await conditional_delete_in(tx, ctx, type_, query)


async def permanent_delete(ctx: Ctx, type_: str, id_: str) -> int:
    """``$permanent-delete``: every version gone, history included (local organisation only)."""
    rules.authorize_permanent_delete(ctx.identity, type_, id_)
    async with ctx.store.write() as tx:
        current = await tx.current(type_, id_)
        if current is None:
            raise NotFound(f"{type_}/{id_} not found")
        if not current.deleted and type_ == "Task":
            rules.authorize_delete(ctx.identity, current)
        return await tx.permanent_delete(type_, id_)


__all__ = [
    "conditional_delete",
    "conditional_update",
    "create",
    "delete",
    "parse_etag",
    "permanent_delete",
    "prepare",
    "update",
]
