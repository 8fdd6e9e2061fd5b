"""``_elements``: a resource cut down to the requested top-level elements.

https://hl7.org/fhir/R4/search.html#elements — the result keeps ``resourceType``, ``id``,
``meta``, the elements the client named and the elements the type makes mandatory, and carries
the ``SUBSETTED`` tag so nobody mistakes it for the whole resource.  A name of a choice element
(``value``, ``onset``) keeps whichever ``value[x]`` form the resource has; a primitive's
``_name`` extension goes with it.

Cheap on purpose: the evaluator asks ``Condition?code=…&_elements=subject&_count=1000`` to
collect patient ids.  The stored JSON is parsed by orjson and only the kept elements are
serialised again; the exact-decimal parser is used only when a kept element holds a decimal
fraction (orjson would print ``1.50`` as ``1.5``).
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from typing import Any

import orjson

from dsf_core.fhir.xml import json_default
from dsf_core.server.formats import loads_exact

SUBSETTED_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"
SUBSETTED = {"system": SUBSETTED_SYSTEM, "code": "SUBSETTED", "display": "subsetted"}
_ALWAYS = frozenset({"resourceType", "id", "meta"})


@lru_cache(maxsize=256)
def _model_elements(type_: str) -> tuple[frozenset[str], dict[str, str]]:
    """The mandatory top-level elements of a type and, for choice elements, JSON key → element name."""
    from fhir.resources.R4B import get_fhir_model_class

    try:
        model = get_fhir_model_class(type_)
    except (KeyError, ValueError, ImportError):
        return frozenset(), {}
    mandatory: set[str] = set()
    choices: dict[str, str] = {}
    for name, field in model.model_fields.items():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        if not extra.get("element_property"):
            continue
        key = field.alias or name
        choice = extra.get("one_of_many")
        if isinstance(choice, str):
            choices[key] = choice
        if field.is_required() or extra.get("element_required") or extra.get("one_of_many_required"):
            mandatory.add(choice if isinstance(choice, str) else key)
    return frozenset(mandatory), choices


def mandatory_elements(type_: str) -> frozenset[str]:
    return _model_elements(type_)[0]


def _element_of(key: str, choices: dict[str, str]) -> str:
    base = key[1:] if key.startswith("_") else key
    return choices.get(base, base)


def _has_fraction(value: Any) -> bool:
    """Whether a decimal with a fraction (a float, as orjson parses it) is anywhere in ``value``."""
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


class _Picker:
    """Which top-level JSON keys of one type a set of element names keeps, decided once per key."""

    __slots__ = ("choices", "decided", "keep")

    def __init__(self, keep: frozenset[str], choices: dict[str, str]) -> None:
        self.keep = keep
        self.choices = choices
        self.decided: dict[str, bool] = {}

    def kept(self, key: str) -> bool:
        decision = self.decided.get(key)
        if decision is None:
            keep = self.keep
            decision = (
                key in _ALWAYS or key in keep or _element_of(key, self.choices) in keep
                or (key.startswith("_") and key[1:] in keep)
            )
            if len(self.decided) < 512:  # a type has fewer keys; bounded against odd input
                self.decided[key] = decision
        return decision

    def pick(self, resource: dict[str, Any]) -> dict[str, Any]:
        decided = self.decided
        picked = {}
        for key, value in resource.items():
            decision = decided.get(key)
            if decision if decision is not None else self.kept(key):
                picked[key] = value
        return picked


@lru_cache(maxsize=1024)
def _picker(type_: str, names: frozenset[str]) -> _Picker:
    mandatory, choices = _model_elements(type_)
    return _Picker(names | mandatory, choices)


def subset(content: str, names: Iterable[str]) -> str:
    """Stored resource JSON reduced to ``names`` (plus id, meta and mandatory elements), tagged SUBSETTED."""
    resource = orjson.loads(content)
    picker = _picker(str(resource.get("resourceType")), names if isinstance(names, frozenset) else frozenset(names))
    picked = picker.pick(resource)
    if _has_fraction(picked):
        picked = picker.pick(loads_exact(content))
    meta = dict(picked.get("meta") or {})
    tags = meta.get("tag")
    if tags:
        tags = [t for t in tags if not (t.get("system") == SUBSETTED_SYSTEM and t.get("code") == "SUBSETTED")]
        tags.append(SUBSETTED)
    else:
        tags = [SUBSETTED]
    meta["tag"] = tags
    picked["meta"] = meta
    return orjson.dumps(picked, default=json_default).decode()


def names_for(type_: str, requested: Iterable[str], searched_type: str) -> frozenset[str] | None:
    """The element names that apply to a resource of ``type_``; None: return it whole.

    A bare name applies to the searched (or read) type, ``Type.name`` to that type.
    """
    names = set()
    for item in requested:
        owner, dot, name = item.partition(".")
        if not dot and type_ == searched_type:
            names.add(item)
        elif dot and owner == type_:
            names.add(name)
    return frozenset(names) if names else None
