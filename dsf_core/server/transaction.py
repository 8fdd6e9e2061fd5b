"""Batch and transaction Bundles (https://hl7.org/fhir/R4/http.html#transaction).

Transaction: one database transaction, all or nothing.  ``urn:uuid`` (and other)
``fullUrl``s of POST and PUT entries are resolved to the ids the entries will get,
conditional references (``Organization?identifier=…``) to the one resource they match,
then entries run in FHIR order (DELETE, POST, PUT, GET) and reference checks run once
at the end, so entries may reference each other in any order.

Batch: every entry on its own; a failing entry gets its status and OperationOutcome
in ``Bundle.entry.response`` and the others go on.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl

import orjson

from dsf_core.errors import DsfError, InvalidRequest, NotFound, PreconditionFailed, outcome_of
from dsf_core.fhir.authz import rules
from dsf_core.fhir.dates import format_instant
from dsf_core.fhir.ids import new_id
from dsf_core.fhir.indexing import walk_references
from dsf_core.fhir.search import criterion_clause, find_internal, parse_search
from dsf_core.fhir.storage.store import Stored, WriteTx
from dsf_core.server.interactions import read as read_i
from dsf_core.server.interactions import write as write_i
from dsf_core.server.interactions.context import Ctx, WriteResult

ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}
STATUS_TEXT = {200: "200 OK", 201: "201 Created", 204: "204 No Content"}


class _Entry:
    def __init__(self, index: int, raw: dict[str, Any], base_url: str) -> None:
        self.index = index
        self.raw = raw
        request = raw.get("request") or {}
        self.method = str(request.get("method") or "").upper()
        url = str(request.get("url") or "")
        if url.startswith(base_url + "/"):
            url = url[len(base_url) + 1 :]
        self.url = url.lstrip("/")
        self.full_url = raw.get("fullUrl")
        resource = raw.get("resource")
        self.resource: dict[str, Any] = resource if isinstance(resource, dict) else {}
        self.has_resource = isinstance(resource, dict)
        self.if_none_exist = request.get("ifNoneExist")
        self.if_match = request.get("ifMatch")
        if self.method not in ORDER:
            raise InvalidRequest(f"entry {index}: request.method {self.method or 'missing'} not supported")
        if not self.url:
            raise InvalidRequest(f"entry {index}: request.url missing")
        path, _, query = self.url.partition("?")
        self.path = path
        self.query = query
        parts = path.split("/")
        self.type = parts[0]
        self.id = parts[1] if len(parts) > 1 and parts[1] else None
        self.target_id: str | None = None
        self.blob_id: str | None = None
        self.result: WriteResult | None = None
        if self.method in ("POST", "PUT") and not self.has_resource:
            raise InvalidRequest(f"entry {index}: {self.method} needs a resource")
        if self.method in ("POST", "PUT") and self.resource.get("resourceType") != self.type:
            raise InvalidRequest(f"entry {index}: resource type does not match request.url {self.url}")


async def _resolve_query(tx: WriteTx, ctx: Ctx, type_: str, query: str) -> list[Stored]:
    params = parse_qsl(query, keep_blank_values=True)
    request = parse_search(type_, params, strict=True)
    return await find_internal(tx, type_, [criterion_clause(type_, c, ctx.base_url) for c in request.criteria], limit=2)


async def _prepare_blobs(ctx: Ctx, entries: list[_Entry]) -> None:
    for e in entries:
        if e.method in ("POST", "PUT") and e.type == "Binary" and "data" in e.resource:
            try:
                payload = base64.b64decode(e.resource.pop("data") or "", validate=True)
            except ValueError:
                raise InvalidRequest(f"entry {e.index}: Binary.data is not valid base64") from None

            async def one(p: bytes = payload) -> AsyncIterator[bytes]:
                yield p

            e.blob_id, _ = await ctx.store.write_blob(one())


def _response_entry(ctx: Ctx, entry: _Entry | None, result: WriteResult) -> dict[str, Any]:
    out: dict[str, Any] = {}
    stored = result.stored
    status = STATUS_TEXT.get(result.status, str(result.status))
    if stored is not None and not stored.deleted:
        out["fullUrl"] = f"{ctx.base_url}/{stored.type}/{stored.id}"
        out["resource"] = orjson.Fragment(stored.content or "{}")
        out["response"] = {
            "status": status,
            "location": f"{ctx.base_url}/{stored.type}/{stored.id}/_history/{stored.version}",
            "etag": stored.etag,
            "lastModified": format_instant(stored.last_updated),
        }
    else:
        out["response"] = {"status": status}
    return out


async def _get(ctx: Ctx, entry: _Entry, strict: bool) -> dict[str, Any]:
    from dsf_core.server import bundles

    if entry.id is not None:
        stored = await read_i.read(ctx, entry.type, entry.id)
        return {
            "fullUrl": f"{ctx.base_url}/{stored.type}/{stored.id}",
            "resource": orjson.Fragment(stored.content or "{}"),
            "response": {"status": "200 OK", "etag": stored.etag, "lastModified": format_instant(stored.last_updated)},
        }
    request, result = await read_i.search(ctx, entry.type, parse_qsl(entry.query, keep_blank_values=True), strict=strict)
    return {"resource": bundles.searchset(ctx.base_url, request, result, ctx.store.clock()), "response": {"status": "200 OK"}}


async def _run_transaction(ctx: Ctx, entries: list[_Entry]) -> None:
    async with ctx.store.write() as tx:
        ids: dict[str, str] = {}
        # 1. which id does each POST/PUT entry write?
        for e in entries:
            if e.method == "POST":
                if e.if_none_exist:
                    found = await write_i.matches(tx, ctx, e.type, str(e.if_none_exist).split("?", 1)[-1])
                    if len(found) > 1:
                        raise PreconditionFailed(f"entry {e.index}: ifNoneExist matched more than one {e.type}")
                    if found:
                        e.result = WriteResult(200, found[0], "exists already")
                        e.target_id = found[0].id
                e.target_id = e.target_id or new_id()
            elif e.method == "PUT":
                if e.id is not None:
                    e.target_id = e.id
                elif e.query:
                    found = await write_i.matches(tx, ctx, e.type, e.query)
                    if len(found) > 1:
                        raise PreconditionFailed(f"entry {e.index}: conditional update matched more than one {e.type}")
                    e.target_id = found[0].id if found else None
                else:
                    raise InvalidRequest(f"entry {e.index}: PUT needs Type/id or Type?query")
            if e.full_url and e.method in ("POST", "PUT"):
                ids[str(e.full_url)] = f"{e.type}/{e.target_id or '__new__' + str(e.index)}"
        new_ids: dict[int, str] = {}
        for e in entries:
            if e.method == "PUT" and e.target_id is None:
                new_ids[e.index] = new_id()
                if e.full_url:
                    ids[str(e.full_url)] = f"{e.type}/{new_ids[e.index]}"

        # 2. rewrite references: fullUrls and conditional references
        async def resolve_conditional(value: str) -> str:
            type_, _, query = value.partition("?")
            found = await _resolve_query(tx, ctx, type_, query)
            if len(found) != 1:
                raise PreconditionFailed(f"conditional reference {value} matched {len(found)} resources (exactly one needed)")
            return f"{type_}/{found[0].id}"

        conditional: list[str] = []

        def collect(value: str) -> str:
            if "?" in value and not value.startswith("#") and value not in ids:
                conditional.append(value)
            return value

        for e in entries:
            if e.has_resource:
                walk_references(e.resource, collect)
        resolved = {v: await resolve_conditional(v) for v in set(conditional)}
        for e in entries:
            if e.has_resource:
                walk_references(e.resource, lambda v: ids.get(v, resolved.get(v, v)))

        # 3. run in FHIR order
        written: list[dict[str, Any]] = []
        for e in sorted(entries, key=lambda x: (ORDER[x.method], x.index)):
            try:
                if e.method == "DELETE":
                    if e.id is not None:
                        e.result = await write_i.delete_in(tx, ctx, e.type, e.id)
                    else:
                        e.result = await write_i.conditional_delete_in(tx, ctx, e.type, e.query)
                elif e.method == "POST" and e.result is None:
                    resource = write_i.prepare(ctx, e.resource, e.type)
                    e.result = await write_i.create_in(
                        tx, ctx, resource, id_=e.target_id, blob_id=e.blob_id, check_references=False
                    )
                    written.append(resource)
                elif e.method == "PUT":
                    resource = write_i.prepare(ctx, e.resource, e.type)
                    if e.target_id is None:
                        resource.pop("id", None)
                        e.result = await write_i.create_in(
                            tx, ctx, resource, id_=new_ids[e.index], blob_id=e.blob_id, check_references=False
                        )
                    else:
                        current = await tx.current(e.type, e.target_id)
                        if current is None and ctx.dsf_rules:  # a data store creates with the given id
                            raise NotFound(f"{e.type}/{e.target_id} not found (update as create is not supported)")
                        e.result = await write_i.update_in(
                            tx,
                            ctx,
                            e.type,
                            e.target_id,
                            resource,
                            if_match=write_i.parse_etag(e.if_match),
                            blob_id=e.blob_id,
                            check_references=False,
                        )
                    written.append(resource)
            except DsfError as exc:
                exc.message = f"entry {e.index} ({e.method} {e.url}): {exc.message}"
                raise
        if ctx.dsf_rules:
            for resource in written:
                await rules.check_references(tx, resource, base_url=ctx.base_url)


async def process(ctx: Ctx, bundle: dict[str, Any], *, strict: bool) -> dict[str, Any]:
    kind = bundle.get("type")
    raw_entries = bundle.get("entry") or []
    if not isinstance(raw_entries, list):
        raise InvalidRequest("Bundle.entry must be a list")
    now = format_instant(ctx.store.clock())
    if kind == "transaction":
        entries = [_Entry(i, raw, ctx.base_url) for i, raw in enumerate(raw_entries)]
        await _prepare_blobs(ctx, entries)
        try:
            await _run_transaction(ctx, entries)
        except BaseException:
            for e in entries:
                if e.blob_id:
                    await ctx.store.delete_blob(e.blob_id)
            raise
        response_entries = []
        for e in entries:
            if e.method in ("GET", "HEAD"):
                response_entries.append(await _get(ctx, e, strict))
            else:
                assert e.result is not None
                response_entries.append(_response_entry(ctx, e, e.result))
        return {
            "resourceType": "Bundle",
            "id": new_id(),
            "meta": {"lastUpdated": now},
            "type": "transaction-response",
            "entry": response_entries,
        }
    out: list[dict[str, Any]] = []
    for i, raw in enumerate(raw_entries):
        try:
            entry = _Entry(i, raw, ctx.base_url)
            if entry.method in ("GET", "HEAD"):
                out.append(await _get(ctx, entry, strict))
                continue
            await _prepare_blobs(ctx, [entry])
            try:
                await _run_transaction(ctx, [entry])
            except BaseException:
                if entry.blob_id:
                    await ctx.store.delete_blob(entry.blob_id)
                raise
            assert entry.result is not None
            out.append(_response_entry(ctx, entry, entry.result))
        except DsfError as exc:
            out.append({"response": {"status": f"{exc.status}", "outcome": outcome_of(exc)}})
    return {
        "resourceType": "Bundle",
        "id": new_id(),
        "meta": {"lastUpdated": now},
        "type": "batch-response",
        "entry": out,
    }


__all__ = ["process"]
