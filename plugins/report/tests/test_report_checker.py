"""The search Bundle checker: the shipped Bundle passes; each case breaks exactly one rule and is refused
with a message naming the rule and the entry (the cases of the Java plugin's invalid fixtures, and ours)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from dsf_plugin_report.checker import RULES, SearchBundleError, check_search_bundle, search_parameters
from dsf_plugin_report.search_bundle import search_bundle

DIAGNOSE = "https://www.medizininformatik-initiative.de/fhir/core/modul-diagnose/StructureDefinition/Diagnose"
GOOD = f"Condition?_profile={DIAGNOSE}&_summary=count"


def bundle(*urls: str, method: str = "GET") -> dict[str, Any]:
    """A search Bundle: a good first entry, then ``urls`` (the entry under test is Bundle.entry[1])."""
    return {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"request": {"method": "GET", "url": GOOD}}]
        + [{"request": {"method": method, "url": url}} for url in urls],
    }


def refused(candidate: dict[str, Any]) -> str:
    with pytest.raises(SearchBundleError) as caught:
        check_search_bundle(candidate)
    return str(caught.value)


def test_the_shipped_search_bundle_obeys_every_rule() -> None:
    shipped = search_bundle()
    check_search_bundle(shipped)
    assert shipped["identifier"] == {"system": "http://medizininformatik-initiative.de/fhir/CodeSystem/report",
                                     "value": "search-bundle-v1.1"}
    urls = [e["request"]["url"] for e in shipped["entry"]]
    assert urls[-1] == "metadata" and len(set(urls)) == len(urls)
    # every KDS module, per code system, and per year
    for module in ("modul-person", "modul-fall", "modul-medikation", "modul-diagnose", "modul-prozedur", "modul-labor",
                   "modul-consent", "modul-biobank", "modul-icu", "modul-molgen", "modul-patho"):
        assert any(module in url for url in urls), module
    assert "Encounter?date=eq2020&_summary=count" in urls
    assert any(url.startswith("Condition?code=http://fhir.de/CodeSystem/bfarm/icd-10-gm|&") for url in urls)


def test_encounter_type_may_name_a_code_and_metadata_passes() -> None:
    check_search_bundle(bundle(
        "Encounter?_profile:below=x&type=http://fhir.de/CodeSystem/Kontaktebene|abteilungskontakt&_summary=count",
        "Observation?code:below=http://loinc.org|&date=eq2024&_summary=count",
        "metadata",
    ))


def test_entries() -> None:
    assert refused({"resourceType": "Bundle", "type": "batch", "entry": []}) == (
        "search Bundle rule 'entries' broken by the search Bundle: it has no entries")
    assert "it is not a Bundle of type batch" in refused({**bundle(), "type": "transaction"})


def test_no_resources() -> None:
    candidate = bundle("NamingSystem?_summary=count")
    candidate["entry"][1]["resource"] = {"resourceType": "NamingSystem"}
    assert refused(candidate).startswith(
        "search Bundle rule 'no-resources' broken by Bundle.entry[1] ('NamingSystem?_summary=count'): the entry carries a resource")


def test_get_only() -> None:
    assert refused(bundle(GOOD, method="POST")) == (
        f"search Bundle rule 'get-only' broken by Bundle.entry[1] ({GOOD!r}): method 'POST', only GET is allowed")


def test_url_required() -> None:
    candidate = bundle(GOOD)
    del candidate["entry"][1]["request"]["url"]
    assert refused(candidate) == "search Bundle rule 'url-required' broken by Bundle.entry[1]: the request has no url"


@pytest.mark.parametrize("url", [
    "Consent/1234?_profile=x&_summary=count",        # a read, not a search
    "Consent/Consent?_profile=x&_summary=count",
    "NotAType?_summary=count",
    "https://elsewhere.test/fhir/Patient?_summary=count",
    "Patient/$everything?_summary=count",
])
def test_resource_path(url: str) -> None:
    message = refused(bundle(url))
    assert message.startswith(f"search Bundle rule 'resource-path' broken by Bundle.entry[1] ({url!r}): forbidden path [")


def test_metadata_plain() -> None:
    assert refused(bundle("metadata?mode=full")) == (
        "search Bundle rule 'metadata-plain' broken by Bundle.entry[1] ('metadata?mode=full'): metadata takes no parameters")


@pytest.mark.parametrize(("url", "detail"), [
    ("Consent?_profile=x", "no _summary parameter"),
    (f"{GOOD}&_summary=false", "more than one _summary parameter (2)"),
    ("Condition?_profile=x&_summary=false", "unexpected _summary parameter _summary=false (expected: _summary=count)"),
    ("Condition?_profile=x&_summary:text=count", "unexpected _summary parameter _summary:text=count"),
])
def test_summary_count(url: str, detail: str) -> None:
    assert f"search Bundle rule 'summary-count' broken by Bundle.entry[1] ({url!r}): {detail}" in refused(bundle(url))


@pytest.mark.parametrize("url", [
    "Consent?_profile=x&invalid=foo&_summary=count",
    "Patient?_profile=x&birthdate=eq2020&_summary=count",  # a patient attribute: not counted by
    f"{GOOD}&_summary%3Dfalse",                             # URL-encoded: not decoded, so an unknown name
    f"{GOOD}&%5F%73%75%6D%6D%61%72%79%3D%66%61%6C%73%65",
    "Condition?_profile=x&_elements=subject&_summary=count",
])
def test_allowed_parameters(url: str) -> None:
    assert refused(bundle(url)).startswith(
        f"search Bundle rule 'allowed-parameters' broken by Bundle.entry[1] ({url!r}): invalid search parameters [")


@pytest.mark.parametrize("value", ["gt2020", "2020", "le2020-10-10"])
def test_date_eq(value: str) -> None:
    url = f"Consent?_profile=x&date={value}&_summary=count"
    assert refused(bundle(url)) == (
        f"search Bundle rule 'date-eq' broken by Bundle.entry[1] ({url!r}): date search parameter not starting "
        f"with 'eq': [date={value}]")


@pytest.mark.parametrize(("params", "bad"), [
    ("date=eq2020-10-10", "date=eq2020-10-10"),
    ("date=eq2020&date=eq2020-10-10", "date=eq2020-10-10"),
    ("recorded-date=eq1999", "recorded-date=eq1999"),
    ("onset-date=eq20eq24", "onset-date=eq20eq24"),
])
def test_date_year(params: str, bad: str) -> None:
    url = f"Condition?_profile=x&{params}&_summary=count"
    assert refused(bundle(url)) == (
        f"search Bundle rule 'date-year' broken by Bundle.entry[1] ({url!r}): date search parameter not limited "
        f"to a year 20xx: [{bad}]")


@pytest.mark.parametrize(("url", "bad"), [
    ("Condition?code=http://fhir.de/CodeSystem/bfarm/icd-10-gm|R51&_profile=x&_summary=count",
     "code=http://fhir.de/CodeSystem/bfarm/icd-10-gm|R51"),
    ("Condition?code=http://fhir.de/CodeSystem/bfarm/icd-10-gm|&code=http://fhir.de/CodeSystem/bfarm/icd-10-gm|R51"
     "&_profile=x&_summary=count", "code=http://fhir.de/CodeSystem/bfarm/icd-10-gm|R51"),
    ("Medication?ingredient-code=http://fhir.de/CodeSystem/ask|M01AE01&_profile=x&_summary=count",
     "ingredient-code=http://fhir.de/CodeSystem/ask|M01AE01"),
    ("Specimen?type=http://snomed.info/sct|119297000&_summary=count", "type=http://snomed.info/sct|119297000"),
    ("Encounter?type:not=http://fhir.de/CodeSystem/Kontaktebene|x&_summary=count", "type:not=http://fhir.de/CodeSystem/Kontaktebene|x"),
    ("Observation?code=http://loinc.org%7C&_summary=count", "code=http://loinc.org%7C"),
])
def test_token_system(url: str, bad: str) -> None:
    assert refused(bundle(url)) == (
        f"search Bundle rule 'token-system' broken by Bundle.entry[1] ({url!r}): code search parameter not limited "
        f"to a system (system|): [{bad}]")


def test_every_rule_has_its_test() -> None:
    assert [rule for rule in RULES if f"test_{rule.replace('-', '_')}" not in globals()] == []


def test_the_first_violation_is_named_and_the_others_counted() -> None:
    candidate = bundle("Patient/1?_summary=count", "Patient?_summary=false")
    candidate["entry"].append(copy.deepcopy(candidate["entry"][1]))
    message = refused(candidate)
    assert message.startswith("search Bundle rule 'resource-path' broken by Bundle.entry[1]")
    assert message.endswith("(and 2 more violations)")


def test_parameters_are_read_as_written() -> None:
    assert search_parameters("Condition?a=1&&b&c=x=y&_summary%3Dcount") == (
        "Condition", [("a", "1"), ("b", None), ("c", "x=y"), ("_summary%3Dcount", None)])
    assert search_parameters("metadata") == ("metadata", [])
