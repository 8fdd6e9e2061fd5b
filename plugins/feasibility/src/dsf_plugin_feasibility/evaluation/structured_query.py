"""The structured query (CCDL) the FDPG portal sends, as frozen values, and its parser.

Shape (JSON)::

    {"version": "...", "display": "...",
     "inclusionCriteria": [[criterion, ...], ...],   # AND of OR-groups
     "exclusionCriteria": [[criterion, ...], ...]}   # OR of AND-groups (optional)

    criterion = {"termCodes": [{"system", "code", "display"?, "version"?}, ...],   # several = OR
                 "context": termCode?,
                 "valueFilter": filter?,
                 "attributeFilters": [{"attributeCode": termCode, ...filter}]?,
                 "timeRestriction": {"afterDate"?: "YYYY-MM-DD", "beforeDate"?: "YYYY-MM-DD"}?,
                 "negated": bool?}                     # CCDL v3: no matching resource exists

    filter = {"type": "concept", "selectedConcepts": [termCode, ...]}
           | {"type": "quantity-comparator", "comparator": gt|ge|lt|le|eq|ne, "value": n, "unit": {"code"}?}
           | {"type": "quantity-range", "minValue": n, "maxValue": n, "unit": {"code"}?}

The parser is deliberately strict about what the evaluation depends on (types, required keys,
known filter types and comparators, ISO dates) and lenient about what it does not read
(``display``, ``version``, unknown keys), so a portal adding a field does not break sites.
Every error names the JSON path of the offending value.  Numbers become :class:`~decimal.Decimal`
so ``5.1`` reaches the FHIR search as ``5.1``, not ``5.0999999``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

from dsf_plugin_feasibility.evaluation.errors import StructuredQueryError

__all__ = [
    "AttributeFilter",
    "Comparator",
    "ConceptFilter",
    "Criterion",
    "QuantityComparatorFilter",
    "QuantityRangeFilter",
    "StructuredQuery",
    "TermCode",
    "TimeRestriction",
    "Unit",
    "ValueFilter",
    "parse_structured_query",
]


@dataclass(frozen=True, slots=True)
class TermCode:
    system: str
    code: str
    version: str | None = field(default=None, compare=False)
    display: str | None = field(default=None, compare=False)

    def __str__(self) -> str:
        return f"{self.system}|{self.code}"


class Comparator(StrEnum):
    GT = "gt"
    GE = "ge"
    LT = "lt"
    LE = "le"
    EQ = "eq"
    NE = "ne"


@dataclass(frozen=True, slots=True)
class Unit:
    """A UCUM unit (``code``, e.g. ``mg/dL``; ``a`` for years of age)."""

    code: str
    display: str | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class ConceptFilter:
    concepts: tuple[TermCode, ...]
    kind = "concept"


@dataclass(frozen=True, slots=True)
class QuantityComparatorFilter:
    comparator: Comparator
    value: Decimal
    unit: Unit | None = None
    kind = "quantity"


@dataclass(frozen=True, slots=True)
class QuantityRangeFilter:
    min_value: Decimal
    max_value: Decimal
    unit: Unit | None = None
    kind = "quantity"


ValueFilter = ConceptFilter | QuantityComparatorFilter | QuantityRangeFilter


@dataclass(frozen=True, slots=True)
class AttributeFilter:
    attribute_code: TermCode
    filter: ValueFilter


@dataclass(frozen=True, slots=True)
class TimeRestriction:
    """Resources whose time intersects [after, before] (either end may be open)."""

    after: date | None = None
    before: date | None = None


@dataclass(frozen=True, slots=True)
class Criterion:
    term_codes: tuple[TermCode, ...]
    context: TermCode | None = None
    value_filter: ValueFilter | None = None
    attribute_filters: tuple[AttributeFilter, ...] = ()
    time_restriction: TimeRestriction | None = None
    negated: bool = False
    #: Where the criterion stands in the query (``inclusionCriteria[0][1]``), for error messages.
    path: str = field(default="", compare=False)


@dataclass(frozen=True, slots=True)
class StructuredQuery:
    inclusion: tuple[tuple[Criterion, ...], ...]
    exclusion: tuple[tuple[Criterion, ...], ...] = ()
    version: str | None = None
    display: str | None = None

    def criteria(self) -> tuple[Criterion, ...]:
        """Every criterion, inclusion first, in document order."""
        return tuple(c for group in (*self.inclusion, *self.exclusion) for c in group)


# --- parsing ---------------------------------------------------------------------------


def parse_structured_query(source: str | bytes | Mapping[str, Any]) -> StructuredQuery:
    """Read the JSON text (or an already decoded object); raises :class:`StructuredQueryError`."""
    data: Any
    if isinstance(source, (str, bytes)):
        try:
            data = json.loads(source, parse_float=Decimal)
        except (ValueError, UnicodeDecodeError) as exc:
            raise StructuredQueryError("", f"structured query is not JSON: {exc}") from None
    else:
        data = source
    root = _object(data, "$")
    inclusion = _groups(root.get("inclusionCriteria"), "inclusionCriteria", required=False)
    exclusion = _groups(root.get("exclusionCriteria"), "exclusionCriteria", required=False)
    version = root.get("version")
    display = root.get("display")
    return StructuredQuery(
        inclusion,
        exclusion,
        str(version) if isinstance(version, (str, int)) else None,
        display if isinstance(display, str) else None,
    )


def _object(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise StructuredQueryError(path, f"expected an object, got {_kind(value)}")
    return value


def _array(value: Any, path: str, *, min_items: int = 0) -> Sequence[Any]:
    if not isinstance(value, list):
        raise StructuredQueryError(path, f"expected an array, got {_kind(value)}")
    if len(value) < min_items:
        raise StructuredQueryError(path, f"expected at least {min_items} item(s), got {len(value)}")
    return value


def _string(value: Any, path: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise StructuredQueryError(path, f"expected a non-empty string, got {_kind(value)}")
    return value


def _kind(value: Any) -> str:
    if value is None:
        return "nothing (missing or null)"
    if isinstance(value, bool):
        return f"boolean {value}"
    if isinstance(value, (int, float, Decimal)):
        return f"number {value}"
    if isinstance(value, str):
        return f"string {value!r}"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def _groups(value: Any, path: str, *, required: bool) -> tuple[tuple[Criterion, ...], ...]:
    if value is None and not required:
        return ()
    groups = _array(value, path)
    return tuple(
        tuple(_criterion(c, f"{path}[{i}][{j}]") for j, c in enumerate(_array(group, f"{path}[{i}]", min_items=1)))
        for i, group in enumerate(groups)
    )


def _term_code(value: Any, path: str) -> TermCode:
    obj = _object(value, path)
    version = obj.get("version")
    display = obj.get("display")
    return TermCode(
        _string(obj.get("system"), f"{path}.system"),
        _string(obj.get("code"), f"{path}.code"),
        version if isinstance(version, str) and version else None,
        display if isinstance(display, str) else None,
    )


def _criterion(value: Any, path: str) -> Criterion:
    obj = _object(value, path)
    codes = _array(obj.get("termCodes"), f"{path}.termCodes", min_items=1)
    term_codes = tuple(_term_code(c, f"{path}.termCodes[{i}]") for i, c in enumerate(codes))
    context = _term_code(obj["context"], f"{path}.context") if obj.get("context") is not None else None
    value_filter = _filter(obj["valueFilter"], f"{path}.valueFilter") if obj.get("valueFilter") is not None else None
    attributes: tuple[AttributeFilter, ...] = ()
    if obj.get("attributeFilters") is not None:
        items = _array(obj["attributeFilters"], f"{path}.attributeFilters")
        attributes = tuple(_attribute_filter(a, f"{path}.attributeFilters[{i}]") for i, a in enumerate(items))
    time = _time_restriction(obj["timeRestriction"], f"{path}.timeRestriction") if obj.get("timeRestriction") is not None else None
    negated = obj.get("negated", False)
    if not isinstance(negated, bool):
        raise StructuredQueryError(f"{path}.negated", f"expected a boolean, got {_kind(negated)}")
    return Criterion(term_codes, context, value_filter, attributes, time, negated, path)


def _attribute_filter(value: Any, path: str) -> AttributeFilter:
    obj = _object(value, path)
    code = _term_code(obj.get("attributeCode"), f"{path}.attributeCode")
    if obj.get("type") == "reference":
        raise StructuredQueryError(f"{path}.type", "attribute filters of type 'reference' are not supported")
    return AttributeFilter(code, _filter(obj, path))


_FILTER_TYPES = ("concept", "quantity-comparator", "quantity-range")


def _filter(value: Any, path: str) -> ValueFilter:
    obj = _object(value, path)
    type_ = obj.get("type")
    if type_ == "concept":
        concepts = _array(obj.get("selectedConcepts"), f"{path}.selectedConcepts", min_items=1)
        return ConceptFilter(tuple(_term_code(c, f"{path}.selectedConcepts[{i}]") for i, c in enumerate(concepts)))
    if type_ == "quantity-comparator":
        raw = obj.get("comparator")
        try:
            comparator = Comparator(raw if isinstance(raw, str) else "")
        except ValueError:
            allowed = ", ".join(c.value for c in Comparator)
            raise StructuredQueryError(f"{path}.comparator", f"expected one of {allowed}, got {_kind(raw)}") from None
        return QuantityComparatorFilter(comparator, _number(obj.get("value"), f"{path}.value"), _unit(obj, path))
    if type_ == "quantity-range":
        low = _number(obj.get("minValue"), f"{path}.minValue")
        high = _number(obj.get("maxValue"), f"{path}.maxValue")
        if low > high:
            raise StructuredQueryError(path, f"minValue {low} is greater than maxValue {high}")
        return QuantityRangeFilter(low, high, _unit(obj, path))
    raise StructuredQueryError(f"{path}.type", f"expected one of {', '.join(_FILTER_TYPES)}, got {_kind(type_)}")


def _number(value: Any, path: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise StructuredQueryError(path, f"expected a number, got {_kind(value)}")
    try:
        number = value if isinstance(value, Decimal) else Decimal(str(value))
    except InvalidOperation:
        raise StructuredQueryError(path, f"expected a number, got {_kind(value)}") from None
    if not number.is_finite():
        raise StructuredQueryError(path, f"expected a finite number, got {value}")
    return number


def _unit(obj: Mapping[str, Any], path: str) -> Unit | None:
    raw = obj.get("unit")
    if raw is None:
        return None
    unit = _object(raw, f"{path}.unit")
    display = unit.get("display")
    return Unit(_string(unit.get("code"), f"{path}.unit.code"), display if isinstance(display, str) else None)


def _time_restriction(value: Any, path: str) -> TimeRestriction:
    obj = _object(value, path)
    after = _date(obj.get("afterDate"), f"{path}.afterDate")
    before = _date(obj.get("beforeDate"), f"{path}.beforeDate")
    if after is None and before is None:
        raise StructuredQueryError(path, "needs afterDate or beforeDate")
    if after is not None and before is not None and after > before:
        raise StructuredQueryError(path, f"afterDate {after} is after beforeDate {before}")
    return TimeRestriction(after, before)


def _date(value: Any, path: str) -> date | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise StructuredQueryError(path, f"expected a date (YYYY-MM-DD), got {_kind(value)}")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise StructuredQueryError(path, f"expected a date (YYYY-MM-DD), got {value!r}") from None
