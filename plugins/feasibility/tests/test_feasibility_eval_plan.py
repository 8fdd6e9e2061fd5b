"""Mapping table (defaults, lookup, overrides, validation), age bounds and the planned FHIR searches."""

from __future__ import annotations

import itertools
import json
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from dsf_plugin_feasibility.evaluation.age import age_bounds, shift
from dsf_plugin_feasibility.evaluation.errors import MappingError
from dsf_plugin_feasibility.evaluation.mapping import default_mapping, load_mapping, parse_mapping
from dsf_plugin_feasibility.evaluation.plan import ALL_PATIENTS, ReferencedSearch, Search, plan_criterion, plan_query
from dsf_plugin_feasibility.evaluation.structured_query import (
    Comparator,
    QuantityComparatorFilter,
    QuantityRangeFilter,
    TermCode,
    Unit,
    parse_structured_query,
)

ICD = "http://fhir.de/CodeSystem/bfarm/icd-10-gm"
LOINC = "http://loinc.org"
OPS = "http://fhir.de/CodeSystem/bfarm/ops"
ATC = "http://fhir.de/CodeSystem/bfarm/atc"
SNOMED = "http://snomed.info/sct"
CONSENT = "urn:oid:2.16.840.1.113883.3.1937.777.24.5.3"
UCUM = "http://unitsofmeasure.org"
TODAY = date(2024, 3, 15)


def tc(system: str, value: str) -> dict[str, str]:
    return {"system": system, "code": value, "display": value}


def plan_of(criterion: dict[str, Any], today: date = TODAY) -> tuple[Any, ...]:
    query = parse_structured_query({"inclusionCriteria": [[criterion]]})
    return plan_criterion(query.inclusion[0][0], default_mapping(), today).steps


# --- mapping table -----------------------------------------------------------------------


def test_the_default_table_covers_the_kds_modules() -> None:
    table = default_mapping()
    expected = {
        (ICD, "A00.0"): "Condition", (LOINC, "2339-0"): "Observation", (OPS, "5-470"): "Procedure",
        (ATC, "A10BA02"): "MedicationAdministration", (SNOMED, "119364003"): "Specimen", (CONSENT, "2.16.840.1.113883.3.1937.777.24.5.3.8"): "Consent",
        (LOINC, "76689-9"): "Patient", (LOINC, "30525-0"): "Patient", (SNOMED, "263495000"): "Patient", (SNOMED, "424144002"): "Patient",
    }  # fmt: skip
    for (system, value), resource_type in expected.items():
        entry = table.find(TermCode(system, value))
        assert entry is not None and entry.resource_type == resource_type, (system, value)
    assert table.find(TermCode("http://example.org/unknown", "1")) is None


def test_lookup_prefers_exact_codes_and_matching_context() -> None:
    document = {
        "mappings": [
            {"key": tc(LOINC, "*"), "fhirResourceType": "Observation", "termCodeSearchParameter": "code", "patientReference": "subject"},
            {"key": tc(LOINC, "*"), "context": tc("fdpg.mii.cds", "Befund"), "fhirResourceType": "DiagnosticReport",
             "termCodeSearchParameter": "code", "patientReference": "subject"},
            {"key": tc(LOINC, "1-8"), "fhirResourceType": "Procedure", "termCodeSearchParameter": "code", "patientReference": "subject"},
        ]
    }
    table, replace = parse_mapping(document)
    assert not replace
    befund = TermCode("fdpg.mii.cds", "Befund")
    assert table.find(TermCode(LOINC, "2-6"))is not None and table.find(TermCode(LOINC, "2-6")).resource_type == "Observation"  # type: ignore[union-attr]
    assert table.find(TermCode(LOINC, "2-6"), befund).resource_type == "DiagnosticReport"  # type: ignore[union-attr]
    assert table.find(TermCode(LOINC, "1-8"), befund).resource_type == "Procedure"  # type: ignore[union-attr]


