"""Data-store mode search: the clinical parameters a feasibility evaluator and the KDS report use.

One small clinical data set (three patients and their conditions, observations, procedures,
encounters, medications, specimens and consents) is stored through a transaction; each test
checks one parameter type or family against it, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import pytest_asyncio
from sqlalchemy import delete, inspect, select, text

from dsf_core.fhir import search
from dsf_core.fhir.storage import migrations
from dsf_core.fhir.storage.schema import search_index, search_params_state
from dsf_core.fhir.storage.store import Store as StorageStore
from dsf_core.testing.mailbox import MailboxHarness

JSON = {"Accept": "application/fhir+json"}
ICD = "http://fhir.de/CodeSystem/bfarm/icd-10-gm"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
ATC = "http://fhir.de/CodeSystem/bfarm/atc"
MII_CONSENT = "urn:oid:2.16.840.1.113883.3.1937.777.24.5.3"
DIAGNOSE = "https://www.medizininformatik-initiative.de/fhir/core/modul-diagnose/StructureDefinition/Diagnose"


def urn(key: str) -> str:
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, key)}"


def ref(key: str) -> dict[str, str]:
    return {"reference": urn(key)}


def coding(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


def quantity(value: Any, code: str | None = "g/dL", *, system: str | None = UCUM, unit: str | None = None, **extra: Any) -> dict[str, Any]:
    q: dict[str, Any] = {"value": value, **extra}
    if unit is not None or code is not None:
        q["unit"] = unit or code
    if system is not None:
        q["system"] = system
    if code is not None:
        q["code"] = code
    return q


def observation(patient: str, value: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [coding("http://terminology.hl7.org/CodeSystem/observation-category", "laboratory")],
        "code": coding(LOINC, "718-7"),
        "subject": ref(patient),
        "effectiveDateTime": "2024-01-10T08:00:00+01:00",
        "valueQuantity": value,
        **extra,
    }


def consent(patient: str, status: str, date: str, permits: list[str], **provision: Any) -> dict[str, Any]:
    """An MII broad consent permitting the policies ``2.16.840.1.113883.3.1937.777.24.5.3.<permit>``."""
    return {
        "resourceType": "Consent",
        "status": status,
        "scope": coding("http://terminology.hl7.org/CodeSystem/consentscope", "research"),
        "category": [coding("http://loinc.org", "57016-8")],
        "patient": ref(patient),
        "dateTime": date,
        "policy": [{"uri": "urn:oid:2.16.840.1.113883.3.1937.777.24.2.1790"}],
        "provision": {
            "type": "deny",
            **provision,
            "provision": [{"type": "permit", "code": [coding(MII_CONSENT, f"{MII_CONSENT[8:]}.{p}")]} for p in permits],
        },
    }


def data_set() -> dict[str, dict[str, Any]]:
    return {
        "p1": {
            "resourceType": "Patient",
            "identifier": [{"system": "urn:pid", "value": "1"}],
            "gender": "female",
            "birthDate": "1980-05-01",
            "name": [{"family": "Müller", "given": ["Anna", "Maria"]}],
        },
        "p2": {"resourceType": "Patient", "gender": "male", "birthDate": "1990", "name": [{"family": "Schmidt", "given": ["Jan"]}]},
        "p3": {"resourceType": "Patient", "gender": "female", "birthDate": "2001-02-03"},
        "g1": {"resourceType": "Group", "type": "person", "actual": True, "identifier": [{"system": "urn:group", "value": "g1"}]},
        "e1": {
            "resourceType": "Encounter",
            "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
            "type": [coding("http://fhir.de/CodeSystem/Kontaktebene", "einrichtungskontakt")],
            "subject": ref("p1"),
            "period": {"start": "2024-03-01", "end": "2024-03-05"},
        },
        "e2": {
            "resourceType": "Encounter",
            "status": "in-progress",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": ref("p2"),
            "period": {"start": "2023-12-30"},
        },
        "c1": {
            "resourceType": "Condition",
            "meta": {"profile": [f"{DIAGNOSE}|2024.0.0"]},
            "code": coding(ICD, "E11.9"),
            "subject": ref("p1"),
            "encounter": ref("e1"),
            "recordedDate": "2024-03-01",
            "onsetDateTime": "2020-01-15",
            "clinicalStatus": coding("http://terminology.hl7.org/CodeSystem/condition-clinical", "active"),
            "verificationStatus": coding("http://terminology.hl7.org/CodeSystem/condition-ver-status", "confirmed"),
        },
        "c2": {
            "resourceType": "Condition",
            "meta": {"profile": [DIAGNOSE]},
            "code": coding(ICD, "I10"),
            "subject": ref("p2"),
            "recordedDate": "2023-06-01",
            "onsetPeriod": {"start": "2019-01-01", "end": "2019-12-31"},
            "clinicalStatus": coding("http://terminology.hl7.org/CodeSystem/condition-clinical", "resolved"),
        },
        "c3": {"resourceType": "Condition", "code": coding(SNOMED, "44054006"), "subject": ref("g1"), "recordedDate": "2024-12-31"},
        "o1": observation("p1", quantity(5.4), encounter=ref("e1")),
        "o2": observation("p2", quantity(5.35)),
        "o3": observation("p3", quantity(5.45)),
        "o4": observation("p1", quantity(5.4, "mmol/L")),
        "o5": observation("p2", quantity(4.5e9, "/L"), code=coding(LOINC, "26464-8")),
        "o6": observation("p3", quantity(1.2e-5, "mol/L")),
        "o7": observation("p1", quantity(5.4, None, system=None, unit="g/dL")),
        "o8": observation("p2", quantity(3, comparator="<")),
        "o10": observation("p3", quantity(-2.5, "Cel"), code=coding(LOINC, "8310-5"), effectiveDateTime="2023-05-05"),
        "o9": {
            "resourceType": "Observation",
            "status": "preliminary",
            "code": coding(SNOMED, "10828004"),
            "subject": ref("g1"),
            "effectivePeriod": {"start": "2022-01-01", "end": "2022-02-01"},
            "valueCodeableConcept": coding(SNOMED, "10828004"),
        },
        "pr1": {
            "resourceType": "Procedure",
            "status": "completed",
            "code": coding("http://fhir.de/CodeSystem/bfarm/ops", "5-470"),
            "subject": ref("p1"),
            "performedPeriod": {"start": "2024-03-02T10:00:00Z", "end": "2024-03-02T11:00:00Z"},
        },
        "pr2": {
            "resourceType": "Procedure",
            "status": "in-progress",
            "code": coding(SNOMED, "80146002"),
            "subject": ref("p2"),
            "performedDateTime": "2021-07-07",
        },
        "m1": {"resourceType": "Medication", "code": coding(ATC, "A10BA02"), "ingredient": [{"itemCodeableConcept": coding("http://fdasis.nlm.nih.gov", "9100L32L2N")}]},
        "ma1": {
            "resourceType": "MedicationAdministration",
            "status": "completed",
            "medicationReference": ref("m1"),
            "subject": ref("p1"),
            "effectiveDateTime": "2024-03-03T09:00:00Z",
        },
        "ma2": {
            "resourceType": "MedicationAdministration",
            "status": "in-progress",
            "medicationCodeableConcept": coding(ATC, "C09AA05"),
            "subject": ref("p2"),
            "effectivePeriod": {"start": "2022-01-01", "end": "2022-01-31"},
        },
        "ms1": {
            "resourceType": "MedicationStatement",
            "status": "active",
            "medicationReference": ref("m1"),
            "subject": ref("p3"),
            "effectivePeriod": {"start": "2021-01-01"},
        },
        "s1": {
            "resourceType": "Specimen",
            "type": coding(SNOMED, "119297000"),
            "subject": ref("p1"),
            "collection": {"collectedDateTime": "2024-03-02", "bodySite": coding(SNOMED, "368209003")},
        },
        "s2": {
            "resourceType": "Specimen",
            "type": coding(SNOMED, "119361006"),
            "subject": ref("g1"),
            "collection": {"collectedPeriod": {"start": "2020-05-01", "end": "2020-05-02"}},
        },
        "cs1": consent("p1", "active", "2023-11-11", ["8", "6"], period={"start": "2023-11-11", "end": "2028-11-11"}),
        "cs2": consent("p2", "inactive", "2022-01-01", ["6"]),
    }


class DataStore:
    """The running data store, with the server ids of the data set's keys."""

    def __init__(self, mb: MailboxHarness, ids: dict[str, str]) -> None:
        self.mb = mb
        self.ids = ids

    async def get(self, query: str) -> tuple[int, Any]:
        async with self.mb.client(None) as http:
            response = await http.get(self.mb.url(query), headers=JSON)
            return response.status, await response.json()

    async def keys(self, query: str) -> set[str]:
        """The data-set keys of a search's matches (every page)."""
        by_id = {v: k for k, v in self.ids.items()}
        found: set[str] = set()
        status, bundle = await self.get(query + ("&" if "?" in query else "?") + "_count=100")
        assert status == 200, bundle
        assert bundle["total"] <= 100
        for entry in bundle.get("entry", []):
            if entry["search"]["mode"] == "match":
                found.add(by_id[f"{entry['resource']['resourceType']}/{entry['resource']['id']}"])
        assert len(found) == bundle["total"]
        return found

    async def total(self, query: str) -> int:
        status, bundle = await self.get(query + ("&" if "?" in query else "?") + "_summary=count")
        assert status == 200, bundle
        assert "entry" not in bundle
        return int(bundle["total"])

    async def error(self, query: str) -> dict[str, Any]:
        status, outcome = await self.get(query)
        assert status == 400, outcome
        issue: dict[str, Any] = outcome["issue"][0]
        return issue


