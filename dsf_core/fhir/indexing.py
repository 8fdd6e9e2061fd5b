"""Search-index rows extracted from a resource when it is written.

Rows are written in the same transaction as the resource version and replaced on
every update, so search never parses stored JSON.  One row shape serves every
parameter type::

    token      system, value                      (Identifier, Coding, code, boolean)
    string     value (as written), norm (folded)  (starts-with / contains / exact)
    uri        value                              (canonical ``url|version`` also sets norm=url)
    reference  system=target type, value=id       (literal);  param ``name:identifier`` rows
               system="canonical", value, norm    for logical references and canonicals
    date       low, high                          (inclusive millisecond range)
    quantity   system, value=code, norm=unit,     (``numbers.key`` of the value; a comparator
               low, high                           ``<``/``>`` opens one end of the range)
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

from dsf_core.fhir import numbers
from dsf_core.fhir.dates import MAX_MS, MIN_MS, DateError, date_range
from dsf_core.fhir.search_params import SearchParam, params_for

_REFERENCE = re.compile(
    r"^(?:(?P<base>https?://[^?#]*?)/)?(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})"
    r"(?:/_history/(?P<version>[A-Za-z0-9\-.]{1,64}))?$"
)


class IndexRow(NamedTuple):
    param: str
    system: str | None = None
    value: str | None = None
    norm: str | None = None
    low: int | None = None
    high: int | None = None


@dataclass(frozen=True, slots=True)
class LiteralReference:
    base: str | None
    type: str
    id: str
    version: str | None


def parse_reference(reference: str) -> LiteralReference | None:
    """``Type/id``, ``Type/id/_history/v`` or an absolute URL ending like that; None otherwise."""
    match = _REFERENCE.match(reference)
    if not match:
        return None
    return LiteralReference(match["base"], match["type"], match["id"], match["version"])


def normalize(text: str) -> str:
    """Case- and accent-insensitive form for FHIR string search."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def _split_path(path: str) -> list[tuple[str, str | None, str | None]]:
    steps: list[tuple[str, str | None, str | None]] = []
    i = 0
    while i < len(path):
        j = i
        while j < len(path) and path[j] not in ".[":
            j += 1
        name = path[i:j]
        key = val = None
        if j < len(path) and path[j] == "[":
            end = path.index("]", j)
            key, val = path[j + 1 : end].split("=", 1)
            j = end + 1
        steps.append((name, key, val))
        i = j + 1
    return steps


def _values(resource: Any, steps: list[tuple[str, str | None, str | None]]) -> list[Any]:
    """Every value at a split path (``_split_path``); lists are flattened, ``name[key=value]`` filters."""
    current: list[Any] = [resource]
    for name, key, val in steps:
        nxt: list[Any] = []
        for node in current:
            if not isinstance(node, dict):
                continue
            child = node.get(name)
            if child is None:
                continue
            for item in child if isinstance(child, list) else (child,):
                if key is not None and (not isinstance(item, dict) or item.get(key) != val):
                    continue
                nxt.append(item)
        current = nxt
    return current


def _token_rows(name: str, value: Any) -> Iterator[IndexRow]:
    if isinstance(value, bool):
        yield IndexRow(name, None, "true" if value else "false")
    elif isinstance(value, str):
        yield IndexRow(name, None, value)
    elif isinstance(value, dict):
        if "coding" in value:
            for coding in value.get("coding") or ():
                yield from _token_rows(name, coding)
        elif "code" in value:
            yield IndexRow(name, value.get("system"), str(value["code"]))
        elif "value" in value:
            yield IndexRow(name, value.get("system"), str(value["value"]))


def _reference_rows(param: SearchParam, value: Any) -> Iterator[IndexRow]:
    name = param.name
    if isinstance(value, str):  # canonical
        yield IndexRow(name, "canonical", value, value.split("|", 1)[0])
        return
    if not isinstance(value, dict):
        return
    reference = value.get("reference")
    if isinstance(reference, str):
        literal = parse_reference(reference)
        if literal is not None:
            if not param.only_targets or literal.type in param.targets:
                yield IndexRow(name, literal.type, literal.id, reference)
        elif not param.only_targets:
            yield IndexRow(name, None, reference, reference)
    identifier = value.get("identifier")
    if isinstance(identifier, dict) and identifier.get("value") is not None:
        if not param.only_targets or value.get("type") in (None, *param.targets):
            yield IndexRow(f"{name}:identifier", identifier.get("system"), str(identifier["value"]))


