"""Feasibility settings, the sticky rate limit, the request Bundle and the shape checks (no network needed)."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from pathlib import Path

import pytest
from dsf_plugin_feasibility import PLUGIN
from dsf_plugin_feasibility.bundles import request_bundle
from dsf_plugin_feasibility.common import summary_report
from dsf_plugin_feasibility.config import FeasibilitySettings, RateLimitSettings, parse_duration
from dsf_plugin_feasibility.execute import RateLimit
from dsf_plugin_feasibility.profiles import check_library, check_measure, check_measure_report, check_task

from dsf_core.api import PluginSettings, SettingsError

QUERY = {"version": "http://to_be_decided.com/draft-1/schema#", "inclusionCriteria": [[{
    "termCodes": [{"system": "http://snomed.info/sct", "code": "263495000", "display": "Geschlecht"}],
    "valueFilter": {"type": "concept", "selectedConcepts": [
        {"system": "http://hl7.org/fhir/administrative-gender", "code": "female", "display": "Female"}]},
}]]}


def settings(table: dict[str, object], tmp_path: Path | None = None) -> FeasibilitySettings:
    return FeasibilitySettings.parse(PluginSettings("feasibility", table, "node.toml", tmp_path))


def test_defaults_match_the_java_plugin() -> None:
    parsed = settings({})
    assert parsed.request_task_timeout == timedelta(minutes=5)
    assert parsed.result_timeout == timedelta(minutes=5)
    network = parsed.network("medizininformatik-initiative.de")
    assert network.obfuscate is True
    assert network.rate_limit == RateLimitSettings(999, timedelta(hours=1))
    assert parsed.store("default").strategy == "structured-query"


def test_a_full_table(tmp_path: Path) -> None:
    (tmp_path / "mapping.json").write_text("[]")
    parsed = settings({
        "request_task_timeout": "PT10M", "result_timeout": "PT30S", "mapping_file": "mapping.json",
        "stores": {"blaze": {"strategy": "CQL", "request_timeout": "PT1M"}, "flare": {"strategy": "ccdl"}},
        "networks": {"net.test": {"obfuscate": False, "rate_limit": {"count": 2, "interval": "P1D"}, "stores": ["blaze"]}},
    }, tmp_path)
    assert parsed.result_timeout == timedelta(seconds=30)
    assert parsed.mapping_file == str(tmp_path / "mapping.json")
    assert parsed.store("blaze").strategy == "cql" and parsed.store("blaze").request_timeout == timedelta(minutes=1)
    assert parsed.store("flare").strategy == "structured-query"
    network = parsed.network("net.test")
    assert (network.obfuscate, network.rate_limit.count, network.rate_limit.interval, network.stores) == (
        False, 2, timedelta(days=1), ("blaze",))


@pytest.mark.parametrize(("table", "message"), [
    ({"request_task_timeout": "5 minutes"}, r"node.toml: plugins.feasibility.request_task_timeout: '5 minutes' is not"),
    ({"result_timeout": "PT0S"}, r"plugins.feasibility.result_timeout must be longer than zero"),
    ({"resulttimeout": "PT1S"}, r"plugins.feasibility.resulttimeout: unknown setting"),
    ({"mapping_file": "nope.json"}, r"plugins.feasibility.mapping_file: no such file"),
    ({"stores": {"s": {"strategy": "sql"}}}, r"plugins.feasibility.stores.s.strategy: 'sql' is not one of"),
    ({"networks": {"n": {"obfuscate": "yes"}}}, r"plugins.feasibility.networks.n.obfuscate must be true or false"),
    ({"networks": {"n": {"rate_limit": {"count": -1}}}}, r"networks.n.rate_limit.count must be a whole number"),
    ({"networks": {"n": {"stores": "default"}}}, r"networks.n.stores must be a list of data store names"),
    ({"networks": 3}, r"plugins.feasibility.networks must be a table"),
])
def test_errors_name_the_key(tmp_path: Path, table: dict[str, object], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        settings(table, tmp_path)


def test_the_plugin_checks_its_table_at_start() -> None:
    assert PLUGIN.settings_key == "feasibility" and PLUGIN.check_settings is not None
    with pytest.raises(SettingsError):
        PLUGIN.check_settings(PluginSettings("feasibility", {"result_timeout": "never"}))


def test_durations() -> None:
    assert parse_duration("PT1H30M") == timedelta(minutes=90)
    assert parse_duration("P1DT0.5S") == timedelta(days=1, seconds=0.5)
    for bad in ("P", "PT", "1H", "PT-1S", ""):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_the_rate_limit_is_sticky_once_exceeded() -> None:
    now = [0.0]
    limit = RateLimit(RateLimitSettings(2, timedelta(seconds=10)), clock=lambda: now[0])
    assert limit.allow() and limit.allow()
    assert not limit.allow()
    now[0] = 100.0  # the interval has long passed, but Java's limit never refills once exceeded
    assert not limit.allow()
    assert not RateLimit(RateLimitSettings(0, timedelta(hours=1))).allow()


def test_the_rate_limit_refills_before_it_is_exceeded() -> None:
    now = [0.0]
    limit = RateLimit(RateLimitSettings(1, timedelta(seconds=10)), clock=lambda: now[0])
    assert limit.allow()
    now[0] = 10.0
    assert limit.allow()


def test_the_request_bundle_has_the_java_shapes() -> None:
    bundle = request_bundle(QUERY, hrp="hrp.test", authored_on="2026-01-01T00:00:00Z")
    task, measure, library = (e["resource"] for e in bundle["entry"])
    assert check_task(task) == []
    assert check_measure(measure) == []
    assert check_library(library) == []
    assert measure["library"] == [library["url"]]
    sq = next(c for c in library["content"] if c["contentType"] == "application/json")
    assert json.loads(base64.b64decode(sq["data"])) == QUERY
    assert task["input"][2]["valueReference"]["reference"] == bundle["entry"][1]["fullUrl"]


def test_shape_checks_find_what_breaks_a_profile() -> None:
    bundle = request_bundle(QUERY, hrp="hrp.test", authored_on="2026-01-01T00:00:00Z")
    task, measure, library = (e["resource"] for e in bundle["entry"])
    task["input"].append(task["input"][1])
    task["instantiatesCanonical"] = task["instantiatesCanonical"].replace("|1.1", "|1.0")
    problems = check_task(task)
    assert any("instantiatesCanonical" in p for p in problems) and any("exactly 3 inputs" in p for p in problems)
    measure["group"][0]["population"][0]["criteria"]["expression"] = "Other"
    assert check_measure(measure) == ["the population criteria must be text/cql InInitialPopulation"]
    library["content"] = library["content"][:1]
    assert check_library(library) == ["content application/json: 1..1 required, found 0"]
    report = summary_report("https://hrp.test/fhir/Measure/1", 20, "2026-01-01T00:00:00Z")
    assert check_measure_report(report) == []
    report["group"][0]["population"][0].pop("count")
    assert check_measure_report(report) == ["the population count is required"]