@pytest_asyncio.fixture(loop_scope="session")
async def store(tmp_path: Path, database_url: str) -> AsyncIterator[DataStore]:
    async with MailboxHarness(tmp_path, database_url=database_url, mode="store") as mb:
        resources = data_set()
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {"fullUrl": urn(key), "resource": resource, "request": {"method": "POST", "url": resource["resourceType"]}}
                for key, resource in resources.items()
            ],
        }
        async with mb.client(None) as http:
            response = await http.post(mb.url(), json=bundle, headers=JSON)
            answer = await response.json()
            assert response.status == 200, answer
        ids = {}
        for key, entry in zip(resources, answer["entry"], strict=True):
            type_, id_ = entry["response"]["location"].split("/_history/")[0].split("/")[-2:]
            ids[key] = f"{type_}/{id_}"
        yield DataStore(mb, ids)


# --- quantity -------------------------------------------------------------------------


async def test_quantity_eq_uses_the_implicit_precision(store: DataStore) -> None:
    assert await store.keys("Observation?value-quantity=5.4") == {"o1", "o2", "o4", "o7"}  # [5.35, 5.45)
    assert await store.keys("Observation?value-quantity=eq5.40") == {"o1", "o4", "o7"}  # [5.395, 5.405)
    assert await store.keys("Observation?value-quantity=5.45") == {"o3"}
    assert await store.keys("Observation?value-quantity=4.5e9") == {"o5"}
    assert await store.keys("Observation?value-quantity=4500000000") == {"o5"}
    assert await store.keys("Observation?value-quantity=0.000012") == {"o6"}
    assert await store.keys("Observation?value-quantity=1.2e-5") == {"o6"}
    assert await store.keys("Observation?value-quantity=-2.5") == {"o10"}
    assert await store.keys("Observation?value-quantity=3") == set()  # "<3" is not 3