def _quantity_rows(name: str, value: Any) -> Iterator[IndexRow]:
    if not isinstance(value, dict):
        return
    number = numbers.to_decimal(value.get("value"))
    if number is None:
        return
    key = numbers.key(number)
    # A comparator makes the value a bound: "<5" is every number below 5.
    low, high = {
        "<": (MIN_MS, key - 1),
        "<=": (MIN_MS, key),
        ">=": (key, MAX_MS),
        ">": (key + 1, MAX_MS),
    }.get(str(value.get("comparator")), (key, key))
    code, unit = value.get("code"), value.get("unit")
    yield IndexRow(
        name,
        value.get("system"),
        str(code) if code is not None else None,
        str(unit) if unit is not None else None,
        low,
        high,
    )


def _date_rows(name: str, value: Any) -> Iterator[IndexRow]:
    try:
        if isinstance(value, str):
            low, high = date_range(value)
            yield IndexRow(name, low=low, high=high)
        elif isinstance(value, dict) and ("start" in value or "end" in value):
            low = date_range(value["start"])[0] if value.get("start") else MIN_MS
            high = date_range(value["end"])[1] if value.get("end") else MAX_MS
            yield IndexRow(name, low=low, high=high)
    except DateError:
        return  # structurally validated on write; an unparsable value is simply not searchable


def _rows_at(param: SearchParam, values: Iterable[Any]) -> Iterator[IndexRow]:
    """The index rows of one parameter for the values found at one of its paths."""
    for value in values:
        if param.type == "token":
            yield from _token_rows(param.name, value)
        elif param.type == "string":
            if isinstance(value, str):
                yield IndexRow(param.name, None, value, normalize(value))
        elif param.type == "uri":
            if isinstance(value, str):
                yield IndexRow(param.name, None, value, value.split("|", 1)[0])
        elif param.type == "reference":
            yield from _reference_rows(param, value)
        elif param.type == "date":
            yield from _date_rows(param.name, value)
        elif param.type == "quantity":
            yield from _quantity_rows(param.name, value)


# per type: its parameter table and, per parameter, the first key of each path with the path's steps
_Plan = tuple[dict[str, SearchParam], list[tuple[SearchParam, list[tuple[str, list[tuple[str, str | None, str | None]]]]]]]
_PLANS: dict[str, _Plan] = {}


def _plan(resource_type: str) -> _Plan:
    params = params_for(resource_type)
    plan = _PLANS.get(resource_type)
    if plan is None or plan[0] is not params:
        entries = []
        for param in params.values():
            paths = []
            for path in param.paths:
                steps = _split_path(path)
                paths.append((steps[0][0], steps))
            entries.append((param, paths))
        plan = _PLANS[resource_type] = (params, entries)
    return plan


def index_rows(resource: dict[str, Any]) -> list[IndexRow]:
    """All search-index rows of a resource (duplicates removed)."""
    seen: set[IndexRow] = set()
    rows: list[IndexRow] = []
    for param, paths in _plan(resource["resourceType"])[1]:
        for first, steps in paths:
            if first not in resource:  # most parameters of a type are absent from a resource
                continue
            for row in _rows_at(param, _values(resource, steps)):
                if row not in seen:
                    seen.add(row)
                    rows.append(row)
    return rows


def walk_references(node: Any, replace: Callable[[str], str] | None = None) -> list[str]:
    """Every ``reference`` string in a resource (contained resources excluded).

    With ``replace`` each one is substituted in place by its result.
    """
    found: list[str] = []
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if key == "reference" and isinstance(value, str):
                    found.append(value)
                    if replace is not None:
                        item[key] = replace(value)
                elif key != "contained" and isinstance(value, (dict, list)):
                    stack.append(value)
        elif isinstance(item, list):
            stack.extend(item)
    return found