def test_a_site_file_overrides_and_extends_the_defaults(tmp_path: Path) -> None:
    site = tmp_path / "mapping.json"
    site.write_text(json.dumps({"mappings": [
        {"key": tc(ICD, "*"), "fhirResourceType": "Condition", "termCodeSearchParameter": "code",
         "patientReference": "subject", "timeRestrictionParameter": "onset-date"},
        {"key": tc("http://example.org/local", "*"), "fhirResourceType": "Observation", "termCodeSearchParameter": "code",
         "patientReference": "subject"},
    ]}))  # fmt: skip
    table = load_mapping(site)
    assert len(table) == len(default_mapping()) + 1
    assert table.find(TermCode(ICD, "I10")).time_restriction_parameter == "onset-date"  # type: ignore[union-attr]
    assert table.find(TermCode("http://example.org/local", "x")) is not None
    site.write_text(json.dumps({"replaceDefaults": True, "mappings": [
        {"key": tc(ICD, "*"), "fhirResourceType": "Condition", "termCodeSearchParameter": "code", "patientReference": "subject"}]}))
    assert len(load_mapping(site)) == 1


@pytest.mark.parametrize(
    ("entry", "fragment"),
    [
        ({"key": tc(ICD, "*"), "fhirResourceType": "Condition", "termCodeSearchParameter": "code"}, "mappings[0].patientReference: required"),
        ({"key": tc(ICD, "*"), "fhirResourceType": "condition", "patientReference": "subject"}, "mappings[0].fhirResourceType: not a FHIR resource type"),
        ({"key": {"system": ICD}, "fhirResourceType": "Condition", "patientReference": "subject"}, "mappings[0].key.code"),
        ({"key": tc(ICD, "*"), "fhirResourceType": "Condition", "patientReference": "subject", "valueSearchParameters": {"quantity": {"searchParameter": "x", "type": "token"}}},
         "mappings[0].valueSearchParameters.quantity.type: expected one of quantity, age"),
        ({"key": tc(ICD, "*"), "fhirResourceType": "Condition", "patientReference": "subject", "valueSearchParameters": {"quantity": {"searchParameter": "x", "type": "age"}}},
         "only for Patient"),
        ({"key": tc(ICD, "*"), "fhirResourceType": "Condition", "patientReference": "subject", "timeRestrictionParamter": "date"}, "unknown key(s) timeRestrictionParamter"),
        ({"key": tc(LOINC, "1"), "fhirResourceType": "Patient", "patientReference": "link"}, "leave it out"),
        ({"key": tc(ICD, "*"), "fhirResourceType": "Condition", "patientReference": "subject", "fixedCriteria": [{"searchParameter": "status", "values": []}]},
         "mappings[0].fixedCriteria[0].values"),
    ],
)
def test_invalid_entries_are_refused_with_their_place(entry: dict[str, Any], fragment: str) -> None:
    with pytest.raises(MappingError) as caught:
        parse_mapping({"mappings": [entry]}, source="site.json")
    assert str(caught.value).startswith("site.json: ")
    assert fragment in str(caught.value)