async def test_quantity_units(store: DataStore) -> None:
    assert await store.keys(f"Observation?value-quantity=5.4|{UCUM}|g/dL") == {"o1", "o2"}
    assert await store.keys("Observation?value-quantity=5.4||g/dL") == {"o1", "o2", "o7"}  # code or unit
    assert await store.keys(f"Observation?value-quantity=5.4|{UCUM}|mmol/L") == {"o4"}
    assert await store.keys("Observation?value-quantity=5.4|http://other.org|g/dL") == set()
    assert await store.keys(f"Observation?value-quantity=5.4|{UCUM}|") == {"o1", "o2", "o4"}  # any unit of the system


async def test_quantity_prefixes(store: DataStore) -> None:
    assert await store.keys("Observation?value-quantity=gt5.4") == {"o3", "o5"}
    assert await store.keys("Observation?value-quantity=ge5.4") == {"o1", "o3", "o4", "o5", "o7"}
    assert await store.keys("Observation?value-quantity=lt5.4") == {"o2", "o6", "o8", "o10"}
    assert await store.keys("Observation?value-quantity=le5.4") == {"o1", "o2", "o4", "o6", "o7", "o8", "o10"}
    assert await store.keys("Observation?value-quantity=ne5.4") == {"o3", "o5", "o6", "o8", "o10"}
    assert await store.keys("Observation?value-quantity=sa5.4") == {"o3", "o5"}
    assert await store.keys("Observation?value-quantity=eb5.4") == {"o2", "o6", "o8", "o10"}
    assert await store.keys("Observation?value-quantity=ap5.4") == {"o1", "o2", "o3", "o4", "o7"}  # ±10 %
    assert await store.keys("Observation?value-quantity=lt0") == {"o8", "o10"}  # "<3" reaches below 0
    assert await store.keys("Observation?value-quantity=ge3") == {"o1", "o2", "o3", "o4", "o5", "o7"}
    assert await store.keys("Observation?value-quantity=gt1e9||/L") == {"o5"}
    assert await store.keys("Observation?value-quantity=lt0.00002||mol/L") == {"o6"}


async def test_quantity_or_and(store: DataStore) -> None:
    assert await store.keys("Observation?value-quantity=5.45,4.5e9") == {"o3", "o5"}
    assert await store.keys("Observation?value-quantity=gt5&value-quantity=lt5.42") == {"o1", "o2", "o4", "o7"}
    assert await store.keys(f"Observation?value-quantity=gt5&value-quantity=lt5.42&code={LOINC}|718-7&value-quantity=5.4|{UCUM}|g/dL") == {"o1", "o2"}
    assert await store.total(f"Observation?code={LOINC}|718-7&value-quantity=ge5.4|{UCUM}|g/dL") == 2


async def test_quantity_sort(store: DataStore) -> None:
    _, bundle = await store.get(f"Observation?code={LOINC}|718-7&value-quantity=5.4,5.45,5.35&_sort=-value-quantity&_count=10")
    values = [e["resource"]["valueQuantity"]["value"] for e in bundle["entry"]]
    assert values[0] == 5.45 and values[-1] == 5.35


