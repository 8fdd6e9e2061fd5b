"""The report plugin's parts without a network: settings, the report's shape, status codes, the shipped resources."""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from dsf_plugin_report import PLUGIN
from dsf_plugin_report.codes import CDS_REPORT_IDENTIFIER, EXT_REPORT_STATUS_ERROR, PROFILE_SEARCH_BUNDLE
from dsf_plugin_report.config import ReportSettings
from dsf_plugin_report.report import SearchResult, all_failed, check_report, reduced_capability_statement, report_bundle
from dsf_plugin_report.search_bundle import search_bundle
from dsf_plugin_report.status import add_status, receipt_inputs, status_codes

from dsf_core.api import PluginSettings, SettingsError

NOW = "2026-11-23T10:00:00.000Z"


def parse(table: dict[str, Any], base: Path | None = None) -> ReportSettings:
    return ReportSettings.parse(PluginSettings("report", table, "node.toml", base))


def test_settings_default_to_the_java_plugin() -> None:
    assert parse({}) == ReportSettings(None, "default", "PT45M", True, None)
    assert parse({"hrp_identifier": " hrp.test ", "data_store": "kds", "receipt_timeout": "PT1H30M",
                  "publish_search_bundle": False}) == ReportSettings("hrp.test", "kds", "PT1H30M", False, None)


