"""Top-level element names of FHIR resource types, for ``_elements``.

https://hl7.org/fhir/R4/search.html#elements — which JSON keys of a resource belong to the
elements a client named: the element itself, a choice element's ``value[x]`` forms, a
primitive's ``_name`` extension, and the elements the type makes mandatory.  Used by the
server's subsetting (``dsf_core.server.elements``) and by searches that let the database cut
resources down (``dsf_core.fhir.search``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

ALWAYS = frozenset({"resourceType", "id", "meta"})
_KEY = re.compile(r"^_?[A-Za-z][A-Za-z0-9]*$")


@lru_cache(maxsize=256)
def model_elements(type_: str) -> tuple[frozenset[str], dict[str, str]]:
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
    return model_elements(type_)[0]


def element_of(key: str, choices: dict[str, str]) -> str:
    """The element a JSON key belongs to (``valueQuantity`` → ``value``, ``_status`` → ``status``)."""
    base = key[1:] if key.startswith("_") else key
    return choices.get(base, base)


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


@lru_cache(maxsize=1024)
def projection_keys(type_: str, names: frozenset[str]) -> tuple[str, ...] | None:
    """Every JSON key besides ``resourceType`` and ``id`` that a resource of ``type_`` cut down to
    ``names`` may keep, ``meta`` first; None when a key is not a plain element name (then only
    parsing the resource can tell)."""
    mandatory, choices = model_elements(type_)
    keep = (names | mandatory) - {"resourceType", "meta"}
    keys = ["meta"]
    for name in sorted(keep):
        forms = sorted(k for k, element in choices.items() if element == name) or [name]
        for form in forms:
            if form != "id":  # the id comes from the row
                keys.append(form)
            keys.append("_" + form)
    if not all(_KEY.match(k) for k in keys):
        return None
    return tuple(keys)
