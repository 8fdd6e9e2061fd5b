"""Feasibility end to end: an HRP and DICs as real nodes on loopback, each DIC with its own data store.

The expected counts are computed here from the generated objects (plain Python over the
dicts), not through the evaluator.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from dsf_plugin_feasibility import PLUGIN
from dsf_plugin_feasibility.bundles import request_bundle
from dsf_plugin_feasibility.common import DSF_PY_FEASIBILITY, FEASIBILITY, initial_population_count
from dsf_plugin_feasibility.execute import RATE_LIMIT_EXCEEDED
from dsf_plugin_feasibility.profiles import check_measure_report, check_task

from dsf_core.data import Dataset, DatasetSpec, generate
from dsf_core.network import OrgSpec
from dsf_core.testing.data_store import DataStoreServer
from dsf_core.testing.network import Network

ICD = "http://fhir.de/CodeSystem/bfarm/icd-10-gm"
GENDER = "http://hl7.org/fhir/administrative-gender"


def _code(system: str, code: str) -> dict[str, str]:
    return {"system": system, "code": code, "display": code}


#: Women with hypertension, without type 2 diabetes.
QUERY = {
    "version": "http://to_be_decided.com/draft-1/schema#",
    "inclusionCriteria": [
        [{"termCodes": [_code("http://snomed.info/sct", "263495000")], "context": _code("fdpg.mii.cds", "Patient"),
          "valueFilter": {"type": "concept", "selectedConcepts": [_code(GENDER, "female")]}}],
        [{"termCodes": [_code(ICD, "I10")]}],
    ],
    "exclusionCriteria": [[{"termCodes": [_code(ICD, "E11.9")]}]],
}


def expected_count(dataset: Dataset) -> int:
    """QUERY counted straight from the generated resources."""
    women = {p["id"] for p in dataset.patients if p.get("gender") == "female"}

    def with_code(code: str) -> set[str]:
        return {
            c["subject"]["reference"].split("/")[1]
            for c in dataset.of_type("Condition")
            if any(x.get("system") == ICD and x.get("code") == code for x in c["code"]["coding"])
        }

    return len((women & with_code("I10")) - with_code("E11.9"))


def settings_file(directory: Path, name: str, text: str) -> dict[str, str]:
    path = directory / f"{name}-feasibility.toml"
    path.write_text(text)
    return {"DSF_PLUGINS_FEASIBILITY_CONFIG": str(path)}


@contextlib.asynccontextmanager
async def stores(directory: Path, seeds: Mapping[str, int], patients: int = 60) -> AsyncIterator[dict[str, tuple[DataStoreServer, Dataset]]]:
    async with contextlib.AsyncExitStack() as stack:
        out = {}
        for org, seed in seeds.items():
            store = await stack.enter_async_context(DataStoreServer(directory / f"store-{org}"))
            dataset = generate(DatasetSpec(patients=patients, seed=seed))
            await store.load(dataset)
            out[org] = (store, dataset)
        yield out


async def run_query(net: Network, hrp: str = "hrp.test", timeout: float = 60.0) -> dict[str, Any]:
    return await net.wait_for_task(hrp, await post_request(net, hrp), "completed", timeout=timeout)


async def post_request(net: Network, hrp: str = "hrp.test") -> str:
    """POST the request Bundle to the HRP; the id of its Task."""
    response = await net.client(hrp).transaction(request_bundle(QUERY, hrp=hrp))
    location = response["entry"][0]["response"]["location"]
    return str(location.split("Task/", 1)[1].split("/")[0])


def dic_results(task: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """DIC identifier → {status, count, error, report} from the request Task's dic-result outputs."""
    out = {}
    for output in task.get("output", []):
        if output["type"]["coding"][0] != {"system": DSF_PY_FEASIBILITY, "code": "dic-result"}:
            continue
        parts = {e["url"]: e for e in output["extension"][0]["extension"]}
        out[parts["organization-identifier"]["valueIdentifier"]["value"]] = {
            "status": output["valueCoding"]["code"],
            "count": parts.get("count", {}).get("valueInteger"),
            "error": parts.get("error-message", {}).get("valueString"),
            "report": parts.get("measure-report-reference", {}).get("valueReference", {}).get("reference"),
        }
    return out


async def aggregated_count(net: Network, task: Mapping[str, Any], hrp: str = "hrp.test") -> int:
    references = [o["valueReference"]["reference"] for o in task["output"]
                  if o["type"]["coding"][0] == {"system": FEASIBILITY, "code": "measure-report-reference"}]
    assert len(references) == 1
    report = await net.client(hrp).read("MeasureReport", references[0].split("/")[1])
    assert check_measure_report(report) == []
    assert report["group"][0]["code"]["coding"][0]["code"] == "aggregated"
    return initial_population_count(report)


ORGS = [OrgSpec("hrp.test", ("HRP",)), OrgSpec("dic1.test", ("DIC",)), OrgSpec("dic2.test", ("DIC",)), OrgSpec("dic3.test", ("DIC",))]


