"""Acceptance: structured queries counted on a real data store equal counts taken from the data itself.

Generated KDS-shaped data (``dsf_core.data``, a few hundred patients, fixed seed) is loaded once
per module into our data-store server (real HTTP + TLS, SQLite).  Each case is a structured query
— every term type of the default mapping, every value filter kind and comparator, time
restrictions, an attribute filter, exclusion, negation, nested AND/OR — evaluated through
:func:`evaluate` on that store.  The expected count is computed here by plain Python over the
generated dicts (:class:`Facts`), without the evaluator, the planner or the mapping table, so a
wrong search parameter, filter or set operation shows as a different number.

Quantity comparisons follow FHIR search: ``eq``/``ne`` use the implicit precision of the number
as written (13.8 stands for [13.75, 13.85)), the other comparators compare exactly.  Dates compare
by their UTC day.  Ages are completed years at the dataset's reference date ("today").
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from dsf_core.client import ClientFactory
from dsf_core.data import Dataset, DatasetSpec, generate
from dsf_core.testing.data_store import DataStoreServer

from dsf_plugin_feasibility.evaluation import (
    CohortCounter,
    EvaluationStore,
    FeasibilityQuery,
    FeasibilityResourceError,
    StoreEvaluationError,
    Strategy,
    default_mapping,
    evaluate,
    evaluate_feasibility,
    parse_structured_query,
    plan_query,
)

ICD = "http://fhir.de/CodeSystem/bfarm/icd-10-gm"
LOINC = "http://loinc.org"
OPS = "http://fhir.de/CodeSystem/bfarm/ops"
ATC = "http://fhir.de/CodeSystem/bfarm/atc"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
CONSENT = "urn:oid:2.16.840.1.113883.3.1937.777.24.5.3"
MDAT_RESEARCH = "2.16.840.1.113883.3.1937.777.24.5.3.8"
GENDER = "http://hl7.org/fhir/administrative-gender"
BODY_SITE = {"system": "http://hl7.org/fhir/StructureDefinition", "code": "body-site", "display": "Entnahmeort"}
FDPG = "fdpg.mii.cds"

SPEC = DatasetSpec(patients=300, seed=11)
TODAY = SPEC.reference_date


# --- the independent count ---------------------------------------------------------------------


class Facts:
    """Patient id sets straight from the generated resources."""

    def __init__(self, dataset: Dataset) -> None:
        self.data = dataset
        self.everyone = {p["id"] for p in dataset.of_type("Patient")}

    @staticmethod
    def _patient(resource: dict[str, Any]) -> str | None:
        reference = (resource.get("subject") or resource.get("patient") or {}).get("reference", "")
        return reference.split("/", 1)[1] if reference.startswith("Patient/") else None

    @staticmethod
    def _coded(concept: dict[str, Any] | None, system: str, codes: Iterable[str]) -> bool:
        wanted = set(codes)
        return any(c.get("system") == system and c.get("code") in wanted for c in (concept or {}).get("coding", []))

    @staticmethod
    def _day(value: str | None) -> date | None:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).date() if value else None

    def _within(self, value: str | None, after: str | None, before: str | None) -> bool:
        day = self._day(value)
        if day is None:
            return after is None and before is None
        return (after is None or day >= date.fromisoformat(after)) and (before is None or day <= date.fromisoformat(before))

    def _where(self, type_: str, keep: Callable[[dict[str, Any]], bool]) -> set[str]:
        return {p for r in self.data.of_type(type_) if keep(r) and (p := self._patient(r)) is not None}

    def conditions(
        self, *codes: str, after: str | None = None, before: str | None = None, when: str = "recordedDate"
    ) -> set[str]:
        return self._where("Condition", lambda r: self._coded(r["code"], ICD, codes) and self._within(r.get(when), after, before))

    def observations(
        self, code: str, value: Callable[[dict[str, Any]], bool] = lambda r: True, *, after: str | None = None, before: str | None = None
    ) -> set[str]:
        return self._where(
            "Observation",
            lambda r: self._coded(r["code"], LOINC, [code]) and value(r) and self._within(r.get("effectiveDateTime"), after, before),
        )

    def procedures(self, *codes: str, after: str | None = None, before: str | None = None) -> set[str]:
        return self._where("Procedure", lambda r: self._coded(r["code"], OPS, codes) and self._within(r.get("performedDateTime"), after, before))

    def medications(self, *atc: str, after: str | None = None, before: str | None = None) -> set[str]:
        drugs = {f"Medication/{m['id']}" for m in self.data.of_type("Medication") if self._coded(m["code"], ATC, atc)}
        return self._where(
            "MedicationAdministration",
            lambda r: r["medicationReference"]["reference"] in drugs and self._within(r.get("effectiveDateTime"), after, before),
        )

    def specimens(self, *types: str, body_sites: Iterable[str] | None = None, after: str | None = None) -> set[str]:
        sites = set(body_sites) if body_sites is not None else None
        return self._where(
            "Specimen",
            lambda r: self._coded(r["type"], SNOMED, types)
            and (sites is None or self._coded(r.get("collection", {}).get("bodySite"), SNOMED, sites))
            and self._within(r.get("collection", {}).get("collectedDateTime"), after, None),
        )

    def consents(self, code: str) -> set[str]:
        return self._where(
            "Consent",
            lambda r: any(self._coded(c, CONSENT, [code]) for p in r.get("provision", {}).get("provision", []) for c in p.get("code", [])),
        )

    def patients(self, keep: Callable[[dict[str, Any]], bool]) -> set[str]:
        return {p["id"] for p in self.data.of_type("Patient") if keep(p)}

    def gender(self, *genders: str) -> set[str]:
        return self.patients(lambda p: p.get("gender") in genders)

    def age(self, keep: Callable[[int], bool]) -> set[str]:
        def years(p: dict[str, Any]) -> int | None:
            if "birthDate" not in p:
                return None
            born = date.fromisoformat(p["birthDate"])
            return TODAY.year - born.year - ((TODAY.month, TODAY.day) < (born.month, born.day))

        return self.patients(lambda p: (a := years(p)) is not None and keep(a))


def quantity(comparator: str, number: str, unit: str | None = None) -> Callable[[dict[str, Any]], bool]:
    """FHIR quantity search semantics on ``valueQuantity`` (see the module docstring)."""
    target = Decimal(number)
    half = Decimal(1).scaleb(target.as_tuple().exponent) / 2  # type: ignore[arg-type]

    def test(observation: dict[str, Any]) -> bool:
        q = observation.get("valueQuantity")
        if q is None or (unit is not None and (q.get("system"), q.get("code")) != (UCUM, unit)):
            return False
        value = Decimal(str(q["value"]))
        near = target - half <= value < target + half
        return {"gt": value > target, "ge": value >= target, "lt": value < target, "le": value <= target,
                "eq": near, "ne": not near}[comparator]  # fmt: skip

    return test


def concept(*codes: str) -> Callable[[dict[str, Any]], bool]:
    return lambda r: Facts._coded(r.get("valueCodeableConcept"), SNOMED, codes)


def between(low: str, high: str, unit: str | None = None) -> Callable[[dict[str, Any]], bool]:
    return lambda r: quantity("ge", low, unit)(r) and quantity("le", high, unit)(r)


# --- the queries -------------------------------------------------------------------------------


def tc(system: str, code: str) -> dict[str, str]:
    return {"system": system, "code": code, "display": code}


def crit(*codes: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {"termCodes": list(codes), **extra}


def comparator(op: str, value: float | int, unit: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "quantity-comparator", "comparator": op, "value": value}
    if unit:
        out["unit"] = {"code": unit, "display": unit}
    return out


def value_range(low: float | int, high: float | int, unit: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "quantity-range", "minValue": low, "maxValue": high}
    if unit:
        out["unit"] = {"code": unit, "display": unit}
    return out


def concepts(system: str, *codes: str) -> dict[str, Any]:
    return {"type": "concept", "selectedConcepts": [tc(system, c) for c in codes]}


def time(after: str | None = None, before: str | None = None) -> dict[str, str]:
    return {k: v for k, v in (("afterDate", after), ("beforeDate", before)) if v}


def age(filter_: dict[str, Any]) -> dict[str, Any]:
    return crit(tc(LOINC, "30525-0"), valueFilter={**filter_, "unit": {"code": "a", "display": "Jahre"}})


@dataclass(frozen=True)
class Case:
    name: str
    query: dict[str, Any]
    expected: Callable[[Facts], set[str]]


HB, GLUCOSE, CREATININE, WEIGHT, SMOKING = "718-7", "2339-0", "2160-0", "29463-7", "72166-2"

CASES = [
    Case("condition", {"inclusionCriteria": [[crit(tc(ICD, "I10"))]]}, lambda f: f.conditions("I10")),
    Case("condition, two codes, recorded within a period",
         {"inclusionCriteria": [[crit(tc(ICD, "E11.9"), tc(ICD, "E78.0"), timeRestriction=time("2020-01-01", "2022-12-31"))]]},
         lambda f: f.conditions("E11.9", "E78.0", after="2020-01-01", before="2022-12-31")),
    Case("observation gt with unit", {"inclusionCriteria": [[crit(tc(LOINC, GLUCOSE), valueFilter=comparator("gt", 120, "mg/dL"))]]},
         lambda f: f.observations(GLUCOSE, quantity("gt", "120", "mg/dL"))),
    Case("observation ge", {"inclusionCriteria": [[crit(tc(LOINC, HB), valueFilter=comparator("ge", 15.3, "g/dL"))]]},
         lambda f: f.observations(HB, quantity("ge", "15.3", "g/dL"))),
    Case("observation lt", {"inclusionCriteria": [[crit(tc(LOINC, HB), valueFilter=comparator("lt", 12, "g/dL"))]]},
         lambda f: f.observations(HB, quantity("lt", "12", "g/dL"))),
    Case("observation le without unit", {"inclusionCriteria": [[crit(tc(LOINC, CREATININE), valueFilter=comparator("le", 0.79))]]},
         lambda f: f.observations(CREATININE, quantity("le", "0.79"))),
    Case("observation eq (implicit precision)", {"inclusionCriteria": [[crit(tc(LOINC, HB), valueFilter=comparator("eq", 13.8, "g/dL"))]]},
         lambda f: f.observations(HB, quantity("eq", "13.8", "g/dL"))),
    Case("observation ne", {"inclusionCriteria": [[crit(tc(LOINC, HB), valueFilter=comparator("ne", 13.8, "g/dL"))]]},
         lambda f: f.observations(HB, quantity("ne", "13.8", "g/dL"))),
    Case("observation range", {"inclusionCriteria": [[crit(tc(LOINC, WEIGHT), valueFilter=value_range(60, 80.5, "kg"))]]},
         lambda f: f.observations(WEIGHT, between("60", "80.5", "kg"))),
    Case("observation with a unit nobody uses", {"inclusionCriteria": [[crit(tc(LOINC, GLUCOSE), valueFilter=comparator("gt", 1, "mmol/L"))]]},
         lambda f: set()),
    Case("observation concept value", {"inclusionCriteria": [[crit(tc(LOINC, SMOKING), valueFilter=concepts(SNOMED, "8517006", "77176002"))]]},
         lambda f: f.observations(SMOKING, concept("8517006", "77176002"))),
    Case("observation in a period", {"inclusionCriteria": [[crit(tc(LOINC, HB), timeRestriction=time(after="2024-01-01"))]]},
         lambda f: f.observations(HB, after="2024-01-01")),
    Case("procedure before a date", {"inclusionCriteria": [[crit(tc(OPS, "8-930"), tc(OPS, "3-200"), timeRestriction=time(before="2021-06-30"))]]},
         lambda f: f.procedures("8-930", "3-200", before="2021-06-30")),
    Case("medication (two steps)", {"inclusionCriteria": [[crit(tc(ATC, "B01AC06"), tc(ATC, "C10AA05"))]]},
         lambda f: f.medications("B01AC06", "C10AA05")),
    Case("medication in a period", {"inclusionCriteria": [[crit(tc(ATC, "N02BB02"), timeRestriction=time("2019-01-01", "2023-12-31"))]]},
         lambda f: f.medications("N02BB02", after="2019-01-01", before="2023-12-31")),
    Case("specimen with a body-site attribute",
         {"inclusionCriteria": [[crit(tc(SNOMED, "119297000"), tc(SNOMED, "119364003"),
                                      attributeFilters=[{"type": "concept", "attributeCode": BODY_SITE, "selectedConcepts": [tc(SNOMED, "49852007")]}])]]},
         lambda f: f.specimens("119297000", "119364003", body_sites=["49852007"])),
    Case("specimen collected after", {"inclusionCriteria": [[crit(tc(SNOMED, "119361006"), timeRestriction=time(after="2023-01-01"))]]},
         lambda f: f.specimens("119361006", after="2023-01-01")),
    Case("consent", {"inclusionCriteria": [[crit(tc(CONSENT, MDAT_RESEARCH), context=tc(FDPG, "Einwilligung"))]]},
         lambda f: f.consents(MDAT_RESEARCH)),
    Case("gender (FDPG SNOMED code and context)",
         {"inclusionCriteria": [[crit(tc(SNOMED, "263495000"), context=tc(FDPG, "Patient"), valueFilter=concepts(GENDER, "female"))]]},
         lambda f: f.gender("female")),
    Case("gender, two values (LOINC)", {"inclusionCriteria": [[crit(tc(LOINC, "76689-9"), valueFilter=concepts(GENDER, "male", "other"))]]},
         lambda f: f.gender("male", "other")),
    Case("age ge", {"inclusionCriteria": [[age(comparator("ge", 65))]]}, lambda f: f.age(lambda a: a >= 65)),
    Case("age gt", {"inclusionCriteria": [[age(comparator("gt", 65))]]}, lambda f: f.age(lambda a: a > 65)),
    Case("age lt", {"inclusionCriteria": [[age(comparator("lt", 40))]]}, lambda f: f.age(lambda a: a < 40)),
    Case("age le", {"inclusionCriteria": [[age(comparator("le", 40))]]}, lambda f: f.age(lambda a: a <= 40)),
    Case("age eq", {"inclusionCriteria": [[age(comparator("eq", 60))]]}, lambda f: f.age(lambda a: a == 60)),
    Case("age ne", {"inclusionCriteria": [[age(comparator("ne", 60))]]}, lambda f: f.age(lambda a: a != 60)),
    Case("age range (FDPG SNOMED code)",
         {"inclusionCriteria": [[crit(tc(SNOMED, "424144002"), context=tc(FDPG, "Patient"),
                                      valueFilter={**value_range(30, 50), "unit": {"code": "a", "display": "a"}})]]},
         lambda f: f.age(lambda a: 30 <= a <= 50)),
    Case("two modules in one criterion (OR)", {"inclusionCriteria": [[crit(tc(ICD, "J18.9"), tc(OPS, "8-930"))]]},
         lambda f: f.conditions("J18.9") | f.procedures("8-930")),
    Case("exclusion", {"inclusionCriteria": [[crit(tc(ICD, "I10"))]], "exclusionCriteria": [[crit(tc(ICD, "E11.9")), crit(tc(ICD, "E78.0"))]]},
         lambda f: f.conditions("I10") - (f.conditions("E11.9") & f.conditions("E78.0"))),
    Case("only exclusion (everyone else)", {"exclusionCriteria": [[crit(tc(ICD, "I10"))]]}, lambda f: f.everyone - f.conditions("I10")),
    Case("empty query (everyone)", {"inclusionCriteria": []}, lambda f: f.everyone),
    Case("nested AND of ORs minus OR of ANDs",
         {"inclusionCriteria": [
             [crit(tc(ICD, "I10")), crit(tc(ICD, "E66.9")), crit(tc(LOINC, GLUCOSE), valueFilter=comparator("gt", 140, "mg/dL"))],
             [crit(tc(LOINC, "76689-9"), valueFilter=concepts(GENDER, "female")), age(comparator("ge", 50))],
             [crit(tc(CONSENT, MDAT_RESEARCH))],
          ],
          "exclusionCriteria": [
             [crit(tc(ICD, "J18.9"))],
             [crit(tc(LOINC, SMOKING), valueFilter=concepts(SNOMED, "77176002")), crit(tc(OPS, "3-200"), tc(OPS, "3-225"))],
          ]},
         lambda f: ((f.conditions("I10") | f.conditions("E66.9") | f.observations(GLUCOSE, quantity("gt", "140", "mg/dL")))
                    & (f.gender("female") | f.age(lambda a: a >= 50))
                    & f.consents(MDAT_RESEARCH))
         - (f.conditions("J18.9") | (f.observations(SMOKING, concept("77176002")) & f.procedures("3-200", "3-225")))),
    Case("negated criterion (CCDL v3)",
         {"inclusionCriteria": [[crit(tc(ICD, "I10"))], [crit(tc(CONSENT, MDAT_RESEARCH), negated=True)]]},
         lambda f: f.conditions("I10") - f.consents(MDAT_RESEARCH)),
]  # fmt: skip


# --- the store ---------------------------------------------------------------------------------


@dataclass
class Loaded:
    store: DataStoreServer
    dataset: Dataset
    facts: Facts


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def loaded(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Loaded]:
    dataset = generate(SPEC)
    async with DataStoreServer(tmp_path_factory.mktemp("kds"), auth="basic") as store:
        await store.load(dataset)
        yield Loaded(store, dataset, Facts(dataset))


def _store(loaded: Loaded, name: str = "kds") -> EvaluationStore:
    return EvaluationStore(name, loaded.store.client(), Strategy.parse("ccdl"))


def test_every_case_selects_someone_and_not_everyone() -> None:
    """Guards the table itself: a case whose expectation is trivially empty or total proves little."""
    facts = Facts(generate(SPEC))
    trivial = {"observation with a unit nobody uses", "only exclusion (everyone else)", "empty query (everyone)"}
    for case in CASES:
        if case.name in trivial:
            continue
        expected = case.expected(facts)
        assert 0 < len(expected) < len(facts.everyone), case.name


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_counts_equal_the_data(loaded: Loaded, case: Case) -> None:
    query = parse_structured_query(json.dumps(case.query))
    evaluation = await evaluate(query, [_store(loaded)], today=TODAY, concurrency=3)
    assert evaluation.count == len(case.expected(loaded.facts))
    [result] = evaluation.stores
    assert result.store == "kds" and result.strategy is Strategy.STRUCTURED_QUERY and result.searches >= 1


@pytest.mark.parametrize("name", ["medication (two steps)", "nested AND of ORs minus OR of ANDs", "age ne"])
async def test_small_pages_and_reference_chunks_give_the_same_counts(loaded: Loaded, name: str) -> None:
    """Many pages per search and one id per medication lookup chunk: streaming and chunking lose nobody."""
    case = next(c for c in CASES if c.name == name)
    plan = plan_query(parse_structured_query(json.dumps(case.query)), default_mapping(), TODAY)
    counter = CohortCounter(loaded.store.client(), page_size=7, concurrency=2, reference_chunk=1)
    result = await counter.count(plan)
    assert result.count == len(case.expected(loaded.facts))
    assert result.pages > result.searches  # really paged


async def test_stores_are_summed_and_one_failing_store_fails_all(loaded: Loaded, tmp_path: Path) -> None:
    query = parse_structured_query(json.dumps({"inclusionCriteria": [[crit(tc(ICD, "I10"))]]}))
    expected = len(loaded.facts.conditions("I10"))
    evaluation = await evaluate(query, [_store(loaded, "a"), _store(loaded, "b")], today=TODAY)
    assert evaluation.count == 2 * expected and [s.count for s in evaluation.stores] == [expected, expected]

    async with ClientFactory.from_files(cafile=loaded.store.ca_cert, attempts=1) as factory:
        closed = factory.client("https://127.0.0.1:9/fhir")  # nothing listens on the discard port
        with pytest.raises(StoreEvaluationError) as caught:
            await evaluate(query, [_store(loaded, "a"), EvaluationStore("down", closed)], today=TODAY)
    assert caught.value.store == "down" and "unreachable" in caught.value.reason


async def test_an_unauthorised_store_names_itself(loaded: Loaded) -> None:
    query = parse_structured_query(json.dumps({"inclusionCriteria": [[crit(tc(ICD, "I10"))]]}))
    client = loaded.store.client()
    async with ClientFactory.from_files(cafile=loaded.store.ca_cert, attempts=1) as factory:
        wrong = factory.client(client.base_url, headers={"Authorization": "Basic d3Jvbmc6d3Jvbmc="})
        with pytest.raises(StoreEvaluationError) as caught:
            await evaluate(query, [EvaluationStore("kds", wrong)], today=TODAY)
    assert caught.value.store == "kds" and "401" in caught.value.reason


async def test_a_store_without_evaluate_measure(loaded: Loaded) -> None:
    """Our data-store server has no ``$evaluate-measure``: a CQL store there is a clear error naming it."""
    cql = "library Retrieve version '1.0.0'\nusing FHIR version '4.0.0'\ncontext Patient\ndefine InInitialPopulation: true\n"
    measure = {"resourceType": "Measure", "url": "https://hrp.example.org/fhir/Measure/m-1", "status": "active",
               "library": ["urn:uuid:0b9c4a1e-1111-2222-3333-444455556666"]}  # fmt: skip
    library = {"resourceType": "Library", "url": "urn:uuid:0b9c4a1e-1111-2222-3333-444455556666", "status": "active",
               "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/library-type", "code": "logic-library"}]},
               "content": [{"contentType": "text/cql", "data": base64.b64encode(cql.encode()).decode()}]}  # fmt: skip
    store = EvaluationStore("local-kds", loaded.store.client(), Strategy.CQL, request_timeout=30)
    with pytest.raises(StoreEvaluationError) as caught:
        await evaluate(FeasibilityQuery(None, measure, library), [store])
    assert caught.value.store == "local-kds"
    assert "does not support $evaluate-measure" in caught.value.reason


def _library(*contents: tuple[str, str]) -> dict[str, Any]:
    return {"resourceType": "Library", "url": "urn:uuid:0b9c4a1e-1111-2222-3333-444455556666", "status": "active",
            "content": [{"contentType": t, "data": base64.b64encode(text.encode()).decode()} for t, text in contents]}  # fmt: skip


MEASURE = {"resourceType": "Measure", "url": "https://hrp.example.org/fhir/Measure/m-1", "status": "active"}


async def test_evaluate_feasibility_reads_the_structured_query_from_the_library(loaded: Loaded, tmp_path: Path) -> None:
    query = {"version": "3", "inclusionCriteria": [
        [crit(tc(SNOMED, "263495000"), context=tc(FDPG, "Patient"), valueFilter=concepts(GENDER, "female"))],
        [crit(tc(ICD, "I10"), timeRestriction=time(after="2021-01-01"))]]}  # fmt: skip
    library = _library(("text/cql", "library Retrieve\ndefine InInitialPopulation: true\n"), ("application/json", json.dumps(query)))
    evaluation = await evaluate_feasibility(MEASURE, library, [_store(loaded)], today=TODAY)
    facts = loaded.facts
    assert evaluation.count == len(facts.gender("female") & facts.conditions("I10", after="2021-01-01"))

    site = tmp_path / "site-mapping.json"  # a site counts diagnoses by onset instead of recording date
    site.write_text(json.dumps({"mappings": [
        {"key": tc(ICD, "*"), "fhirResourceType": "Condition", "termCodeSearchParameter": "code",
         "patientReference": "subject", "timeRestrictionParameter": "onset-date"}]}))  # fmt: skip
    evaluation = await evaluate_feasibility(MEASURE, library, [_store(loaded)], today=TODAY, mapping_file=str(site))
    assert evaluation.count == len(facts.gender("female") & facts.conditions("I10", after="2021-01-01", when="onsetDateTime"))
    assert facts.conditions("I10", after="2021-01-01", when="onsetDateTime") != facts.conditions("I10", after="2021-01-01")


async def test_a_library_without_structured_query_for_a_structured_query_store(loaded: Loaded) -> None:
    library = _library(("text/cql", "library Retrieve\n"))
    with pytest.raises(FeasibilityResourceError, match="kds evaluate structured queries, but the Library has no application/json"):
        await evaluate_feasibility(MEASURE, library, [_store(loaded)], today=TODAY)
