"""The KDS report end to end: 1 HRP and 2 DICs as real nodes on loopback, each DIC with its own data store.

One network serves the whole module (a network takes seconds to start); each test leaves it as it
found it. Expected totals are computed here from the generated objects, never through the plugin
or the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import unquote

import pytest
import pytest_asyncio
from dsf_plugin_report import PLUGIN
from dsf_plugin_report.checker import search_parameters
from dsf_plugin_report.codes import (
    CDS_REPORT_IDENTIFIER,
    HRP_IDENTIFIER,
    ORGANIZATION_IDENTIFIER,
    PROFILE_TASK_AUTOSTART_START,
    PROFILE_TASK_AUTOSTART_STOP,
    PROFILE_TASK_SEND_START,
    REPORT,
    search_bundle_code,
)
from dsf_plugin_report.report import check_report
from dsf_plugin_report.search_bundle import search_bundle
from dsf_plugin_report.status import error_of, status_codes, statuses

from dsf_core.api import tasks
from dsf_core.data import Dataset, DatasetSpec, generate
from dsf_core.network import OrgSpec
from dsf_core.testing.data_store import DataStoreServer
from dsf_core.testing.engine import ManualClock
from dsf_core.testing.network import Network

HRP, DIC1, DIC2 = "hrp.test", "dic1.test", "dic2.test"
MII = "http://medizininformatik-initiative.de"
#: Resource types of the search Bundle that our data-store mode does not serve (their entries fail).
NOT_SERVED = {"ResearchSubject", "ServiceRequest", "Composition", "Media", "FamilyMemberHistory"}
#: Every generated date lies before this day, long before any date the report carries (its timestamps).
REFERENCE_DATE = date(2020, 1, 1)


@dataclass
class Kds:
    net: Network
    data: dict[str, Dataset]
    clock: ManualClock  # the DICs' engine clock: their timers fire when a test moves it


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def kds(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Kds]:
    directory = tmp_path_factory.mktemp("report")
    settings = directory / "report.toml"
    settings.write_text('receipt_timeout = "PT10M"\n')
    # DIC1 reports to the consortium's only HRP; DIC2 names it in its settings
    named = directory / "report-dic2.toml"
    named.write_text('receipt_timeout = "PT10M"\nhrp_identifier = "hrp.test"\n')
    clock = ManualClock(datetime.now(UTC))
    async with contextlib.AsyncExitStack() as stack:
        data, stores = {}, {}
        for org, seed, patients in ((DIC1, 1, 40), (DIC2, 2, 25)):
            store = await stack.enter_async_context(DataStoreServer(directory / f"store-{org}"))
            data[org] = generate(DatasetSpec(patients=patients, seed=seed, id_prefix=f"kds{seed}", reference_date=REFERENCE_DATE))
            await store.load(data[org])
            stores[org] = {"default": store}
        net = await stack.enter_async_context(Network(
            directory / "net", organizations=[OrgSpec(HRP, ("HRP",)), OrgSpec(DIC1, ("DIC",)), OrgSpec(DIC2, ("DIC",))],
            plugins=[PLUGIN], settings={"DSF_PLUGINS_REPORT_CONFIG": str(settings)},
            node_settings={DIC2: {"DSF_PLUGINS_REPORT_CONFIG": str(named)}}, data_stores=stores,
            clocks={DIC1: clock, DIC2: clock},
        ))
        yield Kds(net, data, clock)


# ---------------------------------------------------------------- what the data says

def _codings(value: Any) -> list[Mapping[str, Any]]:
    concepts = value if isinstance(value, list) else [value]
    return [c for concept in concepts if isinstance(concept, Mapping) for c in concept.get("coding", [])]


def _token_matches(codings: list[Mapping[str, Any]], token: str) -> bool:
    system, _, code = token.partition("|")
    return any(c.get("system") == system and (not code or c.get("code") == code) for c in codings)


def _in_year(period: Mapping[str, str], year: int) -> bool:
    moments = [datetime.fromisoformat(period[k].replace("Z", "+00:00")).astimezone(UTC) for k in ("start", "end")]
    return all(m.year == year for m in moments)


#: search parameter → where its value is in a resource of the given type
_ELEMENTS = {"code": lambda r: _codings(r.get("code")), "type": lambda r: _codings(r.get("type")),
             "ingredient-code": lambda r: _codings([i.get("itemCodeableConcept") for i in r.get("ingredient", [])])}


def expected_total(dataset: Dataset, url: str) -> int:
    """The count a FHIR server gives for ``url`` over ``dataset`` (FHIR R4 semantics, on the plain dicts)."""
    path, parameters = search_parameters(url)
    found = dataset.of_type(path)
    for name, raw in parameters:
        value = unquote(raw or "")
        base = name.partition(":")[0]
        if base == "_profile":
            found = [r for r in found if any(p == value or p.startswith(value + "|") for p in r.get("meta", {}).get("profile", []))]
        elif base in _ELEMENTS:
            found = [r for r in found if _token_matches(_ELEMENTS[base](r), value)]
        elif base == "date":
            found = [r for r in found if _in_year(r["period"], int(value.removeprefix("eq")))]
        else:
            assert base == "_summary", url
    return len(found)


# ---------------------------------------------------------------- talking to the network

async def report_round(
    net: Network, dic: str, *, inputs: tuple[dict[str, Any], ...] = (), status: str = "completed"
) -> dict[str, Any]:
    """``reportSendStart`` at ``dic``; the start Task once it ended with ``status``."""
    task = net.start_task(dic, f"{MII}/bpe/Process/reportSend|1.1", "reportSendStart",
                          profile=f"{PROFILE_TASK_SEND_START}|1.1", inputs=list(inputs))
    posted = await net.post_task(dic, task)
    return await net.wait_for_task(dic, posted["id"], status, timeout=60)


async def reports_at_hrp(net: Network, dic: str) -> list[dict[str, Any]]:
    return await net.search(HRP, "Bundle", {"identifier": f"{CDS_REPORT_IDENTIFIER}|{dic}"})


def one_status(task: Mapping[str, Any]) -> tuple[str, str | None]:
    [output] = statuses(task, "output")
    return output["valueCoding"]["code"], error_of(output)


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout} s in vain for {what}")
        await asyncio.sleep(0.05)


def wake(net: Network, organization: str) -> None:
    """Let the node's engine look at the (moved) clock now."""
    engine = net.node(organization).engine
    assert engine is not None
    engine.wake()