async def test_bad_values_are_400_naming_the_parameter(store: DataStore) -> None:
    for query, name in [
        ("Observation?value-quantity=abc", "value-quantity"),
        ("Observation?value-quantity=5|g", "value-quantity"),
        ("Observation?value-quantity=xx5", "value-quantity"),
        ("Observation?value-quantity=5.4.1||mg", "value-quantity"),
        ("Condition?onset-date=ap2020", "onset-date"),
        ("Condition?recorded-date=2024-13", "recorded-date"),
        ("Observation?patient=a/b/c", "patient"),
    ]:
        issue = await store.error(query)
        assert issue["code"] == "invalid" and name in issue["diagnostics"] and issue["expression"] == [name], (query, issue)


# --- parameters per type --------------------------------------------------------------


async def test_condition_parameters(store: DataStore) -> None:
    p1 = store.ids["p1"]
    assert await store.keys(f"Condition?code={ICD}|E11.9") == {"c1"}
    assert await store.keys(f"Condition?code={ICD}|") == {"c1", "c2"}
    assert await store.keys("Condition?code=E11.9,44054006") == {"c1", "c3"}
    assert await store.keys(f"Condition?subject={p1}") == {"c1"}
    assert await store.keys(f"Condition?patient={p1}") == {"c1"}
    assert await store.keys(f"Condition?patient={p1.split('/')[1]}") == {"c1"}
    assert await store.keys(f"Condition?subject={store.ids['g1']}") == {"c3"}
    assert await store.keys(f"Condition?patient={store.ids['g1']}") == set()  # a Group is not a patient
    assert await store.keys("Condition?recorded-date=eq2024") == {"c1", "c3"}
    assert await store.keys("Condition?recorded-date=lt2024-01-01") == {"c2"}
    assert await store.keys("Condition?onset-date=2020") == {"c1"}
    assert await store.keys("Condition?onset-date=lt2020-01-01") == {"c2"}  # onsetPeriod
    assert await store.keys("Condition?onset-date=eq2019") == {"c2"}
    assert await store.keys("Condition?clinical-status=active") == {"c1"}
    assert await store.keys("Condition?clinical-status:not=active") == {"c2", "c3"}
    assert await store.keys("Condition?verification-status=http://terminology.hl7.org/CodeSystem/condition-ver-status|confirmed") == {"c1"}
    assert await store.keys(f"Condition?encounter={store.ids['e1']}") == {"c1"}


async def test_observation_parameters(store: DataStore) -> None:
    assert await store.keys(f"Observation?code={LOINC}|26464-8") == {"o5"}
    assert await store.keys(f"Observation?patient={store.ids['p3']}") == {"o3", "o6", "o10"}
    assert await store.keys(f"Observation?subject={store.ids['g1']}") == {"o9"}
    assert await store.keys("Observation?date=2024-01-10") == {"o1", "o2", "o3", "o4", "o5", "o6", "o7", "o8"}
    assert await store.keys("Observation?date=eq2022-01") == set()  # the period runs into February
    assert await store.keys("Observation?date=ge2022-01-15&date=lt2023") == {"o9"}
    assert await store.keys("Observation?status=preliminary") == {"o9"}
    assert await store.keys("Observation?category=laboratory&code=8310-5") == {"o10"}
    assert await store.keys(f"Observation?value-concept={SNOMED}|10828004") == {"o9"}
    assert await store.keys(f"Observation?encounter={store.ids['e1']}") == {"o1"}


async def test_procedure_encounter_parameters(store: DataStore) -> None:
    assert await store.keys("Procedure?code=http://fhir.de/CodeSystem/bfarm/ops|") == {"pr1"}
    assert await store.keys(f"Procedure?patient={store.ids['p2']}") == {"pr2"}
    assert await store.keys(f"Procedure?subject={store.ids['p1']}") == {"pr1"}
    assert await store.keys("Procedure?date=2024-03-02") == {"pr1"}
    assert await store.keys("Procedure?date=lt2022&status=in-progress") == {"pr2"}
    assert await store.keys(f"Encounter?patient={store.ids['p1']}") == {"e1"}
    assert await store.keys(f"Encounter?subject={store.ids['p2']}") == {"e2"}
    assert await store.keys("Encounter?date=eq2024") == {"e1"}  # e2 began in 2023 and has not ended
    assert await store.keys("Encounter?date=ge2025") == {"e2"}
    assert await store.keys("Encounter?status=finished") == {"e1"}
    assert await store.keys("Encounter?class=http://terminology.hl7.org/CodeSystem/v3-ActCode|AMB") == {"e2"}
    assert await store.keys("Encounter?type=http://fhir.de/CodeSystem/Kontaktebene|einrichtungskontakt") == {"e1"}


