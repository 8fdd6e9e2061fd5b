"""Content negotiation and rendering: FHIR JSON and XML in and out.

Stored resources are JSON text; JSON responses embed it unparsed (``orjson.Fragment``),
XML responses convert it.  With ``*/*`` the default is FHIR XML, as the Java DSF does.
"""

from __future__ import annotations

import decimal
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import orjson
from aiohttp import web

from dsf_core.errors import InvalidRequest, UnsupportedMediaType
from dsf_core.fhir.xml import FhirXmlError, json_default, parse_xml, to_xml

Kind = Literal["json", "xml"]

JSON_TYPES = ("application/fhir+json", "application/json", "application/json+fhir", "json")
XML_TYPES = ("application/fhir+xml", "application/xml", "application/xml+fhir", "text/xml", "xml")
HTML_TYPES = ("text/html", "html")
MIME = {"json": "application/fhir+json", "xml": "application/fhir+xml"}


@dataclass(frozen=True)
class Format:
    kind: Kind
    pretty: bool = False

    @property
    def content_type(self) -> str:
        return f"{MIME[self.kind]};charset=utf-8"


def _kind_of(media_type: str) -> Kind | None:
    media_type = media_type.split(";", 1)[0].strip().lower()
    if media_type in JSON_TYPES or media_type in HTML_TYPES:
        return "json"
    if media_type in XML_TYPES:
        return "xml"
    return None


def negotiate(query: Mapping[str, str], accept: str | None) -> Format:
    pretty = query.get("_pretty", "false").lower() == "true"
    fmt = query.get("_format")
    if fmt:
        kind = _kind_of(fmt)
        if kind is None:
            raise UnsupportedMediaType(f"unsupported _format {fmt!r}")
        return Format(kind, pretty or fmt in HTML_TYPES)
    if accept:
        found = _accepted(accept)
        if found is not None:
            return Format(found[0], pretty or found[1])
    return Format("xml", pretty)


@lru_cache(maxsize=256)
def _accepted(accept: str) -> tuple[Kind, bool] | None:
    """The FHIR format an Accept header prefers (and whether as HTML), or None (a client sends the same few)."""
    ranked = []
    for i, part in enumerate(accept.split(",")):
        media, _, params = part.partition(";")
        q = 1.0
        for p in params.split(";"):
            k, _, v = p.strip().partition("=")
            if k == "q":
                try:
                    q = float(v)
                except ValueError:
                    q = 0.0
        ranked.append((-q, i, media.strip()))
    for _, _, media in sorted(ranked):
        kind = _kind_of(media)
        if kind is not None:
            return kind, media.strip().lower() == "text/html"
    return None


def request_format(request: web.Request) -> Format:
    try:
        return negotiate(request.query, request.headers.get("Accept"))
    except UnsupportedMediaType:
        return Format("json")


def parse_body(body: bytes, content_type: str | None) -> dict[str, Any]:
    """A FHIR resource from a request body; 400 for malformed content, 415 for other media types."""
    kind = _kind_of(content_type or "")
    if kind is None:
        raise UnsupportedMediaType(f"unsupported Content-Type {content_type!r}; use application/fhir+json or application/fhir+xml")
    if not body.strip():
        raise InvalidRequest("empty request body")
    if kind == "json":
        try:
            value = loads_exact(body)
        except (orjson.JSONDecodeError, ValueError) as exc:
            raise InvalidRequest(f"malformed JSON: {exc}") from None
        if not isinstance(value, dict):
            raise InvalidRequest("JSON body is not an object")
        if not isinstance(value.get("resourceType"), str):
            raise InvalidRequest("resourceType missing")
        return value
    try:
        return parse_xml(body)
    except FhirXmlError as exc:
        raise InvalidRequest(f"invalid FHIR XML: {exc}") from None


def loads_exact(data: bytes | str) -> Any:
    """Parse JSON keeping FHIR decimals exact (``1.50`` stays ``1.50``): Decimal where a fraction occurs.

    orjson parses first (a Task in ~7 µs); only a document in which it found a number with a
    fraction or an exponent (a float) is parsed again by the standard library, with Decimals.
    """
    value = orjson.loads(data)
    if has_float(value):
        return json.loads(data, parse_float=decimal.Decimal)
    return value


def has_float(value: Any) -> bool:
    """Whether a number with a fraction or an exponent (a float, as orjson parses it) is anywhere in ``value``."""
    stack = [value]
    pop, extend = stack.pop, stack.extend
    while stack:
        item = pop()
        kind = type(item)
        if kind is dict:
            extend(item.values())
        elif kind is list:
            extend(item)
        elif kind is float:
            return True
    return False


def dumps(value: Any, fmt: Format) -> bytes:
    """A JSON value (which may contain ``orjson.Fragment``s of stored JSON) in the requested format."""
    compact = orjson.dumps(value, default=json_default)
    if fmt.kind == "json":
        if fmt.pretty:
            # Fragments cannot be indented; parse once for pretty output.
            return orjson.dumps(loads_exact(compact), default=json_default, option=orjson.OPT_INDENT_2)
        return compact
    return to_xml(loads_exact(compact), pretty=fmt.pretty)


def stored_body(content: str, fmt: Format) -> bytes:
    if fmt.kind == "json" and not fmt.pretty:
        return content.encode()
    return dumps(orjson.Fragment(content), fmt)


def fhir_response(body: bytes | None, fmt: Format, *, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    """A FHIR answer; with a body, its Content-Type is the format's (the constructor builds the
    header once: setting content_type and charset afterwards cost three times as much)."""
    if body is None:
        return web.Response(status=status, headers=headers)
    if headers is not None and "Content-Type" in headers:
        headers = {k: v for k, v in headers.items() if k != "Content-Type"}
    return web.Response(body=body, status=status, headers=headers, content_type=MIME[fmt.kind], charset="utf-8")
