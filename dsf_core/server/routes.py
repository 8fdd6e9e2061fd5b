"""HTTP handlers of the mailbox: request → interaction → response.

The route table (``ROUTES``) is data; the CapabilityStatement is derived from it and
from the search-parameter registry.  Handlers only translate HTTP: they parse headers
and bodies, call an interaction and render its result in the negotiated format.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from aiohttp import web

from dsf_core.errors import InvalidRequest, NotFound
from dsf_core.fhir.dates import format_http_date
from dsf_core.fhir.resource_types import RESOURCE_TYPES, STORE_EXTRA_TYPES
from dsf_core.fhir.search_request import parse_elements
from dsf_core.server import binary, bundles, capabilities, elements, keys, transaction
from dsf_core.server.formats import (
    Format,
    dumps,
    fhir_response,
    negotiate,
    parse_body,
    stored_body,
)
from dsf_core.server.interactions import read as read_i
from dsf_core.server.interactions import write as write_i
from dsf_core.server.interactions.context import Ctx, WriteResult
from dsf_core.fhir.storage.store import Stored
from dsf_core.errors import operation_outcome

_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


def ctx_of(request: web.Request) -> Ctx:
    settings = request.app[keys.SETTINGS]
    return Ctx(
        store=request.app[keys.STORE],
        identity=request[keys.IDENTITY],
        local_identifier=settings.organization.identifier,
        base_url=settings.server.base_url.rstrip("/"),
        mode=settings.node.mode,
        page_count=settings.server.page_count,
        max_count=settings.server.max_page_count,
    )


def fmt_of(request: web.Request) -> Format:
    return negotiate(request.query, request.headers.get("Accept"))


def resource_type(request: web.Request) -> str:
    type_ = request.match_info["type"]
    settings = request.app[keys.SETTINGS]
    allowed = RESOURCE_TYPES + (STORE_EXTRA_TYPES if settings.node.mode == "store" else ())
    if type_ not in allowed:
        raise NotFound(f"resource type {type_} not supported")
    return type_


def resource_id(request: web.Request) -> str:
    id_ = request.match_info["id"]
    if not _ID.match(id_):
        raise NotFound(f"invalid id {id_!r}")
    return id_


def strict(request: web.Request) -> bool:
    return "handling=strict" in request.headers.get("Prefer", "").replace(" ", "")


def prefer_return(request: web.Request) -> str:
    for part in request.headers.get("Prefer", "").split(","):
        key, _, value = part.strip().partition("=")
        if key == "return":
            return value.strip('"')
    return "representation"


def version_headers(stored: Stored, base_url: str) -> dict[str, str]:
    return {
        "ETag": stored.etag,
        "Last-Modified": format_http_date(stored.last_updated),
        "Location": f"{base_url}/{stored.type}/{stored.id}/_history/{stored.version}",
    }


def write_response(request: web.Request, result: WriteResult) -> web.Response:
    fmt = fmt_of(request)
    settings = request.app[keys.SETTINGS]
    stored = result.stored
    if stored is None or stored.deleted:
        message = result.message or "deleted"
        headers = {"ETag": stored.etag} if stored is not None else {}
        return fhir_response(
            dumps(operation_outcome(message, issue_code="informational", severity="information"), fmt),
            fmt,
            status=200 if stored is not None else result.status,
            headers=headers,
        )
    headers = version_headers(stored, settings.server.base_url.rstrip("/"))
    mode = prefer_return(request)
    if mode == "minimal":
        return web.Response(status=result.status, headers=headers)
    if mode == "OperationOutcome":
        outcome = operation_outcome(
            result.message or f"{stored.type}/{stored.id} version {stored.version} stored",
            issue_code="informational",
            severity="information",
        )
        return fhir_response(dumps(outcome, fmt), fmt, status=result.status, headers=headers)
    if stored.type == "Binary":
        return fhir_response(dumps(binary.binary_json_without_data(stored), fmt), fmt, status=result.status, headers=headers)
    return fhir_response(stored_body(stored.content or "{}", fmt), fmt, status=result.status, headers=headers)


async def read_body(request: web.Request) -> dict[str, Any]:
    return parse_body(await request.read(), request.headers.get("Content-Type"))


# --- handlers ------------------------------------------------------------------------


async def metadata(request: web.Request) -> web.Response:
    fmt = fmt_of(request)
    settings = request.app[keys.SETTINGS]
    return fhir_response(dumps(capabilities.capability_statement(settings), fmt), fmt)


async def search_type(request: web.Request) -> web.Response:
    type_ = resource_type(request)
    ctx = ctx_of(request)
    params = list(request.query.items())
    if request.method == "POST":  # POST [type]/_search with form parameters
        form = await request.post()
        params += [(k, str(v)) for k, v in form.items()]
    search_request, result = await read_i.search(ctx, type_, params, strict=strict(request))
    fmt = fmt_of(request)
    bundle = bundles.searchset(ctx.base_url, search_request, result, ctx.store.clock())
    return fhir_response(dumps(bundle, fmt), fmt)


async def create(request: web.Request) -> web.Response:
    type_ = resource_type(request)
    ctx = ctx_of(request)
    if type_ == "Binary" and binary.is_raw(request):
        return write_response(request, await binary.write_raw(request, ctx))
    resource = write_i.prepare(ctx, await read_body(request), type_)
    if type_ == "Binary":
        return write_response(request, await binary.create_fhir(ctx, resource))
    return write_response(request, await write_i.create(ctx, resource, if_none_exist=request.headers.get("If-None-Exist")))


async def conditional_update(request: web.Request) -> web.Response:
    type_ = resource_type(request)
    ctx = ctx_of(request)
    resource = write_i.prepare(ctx, await read_body(request), type_)
    if_match = write_i.parse_etag(request.headers.get("If-Match"))
    return write_response(request, await write_i.conditional_update(ctx, type_, list(request.query.items()), resource, if_match=if_match))


async def conditional_delete(request: web.Request) -> web.Response:
    type_ = resource_type(request)
    ctx = ctx_of(request)
    params = [(k, v) for k, v in request.query.items() if k not in ("_format", "_pretty")]
    return write_response(request, await write_i.conditional_delete(ctx, type_, params))


async def read(request: web.Request) -> web.StreamResponse:
    type_, id_ = resource_type(request), resource_id(request)
    ctx = ctx_of(request)
    stored = await read_i.read(ctx, type_, id_)
    return await _render_read(request, ctx, stored)


async def _render_read(request: web.Request, ctx: Ctx, stored: Stored) -> web.StreamResponse:
    headers = {"ETag": stored.etag, "Last-Modified": format_http_date(stored.last_updated)}
    if request.headers.get("If-None-Match") == stored.etag:
        return web.Response(status=304, headers=headers)
    if stored.type == "Binary":
        return await binary.download(request, ctx, stored)
    fmt = fmt_of(request)
    content = stored.content or "{}"
    if "_elements" in request.query:
        names = elements.names_for(stored.type, parse_elements(",".join(request.query.getall("_elements"))), stored.type)
        if names is not None:
            content = elements.subset(content, names)
    body = stored_body(content, fmt)
    return fhir_response(None if request.method == "HEAD" else body, fmt, headers=headers | ({"Content-Type": fmt.content_type}))


async def vread(request: web.Request) -> web.StreamResponse:
    type_, id_ = resource_type(request), resource_id(request)
    ctx = ctx_of(request)
    stored = await read_i.vread(ctx, type_, id_, request.match_info["vid"])
    return await _render_read(request, ctx, stored)


async def update(request: web.Request) -> web.Response:
    type_, id_ = resource_type(request), resource_id(request)
    ctx = ctx_of(request)
    if_match = write_i.parse_etag(request.headers.get("If-Match"))
    if type_ == "Binary" and binary.is_raw(request):
        return write_response(request, await binary.write_raw(request, ctx, id_, if_match))
    resource = write_i.prepare(ctx, await read_body(request), type_)
    if type_ == "Binary":
        return write_response(request, await binary.update_fhir(ctx, id_, resource, if_match))
    return write_response(request, await write_i.update(ctx, type_, id_, resource, if_match=if_match))


async def delete(request: web.Request) -> web.Response:
    type_, id_ = resource_type(request), resource_id(request)
    return write_response(request, await write_i.delete(ctx_of(request), type_, id_))


async def permanent_delete(request: web.Request) -> web.Response:
    type_, id_ = resource_type(request), resource_id(request)
    removed = await write_i.permanent_delete(ctx_of(request), type_, id_)
    fmt = fmt_of(request)
    outcome = operation_outcome(
        f"{type_}/{id_} permanently deleted ({removed} versions)", issue_code="informational", severity="information"
    )
    return fhir_response(dumps(outcome, fmt), fmt)


async def _history(request: web.Request, type_: str | None, id_: str | None) -> web.Response:
    ctx = ctx_of(request)
    result = await read_i.history(ctx, type_, id_, list(request.query.items()))
    path = "/_history" if type_ is None else (f"/{type_}/_history" if id_ is None else f"/{type_}/{id_}/_history")
    fmt = fmt_of(request)
    bundle = bundles.history(
        ctx.base_url, path, result.entries, result.total, result.count, result.page, result.echo, ctx.store.clock()
    )
    return fhir_response(dumps(bundle, fmt), fmt)


async def history_system(request: web.Request) -> web.Response:
    return await _history(request, None, None)


async def history_type(request: web.Request) -> web.Response:
    return await _history(request, resource_type(request), None)


async def history_instance(request: web.Request) -> web.Response:
    return await _history(request, resource_type(request), resource_id(request))


async def system_post(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    body = await read_body(request)
    if body.get("resourceType") != "Bundle" or body.get("type") not in ("batch", "transaction"):
        raise InvalidRequest("POST to the base URL takes a Bundle of type batch or transaction")
    response_bundle = await transaction.process(ctx, body, strict=strict(request))
    fmt = fmt_of(request)
    return fhir_response(dumps(response_bundle, fmt), fmt)


Route = tuple[str, str, Callable[[web.Request], Any]]

ROUTES: tuple[Route, ...] = (
    ("GET", "/metadata", metadata),
    ("POST", "", system_post),
    ("POST", "/", system_post),
    ("GET", "/_history", history_system),
    # "/{type}" first of the patterns: aiohttp tries them in order, and create and search are
    # the busiest (it matches one path segment, so it shadows none of the others)
    ("GET", "/{type}", search_type),
    ("POST", "/{type}", create),
    ("PUT", "/{type}", conditional_update),
    ("DELETE", "/{type}", conditional_delete),
    ("GET", "/{type}/_history", history_type),
    ("POST", "/{type}/_search", search_type),
    ("GET", "/{type}/{id}", read),
    ("PUT", "/{type}/{id}", update),
    ("DELETE", "/{type}/{id}", delete),
    ("POST", "/{type}/{id}/$permanent-delete", permanent_delete),
    ("GET", "/{type}/{id}/_history", history_instance),
    ("GET", "/{type}/{id}/_history/{vid}", vread),
)


def add_routes(app: web.Application, base_path: str) -> None:
    for method, path, handler in ROUTES:
        full = (base_path + path) or "/"
        if method == "GET":
            app.router.add_get(full, handler, allow_head=True)
        else:
            app.router.add_route(method, full, handler)


__all__ = ["ROUTES", "add_routes"]
