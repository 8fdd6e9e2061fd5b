"""Structural validation of incoming resources (fhir.resources R4B) on write.

Models are built only to validate; what is stored and served is the client's JSON.
fhir.resources checks element names, cardinality of choice types, required
elements and primitive formats; DSF rules are checked in ``authz.rules``.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import pydantic

from dsf_core.errors import InvalidRequest


@cache
def _model(resource_type: str) -> Any:
    from fhir.resources.R4B import get_fhir_model_class

    return get_fhir_model_class(resource_type)


def _location(loc: tuple[Any, ...], resource_type: str) -> str:
    path = resource_type
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def validate_structure(resource: dict[str, Any]) -> None:
    """Raise InvalidRequest naming every structural problem (at most ten)."""
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str):
        raise InvalidRequest("resourceType missing")
    try:
        model = _model(resource_type)
    except (KeyError, ValueError, AttributeError):
        raise InvalidRequest(f"unknown resourceType {resource_type!r}") from None
    try:
        model.model_validate(resource)
    except pydantic.ValidationError as exc:
        problems = []
        expressions = []
        for err in exc.errors()[:10]:
            where = _location(tuple(err.get("loc", ())), resource_type)
            message = str(err.get("msg", "invalid"))
            if len(message) > 200:
                message = message[:200] + "…"
            problems.append(f"{where}: {message}")
            expressions.append(where)
        raise InvalidRequest("invalid " + resource_type + ": " + "; ".join(problems), expression=expressions) from None
