"""Structural validation of incoming resources (fhir.resources R4B) on write.

Models are built only to validate; what is stored and served is the client's JSON.
fhir.resources checks element names, cardinality of choice types, required
elements and primitive formats; DSF rules are checked in ``authz.rules``.
"""

from __future__ import annotations

from collections import OrderedDict
from functools import cache
from typing import Any, Final

import orjson
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


# Resource types validated element by element with a cache of elements already found valid.
# Only types whose top-level elements are independent of each other qualify: no choice
# elements (value[x]) at the top, where "one of" spans several keys. A Task goes through the
# mailbox several times with most elements unchanged (requested → in-progress → completed);
# validating only what changed saves most of the ~1 ms a full model build costs.
_INCREMENTAL: Final = frozenset({"Task"})
_REQUIRED: Final = {"Task": ("status", "intent")}
_VALID_ELEMENTS: OrderedDict[bytes, None] = OrderedDict()
_CACHE_SIZE: Final = 8192


def _element_key(resource_type: str, name: str, value: Any) -> bytes:
    return resource_type.encode() + b"\x00" + name.encode() + b"\x00" + orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def validate_structure(resource: dict[str, Any]) -> None:
    """Raise InvalidRequest naming every structural problem (at most ten)."""
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str):
        raise InvalidRequest("resourceType missing")
    try:
        model = _model(resource_type)
    except (KeyError, ValueError, AttributeError):
        raise InvalidRequest(f"unknown resourceType {resource_type!r}") from None
    if resource_type in _INCREMENTAL:
        _validate_incrementally(model, resource, resource_type)
    else:
        _validate(model, resource, resource_type)


def _validate_incrementally(model: Any, resource: dict[str, Any], resource_type: str) -> None:
    try:
        keys = {name: _element_key(resource_type, name, value) for name, value in resource.items() if name != "resourceType"}
    except TypeError:  # not JSON-serialisable: let the model say what is wrong
        _validate(model, resource, resource_type)
        return
    required = _REQUIRED.get(resource_type, ())
    unknown = {name for name, key in keys.items() if key not in _VALID_ELEMENTS}
    if not unknown and all(name in resource for name in required):
        for key in keys.values():
            _VALID_ELEMENTS.move_to_end(key)
        return
    reduced = {"resourceType": resource_type}
    reduced.update({name: resource[name] for name in keys if name in unknown or name in required})
    _validate(model, reduced, resource_type)
    for name in unknown:
        _VALID_ELEMENTS[keys[name]] = None
    while len(_VALID_ELEMENTS) > _CACHE_SIZE:
        _VALID_ELEMENTS.popitem(last=False)


def _validate(model: Any, resource: dict[str, Any], resource_type: str) -> None:
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
