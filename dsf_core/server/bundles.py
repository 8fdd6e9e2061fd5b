"""Searchset and history Bundles, assembled from stored JSON without parsing it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

import orjson

from dsf_core.fhir.dates import format_instant
from dsf_core.fhir.ids import new_id
from dsf_core.fhir.search import SearchRequest, SearchResult
from dsf_core.fhir.search_request import AFTER
from dsf_core.fhir.storage.store import Stored
from dsf_core.errors import operation_outcome
from dsf_core.server import elements


def _entry(base_url: str, stored: Stored, mode: str, request: SearchRequest, subsetted: frozenset[int]) -> dict[str, Any]:
    content = stored.content or "{}"
    if request.elements and stored.rid not in subsetted:
        names = elements.names_for(stored.type, request.elements, request.type)
        if names is not None:
            content = elements.subset(content, names)
    return {
        "fullUrl": f"{base_url}/{stored.type}/{stored.id}",
        "resource": orjson.Fragment(content),
        "search": {"mode": mode},
    }


def _link(url: str, params: Sequence[tuple[str, str]], **extra: Any) -> str:
    query = list(params) + [(k, str(v)) for k, v in extra.items()]
    return f"{url}?{urlencode(query, safe='|:,/')}" if query else url


def paging_links(
    url: str, echo: Sequence[tuple[str, str]], total: int, count: int, page: int, after: str | None = None
) -> list[dict[str, str]]:
    """self, first, previous, next, last; ``after``: the cursor the next link continues from."""
    if count <= 0:
        return [{"relation": "self", "url": _link(url, echo)}]
    # The echoed parameters are encoded once; the links differ only in what follows them.
    base = f"{url}?{urlencode(list(echo), safe='|:,/')}&" if echo else f"{url}?"
    last = max(1, -(-total // count))
    links = [
        {"relation": "self", "url": f"{base}_page={page}"},
        {"relation": "first", "url": f"{base}_page=1"},
    ]
    if page > 1:
        links.append({"relation": "previous", "url": f"{base}_page={min(page - 1, last)}"})
    if page < last:
        cursor = f"&{AFTER}={after}" if after else ""  # digits and a dot: nothing to encode
        links.append({"relation": "next", "url": f"{base}_page={page + 1}{cursor}"})
    links.append({"relation": "last", "url": f"{base}_page={last}"})
    return links


def searchset(base_url: str, request: SearchRequest, result: SearchResult, now_ms: int) -> dict[str, Any]:
    url = f"{base_url}/{request.type}"
    count = 0 if request.summary_count else request.count
    entries: list[dict[str, Any]] = [_entry(base_url, s, "match", request, result.subsetted) for s in result.matches]
    entries += [_entry(base_url, s, "include", request, frozenset()) for s in result.included]
    if request.unsupported:
        outcome = operation_outcome(
            "unsupported search parameters ignored: " + ", ".join(request.unsupported),
            issue_code="not-supported",
            severity="warning",
        )
        entries.append({"resource": outcome, "search": {"mode": "outcome"}})
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": new_id(),
        "meta": {"lastUpdated": format_instant(now_ms)},
        "type": "searchset",
        "total": result.total,
        "link": paging_links(url, request.echo, result.total, count, request.page, result.after),
    }
    if entries:
        bundle["entry"] = entries
    return bundle


def history(
    base_url: str, path: str, entries: Sequence[Stored], total: int, count: int, page: int, echo: Sequence[tuple[str, str]], now_ms: int
) -> dict[str, Any]:
    items: list[dict[str, Any]] = []
    for s in entries:
        item: dict[str, Any] = {"fullUrl": f"{base_url}/{s.type}/{s.id}"}
        if s.content is not None:
            item["resource"] = orjson.Fragment(s.content)
        item["request"] = {
            "method": s.method,
            "url": f"{s.type}/{s.id}" if s.method != "PUT" and s.method != "DELETE" else f"{s.type}/{s.id}",
        }
        item["response"] = {
            "status": {"POST": "201 Created", "PUT": "200 OK", "DELETE": "200 OK"}.get(s.method, "200 OK"),
            "etag": s.etag,
            "lastModified": format_instant(s.last_updated),
        }
        items.append(item)
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": new_id(),
        "meta": {"lastUpdated": format_instant(now_ms)},
        "type": "history",
        "total": total,
        "link": paging_links(f"{base_url}{path}", echo, total, count, page),
    }
    if items:
        bundle["entry"] = items
    return bundle