async def test_medication_parameters(store: DataStore) -> None:
    m1 = store.ids["m1"]
    assert await store.keys(f"Medication?code={ATC}|A10BA02") == {"m1"}
    assert await store.keys("Medication?ingredient-code=9100L32L2N") == {"m1"}
    assert await store.keys(f"MedicationAdministration?medication={m1}") == {"ma1"}
    assert await store.keys(f"MedicationAdministration?code={ATC}|C09AA05") == {"ma2"}
    assert await store.keys(f"MedicationAdministration?patient={store.ids['p1']}") == {"ma1"}
    assert await store.keys(f"MedicationAdministration?subject={store.ids['p2']}") == {"ma2"}
    assert await store.keys("MedicationAdministration?effective-time=2022-01") == {"ma2"}
    assert await store.keys("MedicationAdministration?effective-time=gt2024-03-03T08:00:00Z&status=completed") == {"ma1"}
    assert await store.keys(f"MedicationStatement?medication={m1}&patient={store.ids['p3']}") == {"ms1"}
    assert await store.keys(f"MedicationStatement?subject={store.ids['p3']}&status=active") == {"ms1"}
    assert await store.keys("MedicationStatement?effective=ge2030") == {"ms1"}  # open-ended period


async def test_specimen_consent_patient_parameters(store: DataStore) -> None:
    assert await store.keys(f"Specimen?type={SNOMED}|119297000") == {"s1"}
    assert await store.keys(f"Specimen?patient={store.ids['p1']}") == {"s1"}
    assert await store.keys(f"Specimen?subject={store.ids['g1']}") == {"s2"}
    assert await store.keys("Specimen?collected=2020-05") == {"s2"}
    assert await store.keys(f"Specimen?bodysite={SNOMED}|368209003") == {"s1"}
    assert await store.keys(f"Consent?patient={store.ids['p1']}") == {"cs1"}
    assert await store.keys("Consent?status=active") == {"cs1"}
    assert await store.keys("Consent?date=lt2023") == {"cs2"}
    assert await store.keys("Consent?category=http://loinc.org|57016-8") == {"cs1", "cs2"}
    assert await store.keys(f"Consent?mii-provision-provision-code={MII_CONSENT}|2.16.840.1.113883.3.1937.777.24.5.3.8") == {"cs1"}
    assert await store.keys("Consent?mii-provision-provision-code=2.16.840.1.113883.3.1937.777.24.5.3.6") == {"cs1", "cs2"}
    assert await store.keys("Consent?period=ge2028-01-01") == {"cs1"}
    assert await store.keys("Patient?gender=female&birthdate=lt2000") == {"p1"}
    assert await store.keys("Patient?identifier=urn:pid|1") == {"p1"}
    assert await store.keys("Patient?name=muller") == {"p1"}
    assert await store.keys("Patient?given=mar") == {"p1"}
    assert await store.keys("Patient?family=schmidt,müller") == {"p1", "p2"}
    assert await store.keys("Patient?family=anna") == set()


async def test_summary_count_as_the_kds_report_asks(store: DataStore) -> None:
    assert await store.total(f"Condition?code={ICD}|") == 2
    assert await store.total(f"Condition?_profile={DIAGNOSE}") == 2  # with and without |version
    assert await store.total(f"Condition?_profile:below={DIAGNOSE}") == 2
    assert await store.total("Encounter?date=eq2024") == 1
    assert await store.total("Encounter?date=eq2023") == 0
    assert await store.total("Encounter?type=http://fhir.de/CodeSystem/Kontaktebene|einrichtungskontakt") == 1
    assert await store.total(f"Observation?code={LOINC}|") == 9


async def test_capability_statement_lists_the_parameters(store: DataStore) -> None:
    _, capabilities = await store.get("metadata")
    by_type = {r["type"]: {p["name"]: p["type"] for p in r["searchParam"]} for r in capabilities["rest"][0]["resource"]}
    assert by_type["Observation"]["value-quantity"] == "quantity"
    assert by_type["Observation"]["value-concept"] == "token"
    assert by_type["Condition"]["onset-date"] == "date"
    assert by_type["Condition"]["patient"] == "reference"
    assert by_type["Consent"]["mii-provision-provision-code"] == "token"
    assert by_type["Patient"]["family"] == "string"
    assert by_type["MedicationAdministration"]["effective-time"] == "date"


