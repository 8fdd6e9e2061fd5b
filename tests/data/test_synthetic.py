"""The synthetic KDS data: deterministic, internally consistent, plausibly distributed, valid FHIR."""

from __future__ import annotations

import datetime as dt
import statistics
from collections import Counter
from typing import Any

import pytest

from dsf_core.data import DataError, Dataset, DatasetSpec, generate, patient_groups
from dsf_core.data import vocabulary as v
from dsf_core.fhir.validation import validate_structure

DATETIME_PATHS = (
    ("Encounter", ("period", "start")),
    ("Encounter", ("period", "end")),
    ("Condition", ("onsetDateTime",)),
    ("Condition", ("recordedDate",)),
    ("Observation", ("effectiveDateTime",)),
    ("Procedure", ("performedDateTime",)),
    ("MedicationAdministration", ("effectiveDateTime",)),
    ("Specimen", ("collection", "collectedDateTime")),
    ("Consent", ("dateTime",)),
)


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return generate(DatasetSpec(patients=1500, seed=11))


def at(resource: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = resource
    for key in path:
        value = value[key]
    return value


def code_of(resource: dict[str, Any], element: str = "code") -> str:
    code: str = resource[element]["coding"][0]["code"]
    return code


def test_same_spec_same_data_and_a_larger_dataset_starts_with_the_smaller() -> None:
    assert generate(DatasetSpec(patients=40, seed=3)) == generate(DatasetSpec(patients=40, seed=3))
    assert generate(DatasetSpec(patients=40, seed=3)).groups == generate(DatasetSpec(patients=60, seed=3)).groups[:40]
    assert generate(DatasetSpec(patients=40, seed=3)).patients != generate(DatasetSpec(patients=40, seed=4)).patients


def test_dates_follow_the_reference_date_not_the_clock() -> None:
    early = generate(DatasetSpec(patients=30, seed=1, reference_date=dt.date(2010, 6, 1)))
    for resource_type, path in DATETIME_PATHS:
        for resource in early.of_type(resource_type):
            assert at(resource, path) <= "2010-06-01T00:00:00Z", (resource_type, path)
    assert max(p["birthDate"] for p in early.patients) < "2010-06-01"


def test_every_event_lies_between_birth_and_the_reference_date(dataset: Dataset) -> None:
    births = {f"Patient/{p['id']}": p["birthDate"] for p in dataset.patients}
    for resource_type, path in DATETIME_PATHS:
        for resource in dataset.of_type(resource_type):
            subject = (resource.get("subject") or resource["patient"])["reference"]
            assert births[subject] <= at(resource, path)[:10] and at(resource, path) <= "2026-01-01T00:00:00Z"
    for encounter in dataset.of_type("Encounter"):
        assert encounter["period"]["start"] <= encounter["period"]["end"]


def test_ids_are_unique_and_every_reference_resolves_in_the_same_or_an_earlier_group(dataset: Dataset) -> None:
    seen: set[str] = set()
    for group in dataset.groups:
        group_refs = {f"{r['resourceType']}/{r['id']}" for r in group.resources}
        assert not group_refs & seen, "an id repeats"
        seen |= group_refs
        for resource in group.resources:
            for key in ("subject", "patient", "encounter", "context", "medicationReference"):
                if key in resource:
                    assert resource[key]["reference"] in seen, (resource["id"], key)
        assert group.patient["resourceType"] == "Patient"
        assert all(r.get("subject", r.get("patient", {})).get("reference", f"Patient/{group.patient['id']}")
                   == f"Patient/{group.patient['id']}" for r in group.resources[1:])
    medications = dataset.of_type("Medication")
    assert len(medications) == len({code_of(m) for m in medications}) == len(v.MEDICATIONS)


def test_id_prefix_separates_datasets() -> None:
    a = generate(DatasetSpec(patients=5, seed=1, id_prefix="dic-a"))
    b = generate(DatasetSpec(patients=5, seed=1, id_prefix="dic-b"))
    assert a.patients[0]["id"] == "dic-a-1" and DatasetSpec(patients=1, seed=9).prefix == "s9"
    assert not {r["id"] for r in a.resources()} & {r["id"] for r in b.resources()}
    assert [p["birthDate"] for p in a.patients] == [p["birthDate"] for p in b.patients]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"patients": 0}, "patients must be a whole number of at least 1"),
        ({"patients": 2, "id_prefix": "a/b"}, "id prefix 'a/b'"),
        ({"patients": 2, "id_prefix": "x" * 25}, "1 to 24 letters"),
        ({"patients": 2, "site": "no site"}, "site 'no site'"),
        ({"patients": 2, "reference_date": dt.date(1900, 1, 1)}, "too early"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(DataError, match=message):
        DatasetSpec(**kwargs)


def test_distributions_are_plausible(dataset: Dataset) -> None:
    n = len(dataset.patients)
    genders = Counter(p["gender"] for p in dataset.patients)
    assert 0.44 < genders["male"] / n < 0.54 and 0.44 < genders["female"] / n < 0.54
    assert 0 < genders["other"] + genders["unknown"] < 0.05 * n
    ages = [2026 - int(p["birthDate"][:4]) for p in dataset.patients]
    assert min(ages) >= 0 and max(ages) <= 101 and 45 < statistics.mean(ages) < 60
    assert 0.65 < len(dataset.of_type("Consent")) / n < 0.75
    encounters = Counter(e["subject"]["reference"] for e in dataset.of_type("Encounter"))
    assert set(encounters.values()) == {1, 2, 3, 4} and len(encounters) == n
    assert {e["class"]["code"] for e in dataset.of_type("Encounter")} == {"IMP", "AMB"}

    conditions = Counter(c["subject"]["reference"] for c in dataset.of_type("Condition"))
    old = [conditions[f"Patient/{p['id']}"] for p, age in zip(dataset.patients, ages) if age >= 60]
    young = [conditions[f"Patient/{p['id']}"] for p, age in zip(dataset.patients, ages) if age < 40]
    assert statistics.mean(old) > 2 * statistics.mean(young)
    codes = Counter(code_of(c) for c in dataset.of_type("Condition"))
    assert codes.most_common(1)[0][0] == "I10" and set(codes) <= {d.code for d in v.DIAGNOSES}
    female = {f"Patient/{p['id']}" for p in dataset.patients if p["gender"] == "female"}
    assert all(c["subject"]["reference"] in female for c in dataset.of_type("Condition") if code_of(c) == "C50.9")


def values(dataset: Dataset, loinc: str, subjects: set[str] | None = None) -> list[float]:
    return [
        o["valueQuantity"]["value"]
        for o in dataset.of_type("Observation")
        if code_of(o) == loinc and (subjects is None or o["subject"]["reference"] in subjects)
    ]


def test_lab_values_follow_their_distributions(dataset: Dataset) -> None:
    for m in v.LAB_VALUES:
        drawn = values(dataset, m.code)
        assert len(drawn) > 100, m.code
        assert all(m.low <= x <= m.high for x in drawn)
        assert abs(statistics.median(drawn) - m.mean) < 2 * m.sd, m.code
    diabetics = {c["subject"]["reference"] for c in dataset.of_type("Condition") if code_of(c) == "E11.9"}
    others = {f"Patient/{p['id']}" for p in dataset.patients} - diabetics
    assert statistics.mean(values(dataset, "4548-4", diabetics)) > statistics.mean(values(dataset, "4548-4", others)) + 1
    children = {f"Patient/{p['id']}" for p in dataset.patients if p["birthDate"] > "2014-01-01"}
    assert statistics.mean(values(dataset, "8302-2", children)) < 150 < statistics.mean(values(dataset, "8302-2"))


def test_codes_units_and_systems_have_the_kds_shapes(dataset: Dataset) -> None:
    for resource in dataset.resources():
        profiles = resource.get("meta", {}).get("profile", [])
        if resource["resourceType"] == "Observation" and code_of(resource) in v.QUANTITIES:
            quantity = resource["valueQuantity"]
            measurement = v.QUANTITIES[code_of(resource)]
            assert quantity["system"] == v.UCUM and quantity["code"] == quantity["unit"] == measurement.unit
            assert profiles == [v.VITAL_SIGN_PROFILES.get(measurement.code, v.PROFILES["Observation"])]
        elif resource["resourceType"] == "Observation":
            assert code_of(resource) == "72166-2"
            assert resource["valueCodeableConcept"]["coding"][0]["system"] == v.SNOMED
        else:
            assert profiles == [v.PROFILES[resource["resourceType"]]]
    systems = {
        "Condition": (v.ICD10GM, "2024"),
        "Procedure": (v.OPS, "2024"),
        "Medication": (v.ATC, "2024"),
    }
    for resource_type, (system, version) in systems.items():
        for resource in dataset.of_type(resource_type):
            coding = resource["code"]["coding"][0]
            assert (coding["system"], coding["version"]) == (system, version)
    assert {code_of(s, "type") for s in dataset.of_type("Specimen")} == {s.code for s in v.SPECIMENS}
    smoking = Counter(code_of(o, "valueCodeableConcept") for o in dataset.of_type("Observation") if code_of(o) == "72166-2")
    assert set(smoking) == {c.code for c in v.SMOKING_VALUES}


def test_consents_are_mii_broad_consents(dataset: Dataset) -> None:
    refusals = 0
    for consent in dataset.of_type("Consent"):
        assert consent["status"] == "active" and consent["provision"]["type"] == "deny"
        nested = {p["code"][0]["coding"][0]["code"]: p for p in consent["provision"]["provision"]}
        assert list(nested) == [code for code, _ in v.CONSENT_PROVISIONS]
        assert all(p["code"][0]["coding"][0]["system"] == v.CONSENT_POLICY for p in nested.values())
        assert nested["2.16.840.1.113883.3.1937.777.24.5.3.8"]["type"] == "permit"
        refusals += nested[v.REFUSABLE_PROVISION]["type"] == "deny"
        assert nested["2.16.840.1.113883.3.1937.777.24.5.3.8"]["period"]["start"] == consent["dateTime"]
    assert 0.05 < refusals / len(dataset.of_type("Consent")) < 0.25


def test_every_resource_passes_the_servers_structural_validation() -> None:
    dataset = generate(DatasetSpec(patients=150, seed=5))
    assert {r["resourceType"] for r in dataset.resources()} == {*v.PROFILES}
    for resource in dataset.resources():
        validate_structure(resource)


def test_patient_groups_is_lazy() -> None:
    groups = patient_groups(DatasetSpec(patients=10**9, seed=1))
    assert next(groups).index == 1 and next(groups).index == 2