def error_outputs(task: Mapping[str, Any]) -> list[str]:
    return [o["valueString"] for o in task.get("output", []) if o["type"]["coding"][0]["code"] == "error"]


# ---------------------------------------------------------------- the tests

async def test_each_dic_holds_one_current_report_at_the_hrp_with_the_true_totals(kds: Kds) -> None:
    net = kds.net
    done = await asyncio.gather(report_round(net, DIC1), report_round(net, DIC2))
    assert [one_status(t) for t in done] == [("receipt-ok", None)] * 2
    urls = [e["request"]["url"] for e in search_bundle()["entry"]]
    for dic in (DIC1, DIC2):
        [report] = await reports_at_hrp(net, dic)
        assert check_report(report) == []
        assert [t["code"] for t in report["meta"]["tag"]] == ["LOCAL", "ORGANIZATION"]
        assert report["meta"]["tag"][1]["extension"][0]["valueIdentifier"]["value"] == dic
        assert len(report["entry"]) == len(urls)
        for url, entry in zip(urls, report["entry"], strict=True):
            if url == "metadata":
                statement = entry["resource"]
                assert (statement["resourceType"], statement["software"]["name"]) == ("CapabilityStatement", "dsf-py")
                assert "Encounter" in {r["type"] for r in statement["rest"][0]["resource"]}
                continue
            assert entry["resource"]["link"] == [{"relation": "self", "url": url}]
            if search_parameters(url)[0] in NOT_SERVED:
                assert entry["response"]["status"].startswith("4"), url
                assert entry["resource"]["total"] == 0
            else:
                assert entry["response"] == {"status": "200"}, url
                assert entry["resource"]["total"] == expected_total(kds.data[dic], url), (dic, url)
        # the counts say something: the data's Encounters, Conditions and yearly Encounters are in it
        totals = {url: e["resource"].get("total") for url, e in zip(urls, report["entry"], strict=True)}
        assert totals[next(u for u in urls if u.startswith("Condition?code=http://fhir.de/CodeSystem/bfarm/icd-10-gm|"))] > 0
        assert sum(v for u, v in totals.items() if u.startswith("Encounter?date=")) > 0
        # readable by that DIC, not by the other one
        other = DIC2 if dic == DIC1 else DIC1
        assert len([r async for r in net.client(dic, on=HRP).search_all("Bundle", {"identifier": f"{CDS_REPORT_IDENTIFIER}|{dic}"})]) == 1
        assert [r async for r in net.client(other, on=HRP).search_all("Bundle", {"identifier": f"{CDS_REPORT_IDENTIFIER}|{dic}"})] == []
    versions = {dic: int((await reports_at_hrp(net, dic))[0]["meta"]["versionId"]) for dic in (DIC1, DIC2)}

    # a second round: a new version of the same report, not a second one
    again = await report_round(net, DIC1)
    assert one_status(again) == ("receipt-ok", None)
    [report] = await reports_at_hrp(net, DIC1)
    assert int(report["meta"]["versionId"]) == versions[DIC1] + 1
    assert len(await reports_at_hrp(net, DIC2)) == 1
    # the DIC's own copy: one living report on its mailbox, readable by the HRP, not by the other DIC
    query = {"identifier": f"{CDS_REPORT_IDENTIFIER}|{DIC1}"}
    [own] = await net.search(DIC1, "Bundle", query)
    assert [e["resource"].get("total") for e in own["entry"]] == [e["resource"].get("total") for e in report["entry"]]
    assert len([r async for r in net.client(HRP, on=DIC1).search_all("Bundle", query)]) == 1
    assert [r async for r in net.client(DIC2, on=DIC1).search_all("Bundle", query)] == []
    # the Tasks at the HRP: received, receive-ok
    received = [t for t in await net.search(HRP, "Task", {"status": "completed"}) if tasks.message_input(t, "message-name") == "reportSend"]
    assert received and all(status_codes(t) == ["receive-ok"] for t in received)