def test_duplicate_entries_and_unreadable_files(tmp_path: Path) -> None:
    entry = {"key": tc(ICD, "*"), "fhirResourceType": "Condition", "patientReference": "subject"}
    with pytest.raises(MappingError, match="site.json: two mapping entries"):
        parse_mapping({"mappings": [entry, entry]}, source="site.json")
    with pytest.raises(MappingError, match="cannot read"):
        load_mapping(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(MappingError, match="not JSON"):
        load_mapping(tmp_path / "bad.json")


# --- planned searches ---------------------------------------------------------------------


def test_condition_with_time_restriction_and_two_codes() -> None:
    steps = plan_of({"termCodes": [tc(ICD, "E11.9"), tc(ICD, "E10.9")], "timeRestriction": {"afterDate": "2020-01-01", "beforeDate": "2020-12-31"}})
    assert steps == (
        Search("Condition", (("code", f"{ICD}|E11.9,{ICD}|E10.9"), ("recorded-date", "ge2020-01-01"), ("recorded-date", "le2020-12-31")), "subject"),
    )


def test_observation_value_filters() -> None:
    [comparator] = plan_of({"termCodes": [tc(LOINC, "2339-0")], "valueFilter": {"type": "quantity-comparator", "comparator": "gt", "value": 5, "unit": {"code": "mg/dL"}}})
    assert comparator == Search("Observation", (("code", f"{LOINC}|2339-0"), ("value-quantity", f"gt5|{UCUM}|mg/dL")), "subject")
    [ranged] = plan_of({"termCodes": [tc(LOINC, "2339-0")], "valueFilter": {"type": "quantity-range", "minValue": 0.5, "maxValue": 10}})
    assert ranged.params[1:] == (("value-quantity", "ge0.5"), ("value-quantity", "le10"))  # type: ignore[union-attr]
    [concept] = plan_of({"termCodes": [tc(LOINC, "94500-6")], "valueFilter": {"type": "concept", "selectedConcepts": [tc(SNOMED, "260373001"), tc(SNOMED, "260415000")]}})
    assert concept.params[1] == ("value-concept", f"{SNOMED}|260373001,{SNOMED}|260415000")  # type: ignore[union-attr]


def test_medication_is_two_steps_and_specimen_attributes_and_consent() -> None:
    [medication] = plan_of({"termCodes": [tc(ATC, "A10BA02")], "timeRestriction": {"afterDate": "2022-01-01"}})
    assert medication == ReferencedSearch(
        Search("Medication", (("code", f"{ATC}|A10BA02"),)), "medication",
        Search("MedicationAdministration", (("effective-time", "ge2022-01-01"),), "subject"),
    )
    [specimen] = plan_of({"termCodes": [tc(SNOMED, "119364003")], "attributeFilters": [
        {"type": "concept", "attributeCode": tc("http://hl7.org/fhir/StructureDefinition", "body-site"), "selectedConcepts": [tc(SNOMED, "49852007")]}]})
    assert specimen == Search("Specimen", (("type", f"{SNOMED}|119364003"), ("bodysite", f"{SNOMED}|49852007")), "subject")
    [consent] = plan_of({"termCodes": [tc(CONSENT, "2.16.840.1.113883.3.1937.777.24.5.3.8")]})
    assert consent == Search("Consent", (("mii-provision-provision-code", f"{CONSENT}|2.16.840.1.113883.3.1937.777.24.5.3.8"),), "patient")


def test_patient_gender_and_age() -> None:
    [gender] = plan_of({"termCodes": [tc(LOINC, "76689-9")], "valueFilter": {"type": "concept", "selectedConcepts": [tc("http://hl7.org/fhir/administrative-gender", "female")]}})
    assert gender == Search("Patient", (("gender", "female"),))
    [age] = plan_of({"termCodes": [tc(LOINC, "30525-0")], "valueFilter": {"type": "quantity-range", "minValue": 18, "maxValue": 65, "unit": {"code": "a"}}})
    assert age == Search("Patient", (("birthdate", "gt1958-03-15"), ("birthdate", "le2006-03-15")))
    assert len(plan_of({"termCodes": [tc(LOINC, "30525-0")], "valueFilter": {"type": "quantity-comparator", "comparator": "ne", "value": 40, "unit": {"code": "a"}}})) == 2
    assert plan_of({"termCodes": [tc(LOINC, "30525-0")], "valueFilter": {"type": "quantity-comparator", "comparator": "eq", "value": 40.5, "unit": {"code": "a"}}}) == ()


def test_codes_of_different_modules_in_one_criterion_are_a_union() -> None:
    steps = plan_of({"termCodes": [tc(ICD, "I10"), tc(OPS, "5-470"), tc(ICD, "I11")]})
    assert [s.resource_type for s in steps] == ["Condition", "Procedure"]  # type: ignore[union-attr]
    assert steps[0].params == (("code", f"{ICD}|I10,{ICD}|I11"),)  # type: ignore[union-attr]


def test_values_with_commas_and_bars_are_escaped() -> None:
    [step] = plan_of({"termCodes": [tc(ICD, "A,1|2")]})
    assert step.params == (("code", f"{ICD}|A\\,1\\|2"),)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("criterion", "fragment"),
    [
        ({"termCodes": [tc(ICD, "I10"), tc("http://example.org", "x")]}, "inclusionCriteria[0][0].termCodes[1]: no mapping for term code http://example.org|x"),
        ({"termCodes": [tc(ICD, "I10")], "valueFilter": {"type": "quantity-comparator", "comparator": "gt", "value": 1}},
         "inclusionCriteria[0][0].valueFilter: Diagnose (ICD-10-GM) (http://fhir.de/CodeSystem/bfarm/icd-10-gm|*) maps to Condition, which takes no quantity value filter"),
        ({"termCodes": [tc(LOINC, "76689-9")], "timeRestriction": {"afterDate": "2020-01-01"}}, "inclusionCriteria[0][0].timeRestriction: Geschlecht (LOINC administrative gender) (http://loinc.org|76689-9) (Patient) has no time to restrict"),
        ({"termCodes": [tc(ICD, "I10")], "attributeFilters": [{"type": "concept", "attributeCode": tc(SNOMED, "1"), "selectedConcepts": [tc(SNOMED, "2")]}]},
         "inclusionCriteria[0][0].attributeFilters[0]: "),
        ({"termCodes": [tc(SNOMED, "119364003")], "attributeFilters": [
            {"type": "quantity-comparator", "attributeCode": tc("http://hl7.org/fhir/StructureDefinition", "body-site"), "comparator": "gt", "value": 1}]},
         "is searched as token, not with a quantity filter"),
        ({"termCodes": [tc(LOINC, "30525-0")], "valueFilter": {"type": "quantity-comparator", "comparator": "gt", "value": 1}}, "needs a unit"),
        ({"termCodes": [tc(LOINC, "30525-0")], "valueFilter": {"type": "quantity-comparator", "comparator": "gt", "value": 1, "unit": {"code": "h"}}}, "unknown age unit 'h'"),
    ],
)
def test_criteria_the_mapping_cannot_express(criterion: dict[str, Any], fragment: str) -> None:
    with pytest.raises(MappingError) as caught:
        plan_of(criterion)
    assert fragment in str(caught.value)