@pytest.mark.parametrize(("table", "message"), [
    ({"hrp": "x"}, "node.toml: plugins.report.hrp: unknown setting (known: data_store, hrp_identifier, "),
    ({"receipt_timeout": "45 minutes"}, "node.toml: plugins.report.receipt_timeout: '45 minutes' is not an ISO-8601 duration"),
    ({"receipt_timeout": "PT0M"}, "plugins.report.receipt_timeout: 'PT0M' is no time at all"),
    ({"data_store": ""}, "plugins.report.data_store must be a non-empty string"),
    ({"publish_search_bundle": "yes"}, "plugins.report.publish_search_bundle must be true or false"),
    ({"search_bundle_file": "missing.json"}, "plugins.report.search_bundle_file: cannot read "),
])
def test_bad_settings_name_the_key(table: dict[str, Any], message: str, tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as caught:
        parse(table, tmp_path)
    assert message in str(caught.value)


def test_an_hrp_may_publish_its_own_search_bundle_if_it_obeys_the_rules(tmp_path: Path) -> None:
    own: dict[str, Any] = {"resourceType": "Bundle", "type": "batch",
                           "entry": [{"request": {"method": "GET", "url": "Patient?_summary=count"}}]}
    (tmp_path / "own.json").write_text(json.dumps(own))
    published = search_bundle(parse({"search_bundle_file": "own.json"}, tmp_path))
    assert published["entry"] == own["entry"]
    assert published["identifier"]["value"] == "search-bundle-v1.1"
    assert published["meta"]["profile"] == [f"{PROFILE_SEARCH_BUNDLE}|1.1"]
    own["entry"].append({"request": {"method": "GET", "url": "Patient?birthdate=eq2020&_summary=count"}})
    (tmp_path / "own.json").write_text(json.dumps(own))
    with pytest.raises(SettingsError, match=r"own.json: search Bundle rule 'allowed-parameters' broken by Bundle.entry\[1\]"):
        parse({"search_bundle_file": "own.json"}, tmp_path)
    (tmp_path / "own.json").write_text("{")
    with pytest.raises(SettingsError, match="own.json is not JSON"):
        parse({"search_bundle_file": "own.json"}, tmp_path)


STORE_STATEMENT = {
    "resourceType": "CapabilityStatement", "status": "active", "date": "2026-11-22", "publisher": "a hospital",
    "kind": "instance", "software": {"name": "blaze", "version": "0.30", "releaseDate": "2026"},
    "implementation": {"description": "the KDS store", "url": "https://kds.internal/fhir"},
    "fhirVersion": "4.0.1", "format": ["application/fhir+json", "application/fhir+xml", "json"],
    "rest": [{"mode": "server", "documentation": "internal", "interaction": [{"code": "transaction"}],
              "resource": [{"type": "Patient", "interaction": [{"code": "read"}], "profile": "x",
                            "searchParam": [{"name": "birthdate", "type": "date", "documentation": "Date of birth",
                                             "definition": "http://hl7.org/fhir/SearchParameter/individual-birthdate"}]}],
              "searchParam": [{"name": "_id", "type": "token", "documentation": "id"}]}],
}


def test_the_report_holds_totals_and_a_reduced_capability_statement_only() -> None:
    results = [
        SearchResult("Patient?_summary=count", total=42, last_updated="2026-11-23T09:00:00Z"),
        SearchResult("Media?_summary=count", status=404),
        SearchResult("metadata", capability_statement=STORE_STATEMENT),
    ]
    report = report_bundle(results, organization="dic.test", hrp="hrp.test", now=NOW)
    assert report["identifier"] == {"system": CDS_REPORT_IDENTIFIER, "value": "dic.test"}
    assert report["type"] == "batch-response" and report["meta"]["lastUpdated"] == NOW
    assert report["entry"][0] == {"resource": {
        "resourceType": "Bundle", "meta": {"lastUpdated": "2026-11-23T09:00:00Z"}, "type": "searchset", "total": 42,
        "link": [{"relation": "self", "url": "Patient?_summary=count"}]}, "response": {"status": "200"}}
    assert report["entry"][1]["resource"]["total"] == 0
    assert report["entry"][1]["response"] == {"status": "404", "outcome": {"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "exception", "diagnostics": "HTTP 404 Not Found"}]}}
    assert report["entry"][2] == {"resource": {
        "resourceType": "CapabilityStatement", "status": "active", "date": "2026-11-22", "name": "Server", "kind": "capability",
        "software": {"name": "blaze", "version": "0.30"}, "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "application/fhir+xml"],
        "rest": [{"mode": "server", "resource": [{"type": "Patient", "searchParam": [
            {"name": "birthdate", "definition": "http://hl7.org/fhir/SearchParameter/individual-birthdate", "type": "date"}]}],
            "searchParam": [{"name": "_id", "type": "token"}]}]}, "response": {"status": "200"}}
    assert check_report(report) == [] and not all_failed(report)
    assert "kds.internal" not in json.dumps(report)
    assert all_failed(report_bundle([SearchResult("Patient?_summary=count", status=500)], organization="d", hrp="h", now=NOW))


def test_the_hrp_refuses_a_report_with_more_than_totals() -> None:
    results = [SearchResult("Patient?_summary=count", total=1), SearchResult("metadata", capability_statement=STORE_STATEMENT)]
    report = report_bundle(results, organization="dic.test", hrp="hrp.test", now=NOW)
    report["entry"][0]["resource"]["entry"] = [{"resource": {"resourceType": "Patient", "id": "p1"}}]
    report["entry"][1]["resource"]["implementation"] = {"url": "https://kds.internal/fhir"}
    report["entry"].append({"resource": {"resourceType": "Patient", "id": "p2"}, "response": {"status": "200"}})
    assert check_report(report) == [
        "Bundle.entry[0]: a searchset Bundle with resources",
        "Bundle.entry[1]: a CapabilityStatement with more than the report keeps",
        "Bundle.entry[2]: a Patient resource where a total belongs",
    ]
    assert check_report({"resourceType": "Bundle", "type": "collection"}) == [
        "the report is not a Bundle of type batch-response",
        f"the report has no identifier of {CDS_REPORT_IDENTIFIER}"]
    assert reduced_capability_statement({}) == {"resourceType": "CapabilityStatement", "status": "unknown", "name": "Server",
                                             "kind": "capability", "format": ["application/fhir+json"]}


def test_the_receipt_says_ok_or_maps_receive_error_to_receipt_error() -> None:
    task: dict[str, Any] = {"resourceType": "Task"}
    assert status_codes({"input": receipt_inputs(task)}, "input") == ["receipt-ok"]
    add_status(task, "receive-error", "Insert report failed")
    [receipt] = receipt_inputs(task)
    assert receipt["valueCoding"]["code"] == "receipt-error"
    assert receipt["extension"] == [{"url": EXT_REPORT_STATUS_ERROR, "valueString": "Insert report failed"}]
    assert status_codes(task) == ["receive-error"]  # the Task's own output is not changed


FHIR = resources.files("dsf_plugin_report").joinpath("fhir")


def _resources() -> dict[str, dict[str, Any]]:
    found = {}
    for path in sorted({p for files in PLUGIN.fhir_resources.values() for p in files}):
        found[path] = json.loads(PLUGIN.file(path).read_text(encoding="utf-8"))
    return found


def test_the_resources_agree_with_each_other_and_with_the_models() -> None:
    shipped = _resources()
    urls = {r["url"] for r in shipped.values() if "url" in r}
    bpmn = "".join(PLUGIN.file(m).read_text(encoding="utf-8") for m in PLUGIN.models)
    for path, resource in shipped.items():
        if resource["resourceType"] == "ActivityDefinition":
            for block in resource["extension"]:
                parts = {e["url"]: e for e in block["extension"]}
                profile = parts["task-profile"]["valueCanonical"].removesuffix("|#{version}")
                assert profile in urls, (path, profile)
                assert f'name="{parts["message-name"]["valueString"]}"' in bpmn, path
        if resource["resourceType"] == "Task":
            assert resource["meta"]["profile"][0].removesuffix("|#{version}") in urls, path
        text = json.dumps(resource)
        for canonical in re.findall(r"http://medizininformatik-initiative.de/fhir/(?:StructureDefinition|ValueSet)/[a-z-]+", text):
            assert canonical in urls, (path, canonical)
    # every Task profile a model sends is shipped with the process that receives it
    for profile in re.findall(r"(http://medizininformatik-initiative.de/fhir/StructureDefinition/task-[a-z-]+)\|", bpmn):
        assert profile in urls
    assert {p.name for p in FHIR.joinpath("Bundle").iterdir()} == {"search-bundle.json"}
