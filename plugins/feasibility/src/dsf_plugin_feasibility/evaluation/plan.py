"""Structured query + mapping table → the FHIR searches to run (pure: no I/O, no clock but *today*).

A criterion becomes a :class:`CriterionPlan`: the union of one or more steps, each a
:class:`Search` (``Condition?code=…&recorded-date=ge…``) or a :class:`ReferencedSearch` (look
up ``Medication?code=…`` ids first, then ``MedicationAdministration?medication=Medication/…``).
Several steps arise when a criterion's term codes map to different entries, or when an age
filter needs two birthdate ranges (``ne``).  Everything a filter says lands in the *same*
search, so value, attribute and time filters hold for one and the same resource, as in FLARE.

The query becomes a :class:`QueryPlan` mirroring its shape (inclusion groups of OR-ed
criteria, exclusion groups of AND-ed ones); :mod:`.cohort` runs it.  Planning first means a
criterion the mapping cannot express fails before any store is asked, with the criterion's
JSON path in the message.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from dsf_plugin_feasibility.evaluation.age import age_bounds
from dsf_plugin_feasibility.evaluation.errors import MappingError
from dsf_plugin_feasibility.evaluation.mapping import MappingEntry, MappingTable, ParameterType
from dsf_plugin_feasibility.evaluation.structured_query import (
    ConceptFilter,
    Criterion,
    QuantityComparatorFilter,
    QuantityRangeFilter,
    StructuredQuery,
    TermCode,
    ValueFilter,
)

__all__ = [
    "ALL_PATIENTS",
    "UCUM",
    "CriterionPlan",
    "QueryPlan",
    "ReferencedSearch",
    "Search",
    "Step",
    "plan_criterion",
    "plan_query",
]

UCUM = "http://unitsofmeasure.org"
Params = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Search:
    """``GET [resource_type]?params``; the patients are ``patient_element``'s references (None: Patient ids)."""

    resource_type: str
    params: Params = ()
    patient_element: str | None = None

    def __str__(self) -> str:
        query = "&".join(f"{k}={v}" for k, v in self.params)
        return f"{self.resource_type}?{query}" if query else self.resource_type


@dataclass(frozen=True, slots=True)
class ReferencedSearch:
    """Run ``lookup`` for resource ids, then ``search`` with ``reference_parameter=<Type>/<id>,…`` added."""

    lookup: Search
    reference_parameter: str
    search: Search

    def __str__(self) -> str:
        return f"{self.search} with {self.reference_parameter} from {self.lookup}"


Step = Search | ReferencedSearch
ALL_PATIENTS = Search("Patient")


@dataclass(frozen=True, slots=True)
class CriterionPlan:
    criterion: Criterion
    steps: tuple[Step, ...]  # union; empty: matches nobody

    @property
    def negated(self) -> bool:
        return self.criterion.negated


@dataclass(frozen=True, slots=True)
class QueryPlan:
    inclusion: tuple[tuple[CriterionPlan, ...], ...]  # AND of ORs; empty: every patient
    exclusion: tuple[tuple[CriterionPlan, ...], ...]  # OR of ANDs

    def steps(self) -> tuple[Step, ...]:
        """Every distinct step, in plan order (``ALL_PATIENTS`` included when the plan needs it)."""
        seen: dict[Step, None] = {}
        if self.needs_all_patients:
            seen[ALL_PATIENTS] = None
        for group in (*self.inclusion, *self.exclusion):
            for plan in group:
                seen.update(dict.fromkeys(plan.steps))
        return tuple(seen)

    @property
    def needs_all_patients(self) -> bool:
        return not self.inclusion or any(p.negated for g in (*self.inclusion, *self.exclusion) for p in g)


def plan_query(query: StructuredQuery, table: MappingTable, today: date) -> QueryPlan:
    """Plan every criterion; raises :class:`MappingError` naming the first one that cannot be expressed."""
    return QueryPlan(
        tuple(tuple(plan_criterion(c, table, today) for c in group) for group in query.inclusion),
        tuple(tuple(plan_criterion(c, table, today) for c in group) for group in query.exclusion),
    )


def plan_criterion(criterion: Criterion, table: MappingTable, today: date) -> CriterionPlan:
    groups: dict[int, tuple[MappingEntry, list[TermCode]]] = {}
    for i, code in enumerate(criterion.term_codes):
        entry = table.find(code, criterion.context)
        if entry is None:
            context = f" in context {criterion.context}" if criterion.context else ""
            raise MappingError(f"{criterion.path}.termCodes[{i}]: no mapping for term code {code}{context}")
        groups.setdefault(id(entry), (entry, []))[1].append(code)
    steps: list[Step] = []
    for entry, codes in groups.values():
        steps.extend(_steps(criterion, entry, codes, today))
    return CriterionPlan(criterion, tuple(dict.fromkeys(steps)))


