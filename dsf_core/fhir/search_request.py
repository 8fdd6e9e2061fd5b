"""FHIR search requests: query parameters → a parsed ``SearchRequest``.

Parsing knows the FHIR rules (modifiers, OR by comma, AND by repetition, control
parameters, ``_elements``, our paging cursor); value syntax is checked when a criterion is
compiled (``dsf_core.fhir.search``), which names the parameter in its 400.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dsf_core.errors import InvalidRequest, UnsupportedParameter
from dsf_core.fhir.search_params import INCLUDES, is_internal, params_for

# Paging cursor of our own next links: the (_lastUpdated, row) of the previous page's last match.
AFTER = "__after"

# Parameters that steer the search rather than filter it.
CONTROL = frozenset(
    {"_count", "_page", "_sort", "_include", "_revinclude", "_summary", "_format", "_pretty", "_elements", AFTER}
)
SPECIAL = frozenset({"_id", "_lastUpdated"})
MODIFIERS: dict[str, set[str | None]] = {
    "token": {None, "not"},
    "string": {None, "exact", "contains"},
    "uri": {None, "below", "exact"},
    "reference": {None, "identifier"},
    "date": {None},
    "quantity": {None},
}


@dataclass(frozen=True)
class Criterion:
    name: str
    modifier: str | None
    values: tuple[str, ...]  # OR-ed


@dataclass(frozen=True)
class SearchRequest:
    type: str
    criteria: tuple[Criterion, ...] = ()
    count: int = 20
    page: int = 1
    sort: tuple[tuple[str, bool], ...] = ()  # (name, descending)
    includes: tuple[tuple[str, str], ...] = ()
    revincludes: tuple[tuple[str, str], ...] = ()
    summary_count: bool = False
    unsupported: tuple[str, ...] = ()
    # parameters as given, for the self link (control ones without paging)
    echo: tuple[tuple[str, str], ...] = ()
    elements: tuple[str, ...] = ()  # _elements: names, or Type.name for included types
    after: tuple[int, int] | None = None  # __after: continue behind this (last_updated, rid)


_ELEMENT = re.compile(r"^(?:[A-Z][A-Za-z]+\.)?[a-z][A-Za-z0-9]*$")


def parse_elements(value: str) -> tuple[str, ...]:
    """``_elements=a,b,Type.c``: top-level element names (``Type.`` for another type in the Bundle)."""
    names = tuple(v.strip() for v in value.split(",") if v.strip())
    for name in names:
        if not _ELEMENT.match(name):
            raise InvalidRequest(f"_elements: {name!r} is not an element name", expression=["_elements"])
    return names


def _cursor(value: str) -> tuple[int, int]:
    last_updated, _, rid = value.partition(".")
    try:
        return int(last_updated), int(rid)
    except ValueError:
        raise InvalidRequest(f"{AFTER}: not a paging cursor: {value!r}", expression=[AFTER]) from None


def _int(name: str, value: str, minimum: int) -> int:
    try:
        number = int(value)
    except ValueError:
        raise InvalidRequest(f"{name} must be an integer, got {value!r}") from None
    if number < minimum:
        raise InvalidRequest(f"{name} must be >= {minimum}, got {number}")
    return number


def parse_search(
    type_: str,
    params: Sequence[tuple[str, str]],
    *,
    strict: bool,
    default_count: int = 20,
    max_count: int = 1000,
) -> SearchRequest:
    """Parse query parameters of ``GET [type]?...``; unknown parameters are errors only when strict.

    A request is immutable and the parameter registry fixed, so the same query parses once
    (a mailbox answers the same few searches over and over); errors are not kept.
    """
    key = (type_, tuple(params), strict, default_count, max_count)
    parsed = _PARSED.get(key)
    if parsed is None:
        parsed = _parse_search(type_, key[1], strict=strict, default_count=default_count, max_count=max_count)
        if len(_PARSED) >= 4096:
            _PARSED.clear()
        _PARSED[key] = parsed
    return parsed


_PARSED: dict[tuple[Any, ...], SearchRequest] = {}


def _parse_search(
    type_: str,
    params: Sequence[tuple[str, str]],
    *,
    strict: bool,
    default_count: int,
    max_count: int,
) -> SearchRequest:
    registry = params_for(type_)
    criteria: list[Criterion] = []
    unsupported: list[str] = []
    count, page, summary_count = default_count, 1, False
    elements: tuple[str, ...] = ()
    after: tuple[int, int] | None = None
    sort: list[tuple[str, bool]] = []
    includes: list[tuple[str, str]] = []
    revincludes: list[tuple[str, str]] = []
    echo: list[tuple[str, str]] = []

    def reject(message: str, raw: str) -> None:
        if strict:
            raise UnsupportedParameter(message)
        unsupported.append(raw)

    for raw_name, value in params:
        name, _, modifier = raw_name.partition(":")
        mod = modifier or None
        if name in CONTROL:
            if name == "_count":
                count = min(_int("_count", value, 0), max_count)
                value = str(count)  # links carry the page size in effect
            elif name == "_elements":
                elements += parse_elements(value)
            elif name == "_page":
                page = _int("_page", value, 1)
            elif name == AFTER:
                after = _cursor(value)
            elif name == "_summary":
                if value == "count":
                    summary_count = True
                elif value not in ("false", "true", "data", "text"):
                    reject(f"unsupported _summary value {value!r}", f"_summary={value}")
            elif name == "_sort":
                for item in value.split(","):
                    item = item.strip()
                    desc = item.startswith("-")
                    key = item[1:] if desc else item
                    if key in ("_id", "_lastUpdated") or (key in registry and not is_internal(key)):
                        sort.append((key, desc))
                    else:
                        reject(f"unsupported _sort parameter {key!r} for {type_}", f"_sort={item}")
            elif name in ("_include", "_revinclude"):
                parts = value.split(":")
                pair = (parts[0], parts[1]) if len(parts) >= 2 else None
                if pair is None or pair not in INCLUDES or (name == "_include" and pair[0] != type_):
                    reject(f"unsupported {name} value {value!r}", f"{name}={value}")
                elif name == "_include":
                    includes.append(pair)
                else:
                    revincludes.append(pair)
            if name not in ("_page", "_format", "_pretty", AFTER):
                echo.append((raw_name, value))
            continue
        if name in SPECIAL:
            if mod is not None:
                reject(f"modifier :{mod} is not supported for {name}", raw_name)
                continue
            criteria.append(Criterion(name, None, tuple(v for v in value.split(",") if v)))
            echo.append((raw_name, value))
            continue
        param = registry.get(name)
        if param is None or is_internal(name):
            reject(f"unsupported search parameter {name!r} for {type_}", raw_name)
            continue
        if mod not in MODIFIERS[param.type]:
            reject(f"unsupported modifier :{mod} for {param.type} parameter {name!r}", raw_name)
            continue
        values = tuple(_split_values(value))
        if not values:
            continue
        criteria.append(Criterion(name, mod, values))
        echo.append((raw_name, value))
    return SearchRequest(
        type_, tuple(criteria), count, page, tuple(sort), tuple(includes), tuple(revincludes), summary_count,
        tuple(unsupported), tuple(echo), elements, after,
    )


def _split_values(value: str) -> list[str]:
    """Split OR-ed values on commas not escaped with a backslash."""
    parts: list[str] = []
    current: list[str] = []
    escaped = False
    for ch in value:
        if escaped:
            current.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ",":
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return [p for p in parts if p != ""]
