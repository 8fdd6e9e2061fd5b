"""Search pages cut down to ``_elements`` by the database (SQLite 3.38+).

SQLite's ``->`` operator copies the kept keys' JSON text as stored (decimals stay exact), and
the SUBSETTED tag is added to ``meta`` in SQL, so an evaluator's ``_elements=subject`` pages cost
no parsing in Python.  The keys come from :func:`dsf_core.fhir.element_names.projection_keys`,
the same rules the server's own subsetting (``dsf_core.server.elements``) applies.  A resource
that carries the tag already comes back whole, marked ``!``, for the server's subsetting (which
does not tag twice).  Other databases get the whole resources.
"""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from functools import lru_cache
from typing import Any

from sqlalchemy import literal_column

from dsf_core.fhir.element_names import names_for, projection_keys
from dsf_core.fhir.search_request import SearchRequest
from dsf_core.fhir.storage.schema import resources
from dsf_core.fhir.storage.store import RESOURCE_COLUMNS, Stored

__all__ = ["page_columns", "subset_projection", "take_subsets"]

_SUBSETTED_TAG = (
    '{"system":"http://terminology.hl7.org/CodeSystem/v3-ObservationValue","code":"SUBSETTED","display":"subsetted"}'
)
_SQLITE_JSON_ARROW = tuple(int(p) for p in sqlite3.sqlite_version.split(".")[:2]) >= (3, 38)


def subset_projection(dialect: str, request: SearchRequest) -> tuple[str, ...] | None:
    """The JSON keys (``meta`` first) the database keeps of each match, or None: whole resources."""
    if not request.elements or dialect != "sqlite" or not _SQLITE_JSON_ARROW:
        return None
    names = names_for(request.type, request.elements, request.type)
    return projection_keys(request.type, names) if names is not None else None


@lru_cache(maxsize=256)
def page_columns(projection: tuple[str, ...] | None) -> tuple[Any, ...]:
    """The columns of a page: the resource columns, ``content`` cut down to ``projection``."""
    if projection is None:
        return RESOURCE_COLUMNS
    content = "resources.content"
    kept = "".join(f""" || coalesce(',"{key}":' || ({content} -> '$.{key}'), '')""" for key in projection[1:])
    head = """'{"resourceType":"' || resources.type || '","id":"' || resources.id || '","meta":' || """
    subset: Any = literal_column(
        f"""CASE WHEN json_type({content}, '$.meta.tag') IS NULL"""
        f""" THEN {head}json_set(coalesce({content} -> '$.meta', '{{}}'), '$.tag', json('[{_SUBSETTED_TAG}]')){kept} || '}}'"""
        f""" WHEN instr({content} -> '$.meta.tag', '"SUBSETTED"') = 0"""
        f""" THEN {head}json_insert({content} -> '$.meta', '$.tag[#]', json('{_SUBSETTED_TAG}')){kept} || '}}'"""
        f""" ELSE '!' || {content} END"""
    ).label("content")
    return (*(c for c in RESOURCE_COLUMNS if c is not resources.c.content), subset)


def take_subsets(matches: list[Stored]) -> tuple[list[Stored], frozenset[int]]:
    """The matches with the ``!`` of whole resources taken off, and the rids the database cut."""
    subsetted = set()
    out = []
    for stored in matches:
        if stored.content is not None and stored.content.startswith("!"):
            stored = replace(stored, content=stored.content[1:])
        else:
            subsetted.add(stored.rid)
        out.append(stored)
    return out, frozenset(subsetted)
