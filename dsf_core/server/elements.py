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

from dsf_core.fhir.element_names import ALWAYS as _ALWAYS
from dsf_core.fhir.element_names import element_of as _element_of
from dsf_core.fhir.element_names import model_elements, names_for
from dsf_core.fhir.xml import json_default
from dsf_core.server.formats import has_float, loads_exact

SUBSETTED_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"
SUBSETTED = {"system": SUBSETTED_SYSTEM, "code": "SUBSETTED", "display": "subsetted"}


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
    mandatory, choices = model_elements(type_)
    return _Picker(names | mandatory, choices)


def subset(content: str, names: Iterable[str]) -> str:
    """Stored resource JSON reduced to ``names`` (plus id, meta and mandatory elements), tagged SUBSETTED."""
    resource = orjson.loads(content)
    picker = _picker(str(resource.get("resourceType")), names if isinstance(names, frozenset) else frozenset(names))
    picked = picker.pick(resource)
    if has_float(picked):
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


__all__ = ["SUBSETTED", "SUBSETTED_SYSTEM", "names_for", "subset"]