async def test_the_report_carries_no_patient_data(kds: Kds) -> None:
    if not await reports_at_hrp(kds.net, DIC2):
        await report_round(kds.net, DIC2)
    [report] = await reports_at_hrp(kds.net, DIC2)
    text = json.dumps(report, ensure_ascii=False)
    dataset = kds.data[DIC2]
    for patient in dataset.patients:
        assert patient["id"] not in text and patient["birthDate"] not in text
        for name in patient["name"]:
            for part in (name["family"], *name["given"]):
                assert re.search(rf"\b{re.escape(part)}\b", text) is None, part
    assert "kds2-" not in text  # no id of any generated resource either


async def test_a_search_bundle_breaking_a_rule_stops_the_dic_before_any_search(kds: Kds) -> None:
    net = kds.net
    hrp = net.client(HRP)
    [published] = await net.search(HRP, "Bundle", {"identifier": f"{REPORT}|{search_bundle_code()}"})
    tampered = json.loads(json.dumps(published))
    tampered["entry"].insert(3, {"request": {"method": "GET", "url": "Condition?code=http://fhir.de/CodeSystem/bfarm/icd-10-gm|C50.9&_summary=count"}})
    await hrp.update(tampered)
    try:
        failed = await report_round(net, DIC1, status="failed")
    finally:
        await hrp.update({**published, "id": published["id"]})
    assert error_outputs(failed) == [
        "checkSearchBundle (dsf_plugin_report.send.CheckSearchBundle) failed: search Bundle of HRP hrp.test refused - "
        "search Bundle rule 'token-system' broken by Bundle.entry[3] ('Condition?code=http://fhir.de/CodeSystem/bfarm/icd-10-gm|C50.9"
        "&_summary=count'): code search parameter not limited to a system (system|): [code=http://fhir.de/CodeSystem/bfarm/icd-10-gm|C50.9]"]
    assert statuses(failed, "output") == []


async def test_a_named_hrp_must_be_an_hrp_of_the_consortium(kds: Kds) -> None:
    not_hrp = tasks.parameter(REPORT, HRP_IDENTIFIER, "Reference", {
        "type": "Organization", "identifier": {"system": ORGANIZATION_IDENTIFIER, "value": DIC2}})
    failed = await report_round(kds.net, DIC1, inputs=(not_hrp,), status="failed")
    assert error_outputs(failed) == [
        "selectTargetHrp (dsf_plugin_report.send.SelectTargetHrp) failed: HRP dic2.test (the Task's hrp-identifier) "
        "is no active HRP of medizininformatik-initiative.de with an endpoint (HRPs: hrp.test)"]