async def test_start_up_adds_missing_indexes_and_reindexes_changed_types(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store written before a parameter existed gets its rows at the next start, and only then."""
    monkeypatch.setattr(migrations, "_BATCH", 2)  # three resources: two batches
    statuses = ("active", "resolved", "active")
    store = await StorageStore.open(database_url)
    try:
        async with store.write() as tx:
            stored = [
                await tx.create(
                    {"resourceType": "Condition", "code": coding(ICD, "I10"), "subject": {"reference": "Patient/x"},
                     "clinicalStatus": coding("http://terminology.hl7.org/CodeSystem/condition-clinical", status)}
                )
                for status in statuses
            ]
            await tx.delete("Condition", stored[2].id)
        async with store.write() as tx:  # as an older version left it: no row, no fingerprint, no range index
            await tx.conn.execute(delete(search_index).where(search_index.c.param == "clinical-status"))
            await tx.conn.execute(delete(search_params_state).where(search_params_state.c.type == "Condition"))
            await tx.conn.execute(text("DROP INDEX ix_search_range"))
            # schema 3's value index over every row, replaced by one over rows with a value
            await tx.conn.execute(text("DROP INDEX ix_search_value_nn"))
            await tx.conn.execute(text("CREATE INDEX ix_search_value ON search_index (type, param, value, system, rid)"))
    finally:
        await store.close()

    async def clinical_status_rows() -> list[Any]:
        async with store.read() as tx:
            return list(
                (await tx.conn.execute(
                    select(search_index.c.rid, search_index.c.value).where(search_index.c.param == "clinical-status")
                )).all()
            )

    store = await StorageStore.open(database_url)
    try:
        assert sorted(tuple(r) for r in await clinical_status_rows()) == [(stored[0].rid, "active"), (stored[1].rid, "resolved")]
        async with store.engine.begin() as conn:
            indexes = await conn.run_sync(lambda sync: inspect(sync).get_indexes("search_index"))
            names = {index["name"] for index in indexes}
            assert {"ix_search_range", "ix_search_value_nn", "ix_search_norm_nn"} <= names
            assert "ix_search_value" not in names
        async with store.engine.begin() as conn:
            assert await migrations.reindex_changed(conn) == []  # fingerprints recorded: nothing to do
    finally:
        await store.close()


# --- _elements ------------------------------------------------------------------------


def is_subsetted(resource: dict[str, Any]) -> bool:
    return any(
        t.get("system") == "http://terminology.hl7.org/CodeSystem/v3-ObservationValue" and t.get("code") == "SUBSETTED"
        for t in resource["meta"].get("tag", [])
    )


async def test_elements_on_search_keep_named_and_mandatory_elements_across_pages(store: DataStore) -> None:
    status, page = await store.get(f"Condition?code={ICD}|&_elements=subject&_count=1")
    assert status == 200 and page["total"] == 2
    seen = []
    while True:
        for entry in page["entry"]:
            resource = entry["resource"]
            assert set(resource) == {"resourceType", "id", "meta", "subject"}, resource
            assert is_subsetted(resource) and resource["meta"]["versionId"] == "1"
            seen.append(resource["subject"]["reference"])
        nxt = [link["url"] for link in page["link"] if link["relation"] == "next"]
        if not nxt:
            break
        assert "_elements=subject" in nxt[0]
        status, page = await store.get(nxt[0].split("/fhir/", 1)[1])
    assert sorted(seen) == sorted([store.ids["p1"], store.ids["p2"]])
    # subject is mandatory on Condition: kept even when not asked for
    _, bundle = await store.get(f"Condition?code={ICD}|E11.9&_elements=code,Condition.onset")
    resource = bundle["entry"][0]["resource"]
    assert set(resource) == {"resourceType", "id", "meta", "code", "subject", "onsetDateTime"}
    # without _elements nothing is cut or tagged
    _, bundle = await store.get(f"Condition?code={ICD}|E11.9")
    assert "recordedDate" in bundle["entry"][0]["resource"] and not is_subsetted(bundle["entry"][0]["resource"])


async def test_elements_choice_types_and_exact_decimals(store: DataStore) -> None:
    body = (
        '{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/x"},'
        '"valueQuantity":{"value":5.40,"unit":"g/dL"},"note":[{"text":"kept out"}]}'
    )
    async with store.mb.client(None) as http:
        created = await http.post(store.mb.url("Observation"), data=body, headers=JSON | {"Content-Type": "application/fhir+json"})
        assert created.status == 201
        id_ = created.headers["Location"].split("/_history/")[0].rsplit("/", 1)[1]
        read = await http.get(store.mb.url(f"Observation/{id_}?_elements=value"), headers=JSON)
        text = await read.text()
    assert read.status == 200 and '"value":5.40' in text  # the decimal as written
    resource = orjson.loads(text)
    assert set(resource) == {"resourceType", "id", "meta", "status", "code", "valueQuantity"} and is_subsetted(resource)


async def test_elements_on_read_in_xml_and_bad_names(store: DataStore) -> None:
    async with store.mb.client(None) as http:
        response = await http.get(store.mb.url(f"{store.ids['c1']}?_elements=recordedDate&_format=xml"))
        xml = await response.text()
    assert response.status == 200 and "SUBSETTED" in xml and "recordedDate" in xml and "clinicalStatus" not in xml
    issue = await store.error(f"{store.ids['c1']}?_elements=9x")
    assert issue["code"] == "invalid" and issue["expression"] == ["_elements"]
    issue = await store.error("Condition?_elements=code,a-b")
    assert issue["code"] == "invalid" and "_elements" in issue["diagnostics"]


async def test_document_reference_identifier_covers_the_master_identifier(tmp_path: Path) -> None:
    project = "http://medizininformatik-initiative.de/sid/project-identifier"
    document = {"resourceType": "DocumentReference", "status": "current",
                "masterIdentifier": {"system": project, "value": "P1"},
                "identifier": [{"system": "urn:other", "value": "x"}],
                "content": [{"attachment": {"url": "Binary/1"}}]}
    async with MailboxHarness(tmp_path, mode="store") as mb, mb.client(None) as http:
        assert (await http.post(mb.url("DocumentReference"), json=document, headers=JSON)).status == 201
        for query, total in ((f"{project}|P1", 1), ("urn:other|x", 1), (f"{project}|P2", 0)):
            bundle = await (await http.get(mb.url("DocumentReference"), params={"identifier": query}, headers=JSON)).json()
            assert bundle["total"] == total, query


# --- plans and paging -----------------------------------------------------------------


async def test_walked_and_driven_searches_agree(store: DataStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """A criterion with few index rows drives a search; with DRIVE_LIMIT 0 every search walks the type."""
    queries = [
        f"Observation?code={LOINC}|718-7&value-quantity=ge5.4|{UCUM}|g/dL",
        "Observation?value-quantity=ne5.4&status=final",
        f"Condition?code={ICD}|&clinical-status:not=active",
        f"Condition?patient={store.ids['p1']},{store.ids['p2']}&recorded-date=lt2024-06",
        "Patient?family=m&gender=female",
        "Encounter?date=eq2024",
        "Consent?mii-provision-provision-code=2.16.840.1.113883.3.1937.777.24.5.3.6&_id=" + store.ids["cs2"].split("/")[1],
    ]
    driven = [await store.keys(q) for q in queries]
    assert all(driven)
    monkeypatch.setattr(search, "DRIVE_LIMIT", 0)
    search._STATEMENTS.clear()
    store.mb.store.invalidate({"Observation", "Condition", "Patient", "Encounter", "Consent"})
    assert [await store.keys(q) for q in queries] == driven


async def test_next_links_continue_behind_the_last_match(store: DataStore) -> None:
    for query in (f"Observation?code={LOINC}|&_count=3&_elements=subject", "Observation?status:not=preliminary&_count=3"):
        status, page = await store.get(query)
        seen: list[str] = []
        while True:
            seen += [e["resource"]["id"] for e in page["entry"]]
            nxt = [link["url"] for link in page["link"] if link["relation"] == "next"]
            if not nxt:
                break
            assert "__after=" in nxt[0]
            status, page = await store.get(nxt[0].split("/fhir/", 1)[1])
            assert status == 200
        assert len(seen) == len(set(seen)) == page["total"] == 9
    _, by_offset = await store.get(f"Observation?code={LOINC}|&_count=3&_page=3")
    assert [e["resource"]["id"] for e in by_offset["entry"]] == seen[6:]
    issue = await store.error("Observation?__after=yesterday")
    assert issue["code"] == "invalid" and issue["expression"] == ["__after"]


async def test_a_code_search_reads_the_value_index(store: DataStore, database_url: str) -> None:
    """The plan of a selective code count: from the (type, param, value, system) index to the rows by rid."""
    if not database_url.startswith("sqlite"):
        pytest.skip("PostgreSQL plans depend on table statistics; see the benchmark notes in docs/fhir-api.md")
    request = search.parse_search("Condition", [("code", f"{ICD}|E11.9")], strict=True)
    built = search._build(request, lambda _type: None, None)
    async with store.mb.store.read() as tx:
        driver, rows = await search._choose_driver(tx, built, request)
        assert (driver, rows) == (0, 1)
        statement = search._count_statement(built, "Condition", driver, tx.dialect)
        compiled = statement.compile(dialect=tx.conn.sync.dialect, compile_kwargs={"literal_binds": True})
        plan = [row[-1] for row in (await tx.conn.execute(text(f"EXPLAIN QUERY PLAN {compiled}"))).all()]
    assert any("USING INTEGER PRIMARY KEY" in step for step in plan), plan
    assert any("COVERING INDEX ix_search_value_nn (type=? AND param=? AND value=? AND system=?)" in step for step in plan), plan


async def test_internal_lookups_find_what_a_search_finds(store: DataStore) -> None:
    by_id = {v.split("/")[1]: k for k, v in store.ids.items()}
    async with store.mb.store.read() as tx:
        found = await search.find(tx, "Observation", [("code", f"{LOINC}|718-7"), ("patient", store.ids["p2"])])
        assert sorted(by_id[s.id] for s in found) == ["o2", "o8"]
        assert await search.find(tx, "Observation", [("code", f"{LOINC}|nothing"), ("status", "final")]) == []
        found = await search.find(tx, "Condition", [("clinical-status:not", "active")], limit=1)
        assert [by_id[s.id] for s in found] == ["c2"]


# Resources whose _elements cut is tricky: decimals at the top level and deep inside kept
# elements, choice forms, primitive extensions, earlier tags, a SUBSETTED tag already there, no
# meta at all, strings needing escapes.  On SQLite the database cuts search pages down itself;
# every entry must equal what the server's own subsetting makes of the whole stored resource.
TRICKY = [
    '{"resourceType":"Observation","status":"final","code":{"text":"a \\"quoted\\" \\u00e4 text"},'
    '"subject":{"reference":"Patient/x","extension":[{"url":"http://x/w","valueDecimal":1.50}]},'
    '"valueQuantity":{"value":5.40,"unit":"g/dL"},"_status":{"extension":[{"url":"http://x/s","valueString":"s"}]},'
    '"note":[{"text":"kept out"}]}',
    '{"resourceType":"Observation","meta":{"tag":[{"system":"http://x/t","code":"t"}],"profile":["http://x/p"]},'
    '"status":"final","code":{"text":"b"},"valueInteger":7,"effectiveDateTime":"2024-01-01"}',
    '{"resourceType":"Observation","meta":{"tag":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ObservationValue",'
    '"code":"SUBSETTED"}]},"status":"final","code":{"text":"c"},"valueString":"s","issued":"2024-01-01T00:00:00Z"}',
    '{"resourceType":"Observation","status":"amended","code":{"text":"d"},"valueBoolean":false}',
]


@pytest.mark.parametrize("names", ["value", "subject", "status,note", "effective,Observation.issued", "id"])
async def test_elements_cut_by_the_database_equal_the_servers_own_subsetting(store: DataStore, names: str) -> None:
    from dsf_core.server.elements import names_for, subset
    from dsf_core.server.formats import loads_exact

    created = []
    async with store.mb.client(None) as http:
        for body in TRICKY:
            response = await http.post(store.mb.url("Observation"), data=body,
                                       headers=JSON | {"Content-Type": "application/fhir+json"})
            assert response.status == 201, await response.text()
            created.append(response.headers["Location"].split("/_history/")[0].rsplit("/", 1)[1])
        search = await http.get(store.mb.url(f"Observation?_id={','.join(created)}&_elements={names}"), headers=JSON)
        text = await search.text()
        whole = {}
        for id_ in created:
            read = await http.get(store.mb.url(f"Observation/{id_}"), headers=JSON)
            whole[id_] = await read.text()
    assert search.status == 200, text
    entries = loads_exact(text)["entry"]
    assert sorted(e["resource"]["id"] for e in entries) == sorted(created)
    wanted = names_for("Observation", names.split(","), "Observation")
    assert wanted is not None
    for entry in entries:
        resource = entry["resource"]
        assert resource == loads_exact(subset(whole[resource["id"]], wanted)), resource["id"]
        assert is_subsetted(resource) and resource["meta"]["tag"].count(resource["meta"]["tag"][-1]) == 1
    if "value" in names:
        assert '"value":5.40' in text and '"valueDecimal":1.50' not in text
    if "subject" in names:
        assert '"valueDecimal":1.50' in text


async def test_pages_driven_in_rid_order_return_every_match_once(store: DataStore) -> None:
    # 300 matches (more than search.PAGE_DRIVE_LIMIT, fewer than 20 per match of a 100-entry page):
    # driven pages in rid order, followed by cursor (next links) and by page number (last link).
    assert search.PAGE_DRIVE_LIMIT < 300 <= search.PAGE_DRIVE_ROWS_PER_MATCH * 100
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Observation", "status": "final" if i % 3 else "preliminary",
                      "code": coding(LOINC, "9999-9"), "valueInteger": i},
         "request": {"method": "POST", "url": "Observation"}} for i in range(450)
    ]}
    async with store.mb.client(None) as http:
        response = await http.post(store.mb.url(), json=bundle, headers=JSON)
        assert response.status == 200, await response.text()
    query = f"Observation?code={LOINC}|9999-9&status=final&_count=100&_elements=value"
    status, page = await store.get(query)
    assert status == 200 and page["total"] == 300
    values: list[int] = []
    while True:
        values += [e["resource"]["valueInteger"] for e in page.get("entry", [])]
        nxt = [link["url"] for link in page["link"] if link["relation"] == "next"]
        if not nxt:
            break
        status, page = await store.get(nxt[0].split("/fhir/", 1)[1])
    assert values == [i for i in range(450) if i % 3]  # insertion order, each once
    _, last = await store.get(query + "&_page=3")
    assert [e["resource"]["valueInteger"] for e in last["entry"]] == values[200:]
