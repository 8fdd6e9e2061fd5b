"""Binary: raw upload and download, streamed both ways, with HTTP Range requests.

Raw upload (any Content-Type that is not FHIR) needs ``X-Security-Context``: the
reference whose read access the Binary inherits (optional in data-store mode).  The payload is
stored as it arrives (a file or chunk rows, ``fhir/storage/blobs.py``) and linked to the Binary
version only if the write is authorised.  Download streams a piece at a time, or — a file on a
connection without TLS (behind a reverse proxy) — goes out by ``sendfile`` without passing
through Python; ``Range: bytes=a-b`` (one range) gives 206.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from typing import Any

import orjson
from aiohttp import web

from dsf_core.errors import Forbidden, InvalidRequest, PayloadTooLarge, UnsupportedMediaType
from dsf_core.fhir.dates import format_http_date
from dsf_core.fhir.storage.blobs import FILE, PIECE, BlobInfo
from dsf_core.fhir.storage.store import Stored
from dsf_core.fhir.xml import json_default
from dsf_core.server import keys
from dsf_core.server.formats import JSON_TYPES, XML_TYPES, dumps, fhir_response, negotiate
from dsf_core.server.interactions import write as write_i
from dsf_core.server.interactions.context import Ctx, WriteResult

FHIR_TYPES = JSON_TYPES + XML_TYPES


def _media(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


def is_raw(request: web.Request) -> bool:
    return _media(request.headers.get("Content-Type")) not in FHIR_TYPES


def binary_json_without_data(stored: Stored) -> dict[str, Any]:
    return stored.resource


def _security_context(request: web.Request, ctx: Ctx) -> str | None:
    value = request.headers.get("X-Security-Context", "").strip()
    if not value and ctx.dsf_rules:  # a data store has no read-access rules a Binary could inherit
        raise InvalidRequest("raw Binary upload needs the X-Security-Context header (a reference, e.g. Organization/<id>)")
    return value or None


async def _body_chunks(request: web.Request) -> AsyncIterator[bytes]:
    limit = request.app[keys.SETTINGS].server.max_binary_bytes
    received = 0
    async for piece in request.content.iter_chunked(PIECE):
        received += len(piece)
        if limit and received > limit:
            raise PayloadTooLarge(f"Binary larger than the configured limit of {limit} bytes")
        yield piece


def _check_may_write(ctx: Ctx) -> None:
    # Fail before streaming a large body that would be refused anyway.
    if ctx.identity.is_remote:
        raise Forbidden("remote organizations may not create or update Binary resources")


async def _with_blob(ctx: Ctx, blob_id: str, operation: Any) -> WriteResult:
    try:
        result: WriteResult = await operation
    except BaseException:
        await ctx.store.delete_blob(blob_id)
        raise
    return result


async def write_raw(request: web.Request, ctx: Ctx, id_: str | None = None, if_match: int | None = None) -> WriteResult:
    """Raw ``POST Binary`` (``id_`` None) or ``PUT Binary/[id]``: stream the body, then write the version."""
    _check_may_write(ctx)
    resource: dict[str, Any] = {
        "resourceType": "Binary",
        "contentType": request.headers.get("Content-Type", "application/octet-stream"),
    }
    security_context = _security_context(request, ctx)
    if security_context is not None:
        resource["securityContext"] = {"reference": security_context}
    if id_ is not None:
        resource["id"] = id_
    resource = write_i.prepare(ctx, resource, "Binary")
    blob_id, _ = await ctx.store.write_blob(_body_chunks(request))

    async def run() -> WriteResult:
        async with ctx.store.write() as tx:
            if id_ is None:
                return await write_i.create_in(tx, ctx, resource, blob_id=blob_id)
            return await write_i.update_in(tx, ctx, "Binary", id_, resource, if_match=if_match, blob_id=blob_id)

    return await _with_blob(ctx, blob_id, run())


async def _data_blob(ctx: Ctx, resource: dict[str, Any]) -> str:
    data = resource.pop("data", None)
    try:
        payload = base64.b64decode(data or "", validate=True)
    except ValueError:
        raise InvalidRequest("Binary.data is not valid base64") from None

    async def one() -> AsyncIterator[bytes]:
        yield payload

    blob_id, _ = await ctx.store.write_blob(one())
    return blob_id


async def create_fhir(ctx: Ctx, resource: dict[str, Any]) -> WriteResult:
    _check_may_write(ctx)
    blob_id = await _data_blob(ctx, resource)

    async def run() -> WriteResult:
        async with ctx.store.write() as tx:
            return await write_i.create_in(tx, ctx, resource, blob_id=blob_id)

    return await _with_blob(ctx, blob_id, run())


async def update_fhir(ctx: Ctx, id_: str, resource: dict[str, Any], if_match: int | None) -> WriteResult:
    _check_may_write(ctx)
    blob_id = await _data_blob(ctx, resource)

    async def run() -> WriteResult:
        async with ctx.store.write() as tx:
            return await write_i.update_in(tx, ctx, "Binary", id_, resource, if_match=if_match, blob_id=blob_id)

    return await _with_blob(ctx, blob_id, run())


def _wants_fhir(request: web.Request) -> bool:
    if request.query.get("_format"):
        return _media(request.query["_format"]) in FHIR_TYPES or request.query["_format"] in ("json", "xml")
    accept = request.headers.get("Accept", "")
    first = _media(accept.split(",", 1)[0]) if accept else ""
    return first in FHIR_TYPES


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """One byte range; None for a header we do not honour (answer with the whole payload)."""
    unit, _, spec = header.partition("=")
    if unit.strip() != "bytes" or "," in spec:
        return None
    start_s, _, end_s = spec.strip().partition("-")
    if start_s == "":
        length = int(end_s) if end_s.isdigit() else 0
        if length <= 0:
            return None
        return max(size - length, 0), size - 1
    if not start_s.isdigit() or (end_s and not end_s.isdigit()):
        return None
    start = int(start_s)
    end = min(int(end_s), size - 1) if end_s else size - 1
    return start, end


async def download(request: web.Request, ctx: Ctx, stored: Stored) -> web.StreamResponse:
    resource = stored.resource
    info = await ctx.store.blob_info(stored.blob_id) if stored.blob_id else None
    size = info.size if info else 0
    headers = {
        "ETag": stored.etag,
        "Last-Modified": format_http_date(stored.last_updated),
    }
    security_context = (resource.get("securityContext") or {}).get("reference")
    if security_context:
        headers["X-Security-Context"] = security_context
    if _wants_fhir(request):
        fmt = negotiate(request.query, request.headers.get("Accept"))
        if fmt.kind == "json" and not fmt.pretty:
            return await _stream_fhir_json(request, ctx, info, resource, headers)
        payload = b"".join([c async for c in ctx.store.blobs.read(info)]) if info else b""
        if payload:
            resource["data"] = base64.b64encode(payload).decode()
        return fhir_response(dumps(resource, fmt), fmt, headers=headers)
    content_type = resource.get("contentType") or "application/octet-stream"
    headers["Accept-Ranges"] = "bytes"
    headers["Content-Disposition"] = "attachment"
    start, end, status = 0, size - 1, 200
    range_header = request.headers.get("Range")
    if_range = request.headers.get("If-Range")
    if range_header and size > 0 and (if_range is None or if_range == stored.etag):
        parsed = _parse_range(range_header, size)
        if parsed is not None:
            start, end = parsed
            if start >= size or start > end:
                return web.Response(status=416, headers=headers | {"Content-Range": f"bytes */{size}"})
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    length = max(end - start + 1, 0)
    response = web.StreamResponse(status=status, headers=headers)
    response.content_type = content_type
    response.content_length = length
    if request.method == "HEAD" or info is None or not length:
        await response.prepare(request)
    elif info.location == FILE and request.transport is not None and request.transport.get_extra_info("sslcontext") is None:
        await _sendfile(request, response, ctx, info, start, length)
    else:
        await response.prepare(request)
        async for piece in ctx.store.blobs.read(info, start, end):
            await response.write(piece)
    await response.write_eof()
    return response


async def _sendfile(
    request: web.Request, response: web.StreamResponse, ctx: Ctx, info: BlobInfo, start: int, length: int
) -> None:
    """The file straight from the page cache to the socket (``sendfile``; plain TCP only, TLS needs the bytes in Python)."""
    handle = await ctx.store.blobs.open_file(info)  # before the headers: a missing file is still a clean 500
    try:
        await response.prepare(request)
        transport = request.transport
        if transport is None:
            raise ConnectionResetError("connection lost")
        await asyncio.get_running_loop().sendfile(transport, handle, start, length)
    finally:
        handle.close()


async def _stream_fhir_json(
    request: web.Request, ctx: Ctx, info: BlobInfo | None, resource: dict[str, Any], headers: dict[str, str]
) -> web.StreamResponse:
    """The Binary as FHIR JSON with base64 ``data``, encoded chunk by chunk (bounded memory)."""
    head = orjson.dumps(resource, default=json_default)[:-1]
    response = web.StreamResponse(status=200, headers=headers)
    response.content_type = "application/fhir+json"
    response.charset = "utf-8"
    await response.prepare(request)
    if request.method == "HEAD":
        await response.write_eof()
        return response
    await response.write(head + b',"data":"')
    carry = b""
    if info is not None:
        async for piece in ctx.store.blobs.read(info):
            piece = carry + piece
            cut = len(piece) - len(piece) % 3
            await response.write(base64.b64encode(piece[:cut]))
            carry = piece[cut:]
    await response.write(base64.b64encode(carry) + b'"}')
    await response.write_eof()
    return response


__all__ = ["UnsupportedMediaType", "create_fhir", "download", "is_raw", "update_fhir", "write_raw"]