async def test_three_dics_answer_and_the_hrp_aggregates(tmp_path: Path) -> None:
    plain = "[networks.'medizininformatik-initiative.de']\nobfuscate = false\n"
    async with stores(tmp_path, {"dic1.test": 1, "dic2.test": 2, "dic3.test": 3}) as data:
        node_settings = {
            "hrp.test": settings_file(tmp_path, "hrp", 'result_timeout = "PT20S"\n'),
            "dic1.test": settings_file(tmp_path, "dic1", plain),
            "dic2.test": settings_file(tmp_path, "dic2", plain),
        }
        async with Network(tmp_path / "net", organizations=ORGS, plugins=[PLUGIN], node_settings=node_settings,
                           data_stores={org: {"default": store} for org, (store, _) in data.items()}) as net:
            done = await run_query(net)
            assert check_task(done) == []
            results = dic_results(done)
            assert {org: r["status"] for org, r in results.items()} == dict.fromkeys(data, "answered")
            # obfuscation off: the true counts, equal to what the data says
            for org in ("dic1.test", "dic2.test"):
                assert results[org]["count"] == expected_count(data[org][1]), org
            assert len({expected_count(d) for _, d in data.values()}) > 1, "the DICs' data should differ"
            # dic3 obfuscates: tens, never negative
            obfuscated = results["dic3.test"]["count"]
            assert obfuscated % 10 == 0 and obfuscated >= 0
            assert await aggregated_count(net, done) == sum(r["count"] for r in results.values())

            # the wire shapes: the result Tasks at the HRP, the execute Tasks and MeasureReports at the DICs
            for task in await net.search("hrp.test", "Task", {"status": "completed"}):
                assert check_task(task) == [], task
            received = [t for t in await net.search("hrp.test", "Task", {"status": "completed"})
                        if t["input"][0]["valueString"] == "feasibilitySingleDicResultMessage"]
            assert len(received) == 3
            for task in received:  # the live result: the HRP's LOCAL copy, linked on the received Task
                local = task["output"][0]["valueReference"]["reference"]
                copy = await net.client("hrp.test").read("MeasureReport", local.split("/")[1])
                assert [t["code"] for t in copy["meta"]["tag"]] == ["LOCAL"]
            for org in data:
                executed = await net.search(org, "Task", {"status": "completed"})
                assert len(executed) == 1 and check_task(executed[0]) == []
                reports = await net.search(org, "MeasureReport")
                assert len(reports) == 1 and check_measure_report(reports[0]) == []
                # readable by the requesting HRP only: another DIC is refused
                other = "dic1.test" if org != "dic1.test" else "dic2.test"
                assert [r async for r in net.client(other, on=org).search_all("MeasureReport", {})] == []
                assert len([r async for r in net.client("hrp.test", on=org).search_all("MeasureReport", {})]) == 1

            # the same true count gives the same obfuscated count while the node runs
            again = dic_results(await run_query(net))
            assert again["dic3.test"]["count"] == obfuscated
            assert again["dic1.test"]["count"] == results["dic1.test"]["count"]


async def test_rate_limited_and_stopped_dics_are_reported_and_the_request_completes(tmp_path: Path) -> None:
    limited = "[networks.'medizininformatik-initiative.de']\nobfuscate = false\nrate_limit = { count = 1, interval = \"PT1H\" }\n"
    orgs = ORGS[:3]
    async with stores(tmp_path, {"dic1.test": 1, "dic2.test": 2}, patients=30) as data:
        node_settings = {
            "hrp.test": settings_file(tmp_path, "hrp", 'result_timeout = "PT4S"\n'),
            "dic1.test": settings_file(tmp_path, "dic1", limited),
        }
        async with Network(tmp_path / "net", organizations=orgs, plugins=[PLUGIN], node_settings=node_settings,
                           data_stores={org: {"default": store} for org, (store, _) in data.items()}) as net:
            first = dic_results(await run_query(net))
            assert first["dic1.test"] == {"status": "answered", "count": expected_count(data["dic1.test"][1]),
                                          "error": None, "report": first["dic1.test"]["report"]}
            await net.stop_node("dic2.test")
            done = await run_query(net)
            results = dic_results(done)
            assert results["dic1.test"]["status"] == "failed"
            assert results["dic1.test"]["error"] == RATE_LIMIT_EXCEEDED
            assert results["dic2.test"]["status"] in ("not-reachable", "timed-out")
            assert await aggregated_count(net, done) == 0
            # the DIC failed its Task with the Java status reason and sent nothing
            failed = await net.search("dic1.test", "Task", {"status": "failed"})
            assert [t["statusReason"]["text"] for t in failed] == [RATE_LIMIT_EXCEEDED]
            results_at_hrp = [t for t in await net.search("hrp.test", "Task")
                              if t["input"][0]["valueString"] == "feasibilitySingleDicResultMessage"]
            assert len(results_at_hrp) == 2  # round one's answers only


async def test_a_stale_request_task_fails(tmp_path: Path) -> None:
    node_settings = {"hrp.test": settings_file(tmp_path, "hrp", 'request_task_timeout = "PT0.001S"\n')}
    async with Network(tmp_path / "net", organizations=ORGS[:2], plugins=[PLUGIN], node_settings=node_settings) as net:
        failed = await net.wait_for_task("hrp.test", await post_request(net), "failed")
        errors = [o["valueString"] for o in failed["output"] if o["type"]["coding"][0]["code"] == "error"]
        assert len(errors) == 1 and "is stale" in errors[0]
        assert await net.search("dic1.test", "Task") == []


async def test_an_hrp_without_dics_completes_with_a_zero_aggregate(tmp_path: Path) -> None:
    async with Network(tmp_path / "net", organizations=[OrgSpec("hrp.test", ("HRP",))], plugins=[PLUGIN]) as net:
        done = await run_query(net, timeout=30)
        assert dic_results(done) == {}
        assert await aggregated_count(net, done) == 0