def test_query_plan_shares_steps_and_knows_when_it_needs_every_patient() -> None:
    diabetes = {"termCodes": [tc(ICD, "E11.9")]}
    query = parse_structured_query({"inclusionCriteria": [[diabetes]], "exclusionCriteria": [[diabetes, {"termCodes": [tc(OPS, "5-470")]}]]})
    plan = plan_query(query, default_mapping(), TODAY)
    assert len(plan.steps()) == 2 and not plan.needs_all_patients
    only_exclusion = plan_query(parse_structured_query({"exclusionCriteria": [[diabetes]]}), default_mapping(), TODAY)
    assert only_exclusion.needs_all_patients and only_exclusion.steps()[0] == ALL_PATIENTS
    negated = plan_query(parse_structured_query({"inclusionCriteria": [[{**diabetes, "negated": True}]]}), default_mapping(), TODAY)
    assert negated.needs_all_patients


# --- age ---------------------------------------------------------------------------------


def _age(birth: date, today: date) -> int:
    """Completed years, counted the way a person counts them (independent of the module)."""
    return today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))


def _satisfies(birth: date, alternatives: Any) -> bool:
    def ok(param: tuple[str, str]) -> bool:
        prefix, bound = param[1][:2], date.fromisoformat(param[1][2:])
        return birth <= bound if prefix == "le" else birth > bound

    return any(all(ok(p) for p in alternative) for alternative in alternatives)


@pytest.mark.parametrize("today", [date(2024, 3, 15), date(2024, 2, 29), date(2023, 2, 28), date(2023, 3, 1), date(2024, 12, 31)])
def test_age_bounds_agree_with_counted_ages(today: date) -> None:
    births = [date(1990, 1, 1) + timedelta(days=d) for d in range(0, 35 * 366, 11)]
    births += [date(2000, 2, 29), date(2004, 2, 29), date(1999, 3, 1), date(1999, 2, 28), today]
    births = [b for b in births if b <= today]  # the living, not the unborn
    values = [Decimal(v) for v in ("0", "17", "18", "18.5", "25", "33", "-1")]
    for value, comparator in itertools.product(values, Comparator):
        alternatives = age_bounds(QuantityComparatorFilter(comparator, value, Unit("a")), today)
        for birth in births:
            age = _age(birth, today)
            expected = {
                Comparator.GT: age > value, Comparator.GE: age >= value, Comparator.LT: age < value,
                Comparator.LE: age <= value, Comparator.EQ: age == value, Comparator.NE: age != value,
            }[comparator]  # fmt: skip
            assert _satisfies(birth, alternatives) == expected, (birth, comparator, value)
    for low, high in [(18, 65), (Decimal("17.5"), Decimal("18.5")), (30, 30), (40, 20)]:
        alternatives = age_bounds(QuantityRangeFilter(Decimal(low), Decimal(high), Unit("a")), today)
        for birth in births:
            assert _satisfies(birth, alternatives) == (low <= _age(birth, today) <= high), (birth, low, high)


def test_shift_clamps_month_ends_and_the_distant_past() -> None:
    assert shift(date(2024, 2, 29), 1, "a") == date(2023, 2, 28)
    assert shift(date(2024, 3, 31), 1, "mo") == date(2024, 2, 29)
    assert shift(date(2024, 3, 31), 2, "wk") == date(2024, 3, 17)
    assert shift(date(2024, 3, 31), 5000, "a") == date.min
    with pytest.raises(ValueError, match="unknown age unit"):
        shift(TODAY, 1, "h")