async def test_a_report_the_hrp_cannot_read_is_answered_with_receipt_error(kds: Kds) -> None:
    """A reportSend pointing somewhere else than the sender's mailbox: receive-error at the HRP, receipt-error back."""
    net = kds.net
    business_key = "a-report-elsewhere"
    elsewhere = {"reference": "https://elsewhere.test/fhir/Bundle/1", "type": "Bundle"}
    task = net.start_task(DIC1, f"{MII}/bpe/Process/reportReceive|1.1", "reportSend",
                          profile=f"{MII}/fhir/StructureDefinition/task-report-send|1.1", inputs=[
                              tasks.parameter(tasks.BPMN_MESSAGE, "business-key", "String", business_key),
                              tasks.parameter(REPORT, "search-bundle-response-reference", "Reference", elsewhere)])
    task["restriction"]["recipient"][0]["identifier"]["value"] = HRP
    received = await net.client(DIC1, on=HRP).create(task, minimal=False)
    assert received.resource is not None
    failed = await net.wait_for_task(HRP, received.resource["id"], "failed")
    assert one_status(failed) == ("receive-error", "Download report failed")

    async def answered() -> bool:
        return any(tasks.message_input(t, "business-key") == business_key for t in await net.search(DIC1, "Task"))

    await until(answered, "the receipt at the DIC")
    [receipt] = [t for t in await net.search(DIC1, "Task") if tasks.message_input(t, "business-key") == business_key]
    assert tasks.message_input(receipt, "message-name") == "reportReceive"
    [status] = statuses(receipt, "input")
    assert (status["valueCoding"]["code"], error_of(status)) == ("receipt-error", "Download report failed")
    assert [] == [r for r in await reports_at_hrp(net, DIC1) if "elsewhere" in json.dumps(r)]


async def test_an_hrp_that_never_answers_gives_receipt_missing(kds: Kds) -> None:
    net = kds.net
    await net.node(HRP).stop_engine()  # the mailbox still serves the search Bundle and takes the Task
    try:
        task = net.start_task(DIC1, f"{MII}/bpe/Process/reportSend|1.1", "reportSendStart", profile=f"{PROFILE_TASK_SEND_START}|1.1")
        posted = await net.post_task(DIC1, task)

        async def sent() -> bool:
            return any(tasks.message_input(t, "message-name") == "reportSend"
                       for t in await net.search(HRP, "Task", {"status": "requested"}))

        await until(sent, "the report at the HRP")  # sent, and not going to be answered
        kds.clock.advance(minutes=10, seconds=1)  # receipt_timeout = PT10M
        wake(net, DIC1)
        failed = await net.wait_for_task(DIC1, posted["id"], "failed")
    finally:
        await net.node(HRP).start_engine()
    assert one_status(failed) == ("receipt-missing", None)


async def test_a_stopped_hrp_gives_not_reachable(kds: Kds) -> None:
    net = kds.net
    await net.stop_node(HRP)
    try:
        failed = await report_round(net, DIC1, status="failed")
    finally:
        await net.start_node(HRP)
    assert one_status(failed) == ("not-reachable", "Download search bundle failed")
    assert len(error_outputs(failed)) == 1 and "Download search bundle" in error_outputs(failed)[0]


async def test_autostart_reports_every_interval_until_stopped(kds: Kds) -> None:
    net, clock = kds.net, kds.clock

    async def rounds() -> int:
        return len([t for t in await net.search(DIC2, "Task", {"status": "completed"})
                    if tasks.message_input(t, "message-name") == "reportSendStart"])

    async def wait_for_rounds(count: int) -> None:
        async def reached() -> bool:
            return await rounds() == count

        await until(reached, f"{count} report rounds at {DIC2}")

    start = net.start_task(DIC2, f"{MII}/bpe/Process/reportAutostart|1.1", "reportAutostartStart",
                           profile=f"{PROFILE_TASK_AUTOSTART_START}|1.1", inputs=[
                               tasks.parameter(REPORT, "timer-interval", "String", "P7D"),
                               tasks.parameter(REPORT, HRP_IDENTIFIER, "Reference", {
                                   "type": "Organization", "identifier": {"system": ORGANIZATION_IDENTIFIER, "value": HRP}}),
                           ])
    first = await rounds()
    version = int((await reports_at_hrp(net, DIC2) or [{"meta": {"versionId": "0"}}])[0]["meta"]["versionId"])
    autostart = await net.post_task(DIC2, start)
    await wait_for_rounds(first + 1)  # at once
    for n in (2, 3):
        clock.advance(days=7, seconds=1)  # due times are stored to the millisecond, rounded up
        wake(net, DIC2)
        await wait_for_rounds(first + n)
    [report] = await reports_at_hrp(net, DIC2)
    assert int(report["meta"]["versionId"]) == version + 3

    stop = net.start_task(DIC2, f"{MII}/bpe/Process/reportAutostart|1.1", "reportAutostartStop",
                          profile=f"{PROFILE_TASK_AUTOSTART_STOP}|1.1")
    await net.wait_for_task(DIC2, (await net.post_task(DIC2, stop))["id"], "completed")
    await net.wait_for_task(DIC2, autostart["id"], "completed")
    engine = net.node(DIC2).engine
    assert engine is not None and await engine.store.next_due() is None  # no timer left: no more rounds
    assert await rounds() == first + 3
