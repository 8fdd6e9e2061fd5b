"""``dsf demo``: a whole DSF network on this machine running the MII processes end to end.

Five organisations under the parent ``medizininformatik-initiative.de`` — an HRP, a DMS and
three DICs — each a real node (mailbox + engine) on loopback with real mTLS, each DIC with
its own data store of synthetic patients (SQLite; nothing external). Then, phase by phase:

1. ping: every organisation pings every other (``dsfdev_ping``);
2. feasibility: the HRP asks the three DICs how many women with hypertension and without
   type 2 diabetes they have (``medizininformatik-initiativede_feasibilityRequest``);
3. data transfer: DIC 1 sends a project's CSV file encrypted to the DMS
   (``medizininformatik-initiativede_dataSend``);
4. KDS report: every DIC reports counts of its data store to the HRP
   (``medizininformatik-initiativede_reportSend``).

Each start Task posted is one result: its process, organisation, final status, the codes of
its outputs and its wall time; the demo succeeds when every one ended as expected.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dsf_core.api.plugin import ProcessPlugin
from dsf_core.api.tasks import organization_reference, parameter
from dsf_core.data import DatasetSpec, generate
from dsf_core.network import OrgSpec
from dsf_core.testing.data_store import DataStoreServer
from dsf_core.testing.network import Network, TaskTimeout

__all__ = ["DEMO_ORGANIZATIONS", "Demo", "DemoError", "DemoResult"]

log = logging.getLogger("dsf.demo")

PARENT = "medizininformatik-initiative.de"
HRP, DMS = "hrp.demo", "dms.demo"
DICS = ("dic-1.demo", "dic-2.demo", "dic-3.demo")
DEMO_ORGANIZATIONS = (OrgSpec(HRP, ("HRP",)), OrgSpec(DMS, ("DMS",)), *(OrgSpec(d, ("DIC",)) for d in DICS))

MII = "http://medizininformatik-initiative.de"
PROJECT_SYSTEM = f"{MII}/sid/project-identifier"
PROJECT = "demo-project"
DSF_PY_FEASIBILITY = "http://dsf-py.dev/fhir/CodeSystem/feasibility"
ICD = "http://fhir.de/CodeSystem/bfarm/icd-10-gm"

#: (distribution module, attribute) of the plugins the demo runs.
PLUGINS = {
    "ping_pong": ("dsf_plugin_ping_pong", "PLUGIN"),
    "feasibility": ("dsf_plugin_feasibility", "PLUGIN"),
    "data_transfer": ("dsf_plugin_data_transfer", "PLUGIN"),
    "report": ("dsf_plugin_report", "PLUGIN"),
}


class DemoError(Exception):
    """The demo cannot run (a plugin is missing, the network does not start); the message says why."""


@dataclass
class DemoResult:
    process: str
    organization: str
    task_status: str
    codes: list[str]
    seconds: float
    ok: bool
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"process": self.process, "organization": self.organization, "task_status": self.task_status,
                "codes": self.codes, "seconds": round(self.seconds, 2)}


def _output_codes(task: Mapping[str, Any]) -> list[str]:
    """The code of each output: its Coding value, else its type (e.g. measure-report-reference); unique, in order."""
    codes: list[str] = []
    for output in task.get("output", []):
        coding = output.get("valueCoding")
        code = coding.get("code") if isinstance(coding, dict) else output.get("type", {}).get("coding", [{}])[0].get("code")
        if isinstance(code, str) and code not in codes:
            codes.append(code)
    return codes


def load_plugins(names: Iterable[str] = PLUGINS) -> list[ProcessPlugin]:
    plugins = []
    for name in names:
        module_name, attribute = PLUGINS[name]
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise DemoError(f"the {name} plugin ({module_name}) is not installed: {exc}; run `make setup`") from None
        plugins.append(getattr(module, attribute))
    return plugins


@dataclass
class Check:
    """What a start Task must look like when its process ended as expected."""

    status: str = "completed"
    codes: Callable[[Mapping[str, Any]], str | None] = lambda task: None  # a problem, or None


@dataclass
class Demo:
    directory: Path
    patients: int = 200
    progress: Callable[[str], None] = print
    timeout: float = 90.0
    results: list[DemoResult] = field(default_factory=list)
    network: Network | None = None
    stores: dict[str, DataStoreServer] = field(default_factory=dict)

    # ------------------------------------------------------------------ set-up

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Network]:
        """Data stores, keys and the network; torn down on exit."""
        plugins = load_plugins()
        started = time.monotonic()
        async with contextlib.AsyncExitStack() as stack:
            self.progress(f"data stores: {len(DICS)} DICs × {self.patients} synthetic patients, one for the DMS")
            for org in (*DICS, DMS):
                self.stores[org] = await stack.enter_async_context(DataStoreServer(self.directory / "stores" / org))
            for index, dic in enumerate(DICS, start=1):
                await self.stores[dic].load(generate(DatasetSpec(patients=self.patients, seed=index, id_prefix=f"d{index}")))
            await self._offer_project(self.stores[DICS[0]])
            key = await asyncio.to_thread(_dms_key, self.directory / "keys")
            self.progress(f"network: {', '.join(o.identifier + ' (' + '+'.join(o.roles) + ')' for o in DEMO_ORGANIZATIONS)}")
            transfer = self.directory / "data-transfer"
            transfer.mkdir(parents=True, exist_ok=True)
            (transfer / "dms.toml").write_text(f'dms_private_key = "{key}"\n')
            (transfer / "dic.toml").write_text('receipt_timeout = "PT60S"\n')
            network = Network(
                self.directory / "network", organizations=DEMO_ORGANIZATIONS, parent=PARENT, plugins=plugins,
                data_stores={org: {"default": store} for org, store in self.stores.items()},
                node_settings={org.identifier: {"DSF_PLUGINS_DATA_TRANSFER_CONFIG": str(
                    transfer / ("dms.toml" if org.identifier == DMS else "dic.toml"))} for org in DEMO_ORGANIZATIONS},
            )
            self.network = await stack.enter_async_context(network)
            self.progress(f"ready in {time.monotonic() - started:.1f} s")
            yield self.network

    async def _offer_project(self, store: DataStoreServer) -> None:
        """What a DIC's extraction leaves for the DMS: a CSV file and the project's DocumentReference."""
        client = store.client()
        csv = "site,patients\r\ndic-1.demo,%d\r\n" % self.patients
        binary = await client.create_binary(csv.encode(), content_type="text/csv")
        await client.create({
            "resourceType": "DocumentReference", "status": "current", "date": "2026-11-01T10:00:00+01:00",
            "masterIdentifier": {"system": PROJECT_SYSTEM, "value": PROJECT},
            "content": [{"attachment": {"contentType": "text/csv", "url": f"Binary/{binary.id}"}}],
        })

    # ------------------------------------------------------------------ phases

    async def run(self) -> list[DemoResult]:
        async with self.running() as net:
            await self.run_phases(net)
        return self.results

    async def run_phases(self, net: Network) -> None:
        await self._phase("ping", [self._ping(net, org.identifier) for org in DEMO_ORGANIZATIONS])
        await self._phase("feasibility", [self._feasibility(net)])
        await self._phase("data transfer", [self._data_transfer(net)])
        await self._phase("KDS report", [self._report(net, dic) for dic in DICS])

    async def _phase(self, name: str, runs: Sequence[Awaitable[DemoResult]]) -> None:
        self.progress(f"▸ {name}")
        for result in await asyncio.gather(*runs):
            self.results.append(result)
            mark = "✓" if result.ok else "✗"
            detail = f" — {result.detail}" if result.detail else ""
            self.progress(f"  {mark} {result.organization:<11} {result.task_status:<9} {', '.join(result.codes) or '-'}"
                          f" ({result.seconds:.1f} s){detail}")

    async def _await(self, net: Network, organization: str, process: str, task_id: str, started: float,
                     check: Check) -> DemoResult:
        try:
            task = await net.wait_for_task(organization, task_id, timeout=self.timeout)
        except TaskTimeout as exc:
            return DemoResult(process, organization, "timeout", [], time.monotonic() - started, False, str(exc)[:200])
        seconds = time.monotonic() - started
        problem = None if task.get("status") == check.status else f"expected {check.status}"
        problem = problem or check.codes(task)
        if task.get("status") == "failed":
            errors = [o.get("valueString") for o in task.get("output", []) if "valueString" in o]
            problem = "; ".join(str(e) for e in errors if e) or problem
        return DemoResult(process, organization, str(task.get("status")), _output_codes(task), seconds,
                          problem is None, problem or "")

    async def _start(self, net: Network, organization: str, task: Mapping[str, Any]) -> tuple[str, float]:
        started = time.monotonic()
        created = await net.post_task(organization, task)
        return str(created["id"]), started

    async def _ping(self, net: Network, organization: str) -> DemoResult:
        task = net.start_task(organization, "http://dsf.dev/bpe/Process/ping|1.0", "startPing",
                              profile="http://dsf.dev/fhir/StructureDefinition/task-start-ping|1.0")
        task_id, started = await self._start(net, organization, task)
        others = len(DEMO_ORGANIZATIONS) - 1

        def pongs(done: Mapping[str, Any]) -> str | None:
            codes = [o["valueCoding"]["code"] for o in done.get("output", []) if "valueCoding" in o]
            return None if codes == ["pong-received"] * others else f"expected {others}× pong-received, got {codes}"

        return await self._await(net, organization, "dsfdev_ping", task_id, started, Check(codes=pongs))

    async def _feasibility(self, net: Network) -> DemoResult:
        from dsf_plugin_feasibility.bundles import request_bundle  # type: ignore[import-untyped,unused-ignore]

        started = time.monotonic()
        response = await net.client(HRP).transaction(request_bundle(FEASIBILITY_QUERY, hrp=HRP))
        location = str(response["entry"][0]["response"]["location"])
        task_id = location.split("Task/", 1)[1].split("/")[0]

        def answered(done: Mapping[str, Any]) -> str | None:
            statuses = [o["valueCoding"]["code"] for o in done.get("output", [])
                        if o["type"]["coding"][0] == {"system": DSF_PY_FEASIBILITY, "code": "dic-result"}]
            return None if statuses == ["answered"] * len(DICS) else f"DIC results {statuses}"

        return await self._await(net, HRP, "medizininformatik-initiativede_feasibilityRequest", task_id, started,
                                 Check(codes=answered))

    async def _data_transfer(self, net: Network) -> DemoResult:
        dic = DICS[0]
        task = net.start_task(
            dic, f"{MII}/bpe/Process/dataSend|1.0", "dataSendStart",
            profile=f"{MII}/fhir/StructureDefinition/task-data-send-start|1.0",
            inputs=[
                parameter(f"{MII}/fhir/CodeSystem/data-transfer", "dms-identifier", "Reference", organization_reference(DMS)),
                parameter(f"{MII}/fhir/CodeSystem/data-transfer", "project-identifier", "Identifier",
                          {"system": PROJECT_SYSTEM, "value": PROJECT}),
            ],
        )
        task_id, started = await self._start(net, dic, task)
        return await self._await(net, dic, "medizininformatik-initiativede_dataSend", task_id, started,
                                 Check(codes=_expect_code("receipt-ok")))

    async def _report(self, net: Network, dic: str) -> DemoResult:
        task = net.start_task(
            dic, f"{MII}/bpe/Process/reportSend|1.1", "reportSendStart",
            profile=f"{MII}/fhir/StructureDefinition/task-report-send-start|1.1",
            inputs=[parameter(f"{MII}/fhir/CodeSystem/report", "hrp-identifier", "Reference", organization_reference(HRP))],
        )
        task_id, started = await self._start(net, dic, task)
        return await self._await(net, dic, "medizininformatik-initiativede_reportSend", task_id, started,
                                 Check(codes=_expect_code("receipt-ok")))


def _expect_code(code: str) -> Callable[[Mapping[str, Any]], str | None]:
    def check(task: Mapping[str, Any]) -> str | None:
        codes = _output_codes(task)
        return None if code in codes else f"expected {code}, got {codes}"

    return check


def _dms_key(directory: Path) -> Path:
    """The DMS's RSA-4096 private key (made once per demo directory, as `dsf keys create` makes it)."""
    from dsf_core.cli.keys import create_key_pair

    path = directory / "dms.key"
    return path if path.exists() else create_key_pair(directory)[0]


def _code(system: str, code: str, display: str) -> dict[str, str]:
    return {"system": system, "code": code, "display": display}


#: Women with hypertension, without type 2 diabetes (a structured query as the FDPG portal sends it).
FEASIBILITY_QUERY: dict[str, Any] = {
    "version": "http://to_be_decided.com/draft-1/schema#",
    "inclusionCriteria": [
        [{"termCodes": [_code("http://snomed.info/sct", "263495000", "Geschlecht")],
          "context": _code("fdpg.mii.cds", "Patient", "Patient"),
          "valueFilter": {"type": "concept",
                          "selectedConcepts": [_code("http://hl7.org/fhir/administrative-gender", "female", "Female")]}}],
        [{"termCodes": [_code(ICD, "I10", "Essential (primary) hypertension")]}],
    ],
    "exclusionCriteria": [[{"termCodes": [_code(ICD, "E11.9", "Type 2 diabetes mellitus")]}]],
}
