"""The structured query parser: every shape the FDPG portal sends, and errors that name the JSON path."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from dsf_plugin_feasibility.evaluation.errors import StructuredQueryError
from dsf_plugin_feasibility.evaluation.structured_query import (
    AttributeFilter,
    Comparator,
    ConceptFilter,
    QuantityComparatorFilter,
    QuantityRangeFilter,
    TermCode,
    TimeRestriction,
    Unit,
    parse_structured_query,
)

ICD = "http://fhir.de/CodeSystem/bfarm/icd-10-gm"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"


def code(system: str, value: str, display: str = "x") -> dict[str, str]:
    return {"system": system, "code": value, "display": display}


# The shape of the Java plugin's valid-structured-query.json fixture (Patient gender, FDPG context).
GENDER_QUERY = {
    "version": "http://to_be_decided.com/draft-1/schema#",
    "display": "",
    "inclusionCriteria": [
        [
            {
                "termCodes": [code(SNOMED, "263495000", "Geschlecht")],
                "context": {"code": "Patient", "system": "fdpg.mii.cds", "version": "1.0.0", "display": "Patient"},
                "valueFilter": {"type": "concept", "selectedConcepts": [code("http://hl7.org/fhir/administrative-gender", "female")]},
            }
        ]
    ],
}


def test_the_portals_gender_query() -> None:
    query = parse_structured_query(json.dumps(GENDER_QUERY))
    [[criterion]] = query.inclusion
    assert criterion.term_codes == (TermCode(SNOMED, "263495000"),)
    assert criterion.context == TermCode("fdpg.mii.cds", "Patient")
    assert criterion.value_filter == ConceptFilter((TermCode("http://hl7.org/fhir/administrative-gender", "female"),))
    assert criterion.path == "inclusionCriteria[0][0]"
    assert query.exclusion == ()


def test_every_filter_kind_time_restriction_and_exclusion() -> None:
    text = json.dumps(
        {
            "version": "3",
            "inclusionCriteria": [
                [
                    {"termCodes": [code(LOINC, "2339-0"), code(LOINC, "15074-8")], "context": code("fdpg.mii.cds", "Laboruntersuchung"),
                     "valueFilter": {"type": "quantity-comparator", "comparator": "gt", "value": 5.1, "unit": {"code": "mg/dL", "display": "mg/dL"}},
                     "timeRestriction": {"afterDate": "2020-01-01", "beforeDate": "2020-12-31"}},
                    {"termCodes": [code(LOINC, "2339-0")], "context": code("fdpg.mii.cds", "Laboruntersuchung"),
                     "valueFilter": {"type": "quantity-range", "minValue": 1, "maxValue": 2.5}},
                ],
                [
                    {"termCodes": [code(SNOMED, "119364003")], "context": code("fdpg.mii.cds", "Specimen"),
                     "attributeFilters": [{"type": "concept", "attributeCode": code("http://hl7.org/fhir/StructureDefinition", "body-site"),
                                           "selectedConcepts": [code(SNOMED, "49852007")]}],
                     "timeRestriction": {"beforeDate": "2021-06-30"}},
                ],
            ],
            "exclusionCriteria": [[{"termCodes": [code(ICD, "E11.9")], "context": code("fdpg.mii.cds", "Diagnose"), "negated": True}]],
        }
    )
    query = parse_structured_query(text)
    first, second = query.inclusion[0]
    assert first.value_filter == QuantityComparatorFilter(Comparator.GT, Decimal("5.1"), Unit("mg/dL"))
    assert str(first.value_filter.value) == "5.1"  # type: ignore[union-attr]  # no binary float on the way
    assert first.time_restriction == TimeRestriction(date(2020, 1, 1), date(2020, 12, 31))
    assert len(first.term_codes) == 2
    assert second.value_filter == QuantityRangeFilter(Decimal(1), Decimal("2.5"), None)
    [specimen] = query.inclusion[1]
    assert specimen.attribute_filters == (
        AttributeFilter(TermCode("http://hl7.org/fhir/StructureDefinition", "body-site"), ConceptFilter((TermCode(SNOMED, "49852007"),))),
    )
    assert specimen.time_restriction == TimeRestriction(None, date(2021, 6, 30))
    [[excluded]] = query.exclusion
    assert excluded.negated and excluded.path == "exclusionCriteria[0][0]"
    assert [c.path for c in query.criteria()] == [
        "inclusionCriteria[0][0]", "inclusionCriteria[0][1]", "inclusionCriteria[1][0]", "exclusionCriteria[0][0]",
    ]


def test_an_already_decoded_object_and_no_inclusion() -> None:
    query = parse_structured_query({"exclusionCriteria": [[{"termCodes": [code(ICD, "I10")]}]]})
    assert query.inclusion == () and len(query.exclusion) == 1
    assert parse_structured_query({}).criteria() == ()


def _with(criterion: dict[str, Any]) -> dict[str, Any]:
    return {"inclusionCriteria": [[{"termCodes": [code(ICD, "I10")], **criterion}]]}


@pytest.mark.parametrize(
    ("document", "path", "fragment"),
    [
        ("not json", "", "not JSON"),
        ([], "$", "expected an object"),
        ({"inclusionCriteria": {}}, "inclusionCriteria", "expected an array"),
        ({"inclusionCriteria": [[]]}, "inclusionCriteria[0]", "at least 1"),
        ({"inclusionCriteria": [[{"termCodes": []}]]}, "inclusionCriteria[0][0].termCodes", "at least 1"),
        ({"inclusionCriteria": [[{"termCodes": [{"system": ICD}]}]]}, "inclusionCriteria[0][0].termCodes[0].code", "non-empty string"),
        (_with({"valueFilter": {"type": "range"}}), "inclusionCriteria[0][0].valueFilter.type", "quantity-range"),
        (_with({"valueFilter": {"type": "quantity-comparator", "comparator": "gte", "value": 1}}),
         "inclusionCriteria[0][0].valueFilter.comparator", "gt, ge, lt, le, eq, ne"),
        (_with({"valueFilter": {"type": "quantity-comparator", "comparator": "gt", "value": "5"}}),
         "inclusionCriteria[0][0].valueFilter.value", "expected a number"),
        (_with({"valueFilter": {"type": "quantity-comparator", "comparator": "gt", "value": True}}),
         "inclusionCriteria[0][0].valueFilter.value", "expected a number"),
        (_with({"valueFilter": {"type": "quantity-range", "minValue": 3, "maxValue": 1}}),
         "inclusionCriteria[0][0].valueFilter", "greater than maxValue"),
        (_with({"valueFilter": {"type": "concept", "selectedConcepts": []}}),
         "inclusionCriteria[0][0].valueFilter.selectedConcepts", "at least 1"),
        (_with({"valueFilter": {"type": "quantity-range", "minValue": 1, "maxValue": 2, "unit": {"display": "x"}}}),
         "inclusionCriteria[0][0].valueFilter.unit.code", "non-empty string"),
        (_with({"attributeFilters": [{"type": "concept", "selectedConcepts": [code(SNOMED, "1")]}]}),
         "inclusionCriteria[0][0].attributeFilters[0].attributeCode", "expected an object"),
        (_with({"attributeFilters": [{"type": "reference", "attributeCode": code(SNOMED, "1"), "criteria": []}]}),
         "inclusionCriteria[0][0].attributeFilters[0].type", "not supported"),
        (_with({"timeRestriction": {}}), "inclusionCriteria[0][0].timeRestriction", "afterDate or beforeDate"),
        (_with({"timeRestriction": {"afterDate": "2020-13-01"}}), "inclusionCriteria[0][0].timeRestriction.afterDate", "YYYY-MM-DD"),
        (_with({"timeRestriction": {"afterDate": "2021-01-01", "beforeDate": "2020-01-01"}}),
         "inclusionCriteria[0][0].timeRestriction", "after beforeDate"),
        (_with({"negated": "yes"}), "inclusionCriteria[0][0].negated", "boolean"),
        ({"exclusionCriteria": [[{"termCodes": "I10"}]]}, "exclusionCriteria[0][0].termCodes", "expected an array"),
    ],
)
def test_errors_name_the_json_path(document: Any, path: str, fragment: str) -> None:
    source = document if isinstance(document, str) else json.dumps(document)
    with pytest.raises(StructuredQueryError) as caught:
        parse_structured_query(source)
    assert caught.value.path == path
    assert fragment in str(caught.value)
    assert str(caught.value).startswith(f"{path}: " if path else "structured query")
