"""Term code → FHIR search: the mapping table, as data.

The default table ships as ``mapping.json`` beside this module (KDS modules: diagnoses by
ICD-10-GM, laboratory by LOINC, procedures by OPS, medication by ATC, specimens by SNOMED CT,
consent by MII provision code, patient gender and age).  A site extends or overrides it with a
file of the same format (:func:`load_mapping`): an entry with the same key and context replaces
the default one, any other is added; ``"replaceDefaults": true`` drops the defaults.

One entry::

    {"key": {"system": "http://loinc.org", "code": "*"},     # "*": every code of the system
     "context": {"system": "fdpg.mii.cds", "code": "Laboruntersuchung"},   # optional
     "fhirResourceType": "Observation",
     "termCodeSearchParameter": "code",                      # null: the key only selects the entry
     "termCodeReference": {"fhirResourceType": "Medication", "searchParameter": "code"},  # optional
     "patientReference": "subject",                          # element naming the patient; not for Patient
     "timeRestrictionParameter": "date",                     # null: time restrictions are refused
     "valueSearchParameters": {"quantity": {"searchParameter": "value-quantity", "type": "quantity"},
                               "concept": {"searchParameter": "value-concept", "type": "token"}},
     "attributeSearchParameters": [{"attributeKey": {"system": ..., "code": ...},
                                    "searchParameter": "bodysite", "type": "token"}],
     "fixedCriteria": [{"searchParameter": "status", "values": ["final", "amended"]}]}

Parameter types say how a filter becomes a search value: ``token`` → ``system|code``, ``code`` →
``code`` alone (``Patient?gender=female``), ``quantity`` → ``gt5|http://unitsofmeasure.org|mg/dL``,
``age`` → ``birthdate`` bounds computed against "today".  ``termCodeReference`` is for stores
without chained search: the term codes are searched on the referenced type first and the main
search takes the found ids (``Medication?code=…`` → ``MedicationAdministration?medication=…``).

Lookup prefers an exact code over the system wildcard and, at the same level, an entry whose
context equals the criterion's over one without context.  The names follow FLARE's mapping
files (``fhirResourceType``, ``termCodeSearchParameter``, ``timeRestrictionParameter``,
``attributeSearchParameters``) so the two read alike.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from dsf_plugin_feasibility.evaluation.errors import MappingError
from dsf_plugin_feasibility.evaluation.structured_query import TermCode

__all__ = [
    "AttributeSearch",
    "FixedCriterion",
    "MappingEntry",
    "MappingTable",
    "ParameterType",
    "TermCodeReference",
    "ValueSearch",
    "WILDCARD",
    "default_mapping",
    "load_mapping",
    "parse_mapping",
]

WILDCARD = "*"
ParameterType = Literal["token", "code", "quantity", "age"]
_VALUE_TYPES: dict[str, tuple[str, ...]] = {"concept": ("token", "code"), "quantity": ("quantity", "age")}
_ATTRIBUTE_TYPES = ("token", "code", "quantity")
_ENTRY_KEYS = frozenset(
    {
        "name", "key", "context", "fhirResourceType", "termCodeSearchParameter", "termCodeReference",
        "patientReference", "timeRestrictionParameter", "valueSearchParameters", "attributeSearchParameters",
        "fixedCriteria",
    }
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class ValueSearch:
    search_parameter: str
    type: ParameterType


@dataclass(frozen=True, slots=True)
class AttributeSearch:
    attribute_key: TermCode
    search_parameter: str
    type: ParameterType


@dataclass(frozen=True, slots=True)
class FixedCriterion:
    search_parameter: str
    values: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TermCodeReference:
    """Term codes are searched on ``resource_type`` by ``search_parameter``; the main search takes the ids."""

    resource_type: str
    search_parameter: str


@dataclass(frozen=True, slots=True)
class MappingEntry:
    key: TermCode
    resource_type: str
    term_code_search_parameter: str | None = None
    patient_reference: str | None = None
    time_restriction_parameter: str | None = None
    value_searches: Mapping[str, ValueSearch] | None = None
    attribute_searches: tuple[AttributeSearch, ...] = ()
    fixed_criteria: tuple[FixedCriterion, ...] = ()
    term_code_reference: TermCodeReference | None = None
    context: TermCode | None = None
    name: str | None = None

    @property
    def is_wildcard(self) -> bool:
        return self.key.code == WILDCARD

    @property
    def identity(self) -> tuple[str, str, str | None, str | None]:
        """What makes two entries the same entry (an override replaces by it)."""
        ctx = self.context
        return (self.key.system, self.key.code, ctx.system if ctx else None, ctx.code if ctx else None)

    def value_search(self, kind: str) -> ValueSearch | None:
        return (self.value_searches or {}).get(kind)

    def attribute_search(self, code: TermCode) -> AttributeSearch | None:
        for attribute in self.attribute_searches:
            if attribute.attribute_key == code:
                return attribute
        return None

    def describe(self) -> str:
        key = f"{self.key.system}|{self.key.code}"
        return f"{self.name} ({key})" if self.name else key


class MappingTable:
    """Entries indexed for lookup by term code and context."""

    def __init__(self, entries: Iterable[MappingEntry]) -> None:
        self.entries: tuple[MappingEntry, ...] = tuple(entries)
        self._exact: dict[tuple[str, str], list[MappingEntry]] = {}
        self._wildcard: dict[str, list[MappingEntry]] = {}
        seen: set[tuple[str, str, str | None, str | None]] = set()
        for entry in self.entries:
            if entry.identity in seen:
                raise MappingError(f"two mapping entries for {entry.describe()} with the same context")
            seen.add(entry.identity)
            if entry.is_wildcard:
                self._wildcard.setdefault(entry.key.system, []).append(entry)
            else:
                self._exact.setdefault((entry.key.system, entry.key.code), []).append(entry)

    def __len__(self) -> int:
        return len(self.entries)

    def find(self, term_code: TermCode, context: TermCode | None = None) -> MappingEntry | None:
        """The entry for a term code: exact before wildcard, same context before no context."""
        for candidates in (self._exact.get((term_code.system, term_code.code)), self._wildcard.get(term_code.system)):
            if not candidates:
                continue
            best = None
            for entry in candidates:
                if entry.context is None:
                    best = best or entry
                elif context is not None and entry.context == context:
                    return entry
            if best is not None:
                return best
        return None

    def overlay(self, entries: Iterable[MappingEntry]) -> MappingTable:
        """This table with *entries* replacing same-identity entries and adding the rest."""
        replacing = {e.identity: e for e in entries}
        kept = [replacing.pop(e.identity, e) for e in self.entries]
        return MappingTable([*kept, *replacing.values()])


# --- loading ---------------------------------------------------------------------------


def default_mapping() -> MappingTable:
    """The table shipped with the plugin (``mapping.json``)."""
    text = resources.files("dsf_plugin_feasibility.evaluation").joinpath("mapping.json").read_text("utf-8")
    table, _ = parse_mapping(json.loads(text), source="mapping.json (default)")
    return table


def load_mapping(path: Path | None = None) -> MappingTable:
    """The default table, extended and overridden by the file at *path* (if given)."""
    base = default_mapping()
    if path is None:
        return base
    try:
        data = json.loads(Path(path).read_text("utf-8"))
    except OSError as exc:
        raise MappingError(f"{path}: cannot read the mapping file: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise MappingError(f"{path}: not JSON: {exc}") from None
    table, replace = parse_mapping(data, source=str(path))
    return table if replace else base.overlay(table.entries)


def parse_mapping(data: Any, *, source: str = "mapping") -> tuple[MappingTable, bool]:
    """A mapping document → (table, replaceDefaults); raises :class:`MappingError` naming the place."""
    where = _Where(source)
    root = where.object(data, "")
    unknown = set(root) - {"mappings", "replaceDefaults", "format", "description"}
    if unknown:
        raise MappingError(where.at("", f"unknown key(s) {', '.join(sorted(unknown))}"))
    replace = root.get("replaceDefaults", False)
    if not isinstance(replace, bool):
        raise MappingError(where.at("replaceDefaults", "expected a boolean"))
    items = root.get("mappings")
    if not isinstance(items, list):
        raise MappingError(where.at("mappings", "expected an array of mapping entries"))
    entries = [_entry(item, f"mappings[{i}]", where) for i, item in enumerate(items)]
    try:
        return MappingTable(entries), replace
    except MappingError as exc:
        raise MappingError(f"{source}: {exc}") from None


class _Where:
    def __init__(self, source: str) -> None:
        self.source = source

    def at(self, path: str, message: str) -> str:
        return f"{self.source}: {path}: {message}" if path else f"{self.source}: {message}"

    def object(self, value: Any, path: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise MappingError(self.at(path, "expected an object"))
        return value

    def string(self, value: Any, path: str, *, optional: bool = False) -> str | None:
        if value is None and optional:
            return None
        if not isinstance(value, str) or not value:
            raise MappingError(self.at(path, "expected a non-empty string" + (" or null" if optional else "")))
        return value

    def required(self, value: Any, path: str) -> str:
        text = self.string(value, path)
        assert text is not None
        return text

    def term_code(self, value: Any, path: str) -> TermCode:
        obj = self.object(value, path)
        display = obj.get("display")
        return TermCode(
            self.required(obj.get("system"), f"{path}.system"),
            self.required(obj.get("code"), f"{path}.code"),
            display=display if isinstance(display, str) else None,
        )

    def choice(self, value: Any, path: str, allowed: Sequence[str]) -> ParameterType:
        if value not in allowed:
            raise MappingError(self.at(path, f"expected one of {', '.join(allowed)}, got {value!r}"))
        return value  # type: ignore[no-any-return]


def _entry(value: Any, path: str, where: _Where) -> MappingEntry:
    obj = where.object(value, path)
    unknown = set(obj) - _ENTRY_KEYS
    if unknown:
        raise MappingError(where.at(path, f"unknown key(s) {', '.join(sorted(unknown))}"))
    key = where.term_code(obj.get("key"), f"{path}.key")
    context = where.term_code(obj["context"], f"{path}.context") if obj.get("context") is not None else None
    resource_type = where.required(obj.get("fhirResourceType"), f"{path}.fhirResourceType")
    if not resource_type[0].isupper() or not resource_type.isalpha():
        raise MappingError(where.at(f"{path}.fhirResourceType", f"not a FHIR resource type: {resource_type!r}"))
    patient = where.string(obj.get("patientReference"), f"{path}.patientReference", optional=True)
    if resource_type == "Patient" and patient is not None:
        raise MappingError(where.at(f"{path}.patientReference", "a Patient entry counts Patient ids; leave it out"))
    if resource_type != "Patient" and patient is None:
        raise MappingError(where.at(f"{path}.patientReference", f"required for {resource_type} (e.g. subject)"))
    reference = None
    if obj.get("termCodeReference") is not None:
        ref = where.object(obj["termCodeReference"], f"{path}.termCodeReference")
        reference = TermCodeReference(
            where.required(ref.get("fhirResourceType"), f"{path}.termCodeReference.fhirResourceType"),
            where.required(ref.get("searchParameter"), f"{path}.termCodeReference.searchParameter"),
        )
    term_param = where.string(obj.get("termCodeSearchParameter"), f"{path}.termCodeSearchParameter", optional=True)
    if reference is not None and term_param is None:
        raise MappingError(where.at(f"{path}.termCodeSearchParameter", "termCodeReference needs the reference parameter here"))
    return MappingEntry(
        key=key,
        resource_type=resource_type,
        term_code_search_parameter=term_param,
        patient_reference=patient,
        time_restriction_parameter=where.string(
            obj.get("timeRestrictionParameter"), f"{path}.timeRestrictionParameter", optional=True
        ),
        value_searches=_value_searches(obj.get("valueSearchParameters"), f"{path}.valueSearchParameters", where, resource_type),
        attribute_searches=_attribute_searches(obj.get("attributeSearchParameters"), f"{path}.attributeSearchParameters", where),
        fixed_criteria=_fixed_criteria(obj.get("fixedCriteria"), f"{path}.fixedCriteria", where),
        term_code_reference=reference,
        context=context,
        name=where.string(obj.get("name"), f"{path}.name", optional=True),
    )


def _value_searches(value: Any, path: str, where: _Where, resource_type: str) -> Mapping[str, ValueSearch] | None:
    if value is None:
        return None
    obj = where.object(value, path)
    out: dict[str, ValueSearch] = {}
    for kind, spec in obj.items():
        if kind not in _VALUE_TYPES:
            raise MappingError(where.at(f"{path}.{kind}", f"expected a filter kind ({', '.join(_VALUE_TYPES)})"))
        item = where.object(spec, f"{path}.{kind}")
        type_ = where.choice(item.get("type"), f"{path}.{kind}.type", _VALUE_TYPES[kind])
        if type_ == "age" and resource_type != "Patient":
            raise MappingError(where.at(f"{path}.{kind}.type", "age is computed from Patient.birthDate; only for Patient"))
        out[kind] = ValueSearch(where.required(item.get("searchParameter"), f"{path}.{kind}.searchParameter"), type_)
    return out


def _attribute_searches(value: Any, path: str, where: _Where) -> tuple[AttributeSearch, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise MappingError(where.at(path, "expected an array"))
    out = []
    for i, item in enumerate(value):
        obj = where.object(item, f"{path}[{i}]")
        out.append(
            AttributeSearch(
                where.term_code(obj.get("attributeKey"), f"{path}[{i}].attributeKey"),
                where.required(obj.get("searchParameter"), f"{path}[{i}].searchParameter"),
                where.choice(obj.get("type"), f"{path}[{i}].type", _ATTRIBUTE_TYPES),
            )
        )
    return tuple(out)


def _fixed_criteria(value: Any, path: str, where: _Where) -> tuple[FixedCriterion, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise MappingError(where.at(path, "expected an array"))
    out = []
    for i, item in enumerate(value):
        obj = where.object(item, f"{path}[{i}]")
        values = obj.get("values")
        if not isinstance(values, list) or not values or not all(isinstance(v, str) and v for v in values):
            raise MappingError(where.at(f"{path}[{i}].values", "expected a non-empty array of strings"))
        out.append(FixedCriterion(where.required(obj.get("searchParameter"), f"{path}[{i}].searchParameter"), tuple(values)))
    return tuple(out)