def _steps(criterion: Criterion, entry: MappingEntry, codes: list[TermCode], today: date) -> list[Step]:
    path = criterion.path
    params: list[tuple[str, str]] = []
    alternatives: tuple[tuple[tuple[str, str], ...], ...] = ((),)
    if entry.term_code_search_parameter is not None and entry.term_code_reference is None:
        params.append((entry.term_code_search_parameter, ",".join(_token(c) for c in codes)))
    value = criterion.value_filter
    if value is not None:
        value_search = entry.value_search(value.kind)
        if value_search is None:
            raise MappingError(
                f"{path}.valueFilter: {entry.describe()} maps to {entry.resource_type}, "
                f"which takes no {value.kind} value filter"
            )
        if value_search.type == "age":
            assert not isinstance(value, ConceptFilter)  # age is only allowed for quantity filters
            try:
                alternatives = age_bounds(value, today, value_search.search_parameter)
            except ValueError as exc:
                raise MappingError(f"{path}.valueFilter: {exc}") from None
        else:
            params.extend(_filter_params(value_search.search_parameter, value_search.type, value))
    for i, attribute in enumerate(criterion.attribute_filters):
        where = f"{path}.attributeFilters[{i}]"
        attribute_search = entry.attribute_search(attribute.attribute_code)
        if attribute_search is None:
            raise MappingError(f"{where}: {entry.describe()} has no attribute {attribute.attribute_code}")
        if (attribute_search.type == "quantity") != (attribute.filter.kind == "quantity"):
            raise MappingError(
                f"{where}: attribute {attribute.attribute_code} is searched as {attribute_search.type}, "
                f"not with a {attribute.filter.kind} filter"
            )
        params.extend(_filter_params(attribute_search.search_parameter, attribute_search.type, attribute.filter))
    if criterion.time_restriction is not None:
        parameter = entry.time_restriction_parameter
        if parameter is None:
            raise MappingError(f"{path}.timeRestriction: {entry.describe()} ({entry.resource_type}) has no time to restrict")
        if criterion.time_restriction.after is not None:
            params.append((parameter, f"ge{criterion.time_restriction.after.isoformat()}"))
        if criterion.time_restriction.before is not None:
            params.append((parameter, f"le{criterion.time_restriction.before.isoformat()}"))
    params.extend((fixed.search_parameter, ",".join(fixed.values)) for fixed in entry.fixed_criteria)
    steps: list[Step] = []
    for alternative in alternatives:
        search = Search(entry.resource_type, (*params, *alternative), entry.patient_reference)
        reference = entry.term_code_reference
        if reference is not None and entry.term_code_search_parameter is not None:
            lookup = Search(reference.resource_type, ((reference.search_parameter, ",".join(_token(c) for c in codes)),))
            steps.append(ReferencedSearch(lookup, entry.term_code_search_parameter, search))
        else:
            steps.append(search)
    return steps


def _filter_params(parameter: str, type_: ParameterType, value: ValueFilter) -> list[tuple[str, str]]:
    if isinstance(value, ConceptFilter):
        if type_ == "code":
            return [(parameter, ",".join(_escape(c.code) for c in value.concepts))]
        return [(parameter, ",".join(_token(c) for c in value.concepts))]
    unit = f"|{UCUM}|{_escape(value.unit.code)}" if value.unit is not None else ""
    if isinstance(value, QuantityComparatorFilter):
        return [(parameter, f"{value.comparator.value}{_number(value.value)}{unit}")]
    assert isinstance(value, QuantityRangeFilter)
    return [(parameter, f"ge{_number(value.min_value)}{unit}"), (parameter, f"le{_number(value.max_value)}{unit}")]


def _token(code: TermCode) -> str:
    return f"{_escape(code.system)}|{_escape(code.code)}"


def _escape(text: str) -> str:
    """FHIR search escaping: ``,``, ``|`` and ``$`` in a value are preceded by a backslash."""
    return text.replace("\\", "\\\\").replace(",", "\\,").replace("|", "\\|").replace("$", "\\$")


def _number(value: Decimal) -> str:
    return format(value, "f")  # never exponent notation: 1E+1 → 10
