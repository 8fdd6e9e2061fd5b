"""HRP side: ``medizininformatik-initiativede_feasibilityRequest``.

The request Task (posted with its Measure and Library by the FDPG backend) fans out to every
active DIC member of the HRP's network, one branch per DIC with its own correlation key. Each
DIC answers with a MeasureReport on its own mailbox; the branch downloads it, keeps a copy
(tag ``LOCAL``) and links it as ``measure-report-reference`` on the received result Task, as
the Java plugin does.

Beyond the Java plugin (whose HRP leaves aggregation to the portal): when every branch has
ended, the request Task gets an aggregated MeasureReport (group code ``aggregated``, the sum of
the answered counts) as its ``measure-report-reference`` output, and one ``dic-result`` output
per DIC saying ``answered``, ``timed-out``, ``failed`` (the DIC failed our Task: its reason is
read from the Task at the DIC), ``not-allowed`` or ``not-reachable``.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from dsf_core.api import (
    BpmnError,
    FhirClientError,
    MessageSend,
    ProcessPluginApi,
    ServiceTask,
    Target,
    Targets,
    Variables,
    classify,
    tasks,
)

from dsf_plugin_feasibility.common import (
    DSF_PY_DIC_STATUS,
    DSF_PY_FEASIBILITY,
    EXT_DIC_RESULT,
    FEASIBILITY,
    ORGANIZATION_IDENTIFIER,
    READ_ACCESS_TAG,
    fhir_instant,
    initial_population_count,
    parents_with_role,
    settings_of,
    summary_report,
)
from dsf_plugin_feasibility.config import FeasibilitySettings

log = logging.getLogger("dsf.plugin.feasibility")


def _duration_text(seconds: float) -> str:
    return f"PT{seconds:g}S"


async def _requested_at(api: ProcessPluginApi, task: dict[str, Any]) -> datetime | None:
    """When the Task was stored with status ``requested`` (from its history), else its authoredOn."""
    local = api.fhir.local()
    history = await local.read_url(local.url(f"Task/{task['id']}/_history"))
    stamps = [
        entry["resource"]["meta"]["lastUpdated"]
        for entry in history.get("entry", [])
        if entry.get("resource", {}).get("status") == "requested" and entry["resource"].get("meta", {}).get("lastUpdated")
    ]
    text = min(stamps) if stamps else task.get("authoredOn")
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if isinstance(text, str) and "T" in text else None


class SelectRequestTargets(ServiceTask):
    """Stale check, the HRP's network, one target per DIC member; ``measure-id`` = absolute Measure URL."""

    async def execute(self, api: ProcessPluginApi, variables: Variables) -> None:
        settings: FeasibilitySettings = settings_of(api)
        start = variables.start_task
        requested = await _requested_at(api, start)
        if requested is not None and api.now() - requested > settings.request_task_timeout:
            raise BpmnError(
                "stale_task",
                f"Task/{start.get('id')} is stale: requested at {requested.isoformat()}, older than "
                f"{settings.request_task_timeout} (plugins.feasibility.request_task_timeout)",
            )
        parents = await parents_with_role(api, api.organization_identifier, "HRP")
        if len(parents) != 1:
            raise BpmnError(
                "no_network",
                f"{api.organization_identifier} must be HRP in exactly one parent organisation, is HRP in "
                f"{len(parents)}: {', '.join(parents) or 'none'}",
            )
        reference = tasks.first_input(start, FEASIBILITY, "measure-reference") or {}
        measure = reference.get("reference") if isinstance(reference, dict) else None
        if not isinstance(measure, str) or "Measure/" not in measure:
            raise BpmnError("invalid_request", "the request Task has no measure-reference input to a Measure")
        measure_url = measure if measure.startswith(("http://", "https://")) else f"{api.endpoint_url}/{measure}"
        targets = await api.targets.members(parents[0], "DIC")
        log.info("feasibility %s: asking %d DIC(s) of %s: %s", variables.business_key, len(targets), parents[0],
                 ", ".join(t.organization_identifier for t in targets) or "none")
        variables.set("measure-id", measure_url)
        variables.set("dicResultTimeout", _duration_text(settings.result_timeout.total_seconds()))
        variables.set_targets(targets)


class SendDicRequest(MessageSend):
    """``feasibilityExecuteMessage`` with ``measure-reference`` = the absolute URL of our Measure."""

    def additional_inputs(self, api: ProcessPluginApi, variables: Variables, target: Target) -> list[dict[str, Any]]:
        return [tasks.parameter(FEASIBILITY, "measure-reference", "Reference", {"reference": variables.get("measure-id")})]

    async def on_sent(self, api: ProcessPluginApi, variables: Variables, target: Target, task_url: str) -> None:
        variables.set(f"sentTask_{target.correlation_key}", task_url)

    async def on_send_error(self, api: ProcessPluginApi, variables: Variables, target: Target, error: FhirClientError) -> None:
        log.warning("feasibility request to %s (%s) not sent: %s", target.organization_identifier, target.endpoint_url, error)
        variables.set("sendError", True)
        _record(variables, target, classify(error), error=str(error))


def _record(variables: Variables, target: Target, status: str, *, count: int | None = None,
            report: str | None = None, error: str | None = None) -> None:
    key = target.correlation_key
    variables.set(f"dicStatus_{key}", status)
    if count is not None:
        variables.set(f"dicCount_{key}", count)
    if report is not None:
        variables.set(f"dicReport_{key}", report)
    if error is not None:
        variables.set(f"dicError_{key}", error)


def _branch_target(variables: Variables) -> Target:
    target = variables.target
    if target is None:
        raise LookupError("no variable 'target' in this branch")
    return target


class DownloadMeasureReport(ServiceTask):
    """Reads the MeasureReport the received result Task points to, from the DIC's mailbox."""

    async def execute(self, api: ProcessPluginApi, variables: Variables) -> None:
        result = variables.latest_task
        reference = tasks.first_input(result, FEASIBILITY, "measure-report-reference") or {}
        url = reference.get("reference") if isinstance(reference, dict) else None
        if not isinstance(url, str) or "/MeasureReport/" not in url:
            raise BpmnError("invalid_result", f"result Task/{result.get('id')} has no absolute measure-report-reference")
        base, _, rest = url.rpartition("/MeasureReport/")
        report = await api.fhir.by_url(base).read("MeasureReport", rest.split("/")[0])
        variables.set("measureReport", report)


class StoreLiveResult(ServiceTask):
    """Keeps a LOCAL copy of the DIC's MeasureReport and links it on the received result Task."""

    async def execute(self, api: ProcessPluginApi, variables: Variables) -> None:
        target = _branch_target(variables)
        report = dict(variables.get("measureReport") or {})
        count = initial_population_count(report)
        report.pop("id", None)
        meta = dict(report.get("meta", {}))
        meta.pop("versionId", None)
        meta.pop("lastUpdated", None)
        meta["tag"] = [{"system": READ_ACCESS_TAG, "code": "LOCAL"}]
        report["meta"] = meta
        created = await api.fhir.local().create(report)
        result = variables.latest_task
        tasks.add_output(result, FEASIBILITY, "measure-report-reference", "Reference",
                         {"reference": f"MeasureReport/{created.id}"})
        await variables.update_task(result)
        variables.remove("measureReport")
        log.info("feasibility %s: %s answered %d", variables.business_key, target.organization_identifier, count)
        _record(variables, target, "answered", count=count, report=f"MeasureReport/{created.id}")


class LogReceiveTimeout(ServiceTask):
    """No answer in time: if the DIC failed our Task, say so with its reason; else ``timed-out``."""

    async def execute(self, api: ProcessPluginApi, variables: Variables) -> None:
        target = _branch_target(variables)
        url = variables.get(f"sentTask_{target.correlation_key}")
        status, reason = "timed-out", f"no answer within {variables.get('dicResultTimeout')}"
        if isinstance(url, str):
            try:
                remote = await api.fhir.by_url(url.rsplit("/Task/", 1)[0]).read_url(url)
            except FhirClientError as error:
                log.info("feasibility %s: cannot read %s: %s", variables.business_key, url, error)
            else:
                if remote.get("status") == "failed":
                    status = "failed"
                    reason = remote.get("statusReason", {}).get("text") or next(
                        (o.get("valueString") for o in remote.get("output", [])
                         if any(c.get("code") == "error" for c in o.get("type", {}).get("coding", []))),
                        "the DIC failed the request Task",
                    )
        log.warning("feasibility %s: %s (%s): %s: %s", variables.business_key, target.organization_identifier,
                    target.endpoint_url, status, reason)
        _record(variables, target, status, error=reason)


class AggregateResults(ServiceTask):
    """The aggregated MeasureReport and one ``dic-result`` output per DIC on the request Task."""

    async def execute(self, api: ProcessPluginApi, variables: Variables) -> None:
        start = variables.start_task
        targets: Targets = variables.targets
        total = 0
        for target in targets:
            key = target.correlation_key
            status = str(variables.get(f"dicStatus_{key}", "timed-out"))
            count = variables.get(f"dicCount_{key}")
            if status == "answered" and isinstance(count, int):
                total += count
            parts: list[dict[str, Any]] = [{
                "url": "organization-identifier",
                "valueIdentifier": {"system": ORGANIZATION_IDENTIFIER, "value": target.organization_identifier},
            }]
            if variables.get(f"dicReport_{key}"):
                parts.append({"url": "measure-report-reference", "valueReference": {"reference": variables.get(f"dicReport_{key}")}})
            if isinstance(count, int):
                parts.append({"url": "count", "valueInteger": count})
            if variables.get(f"dicError_{key}"):
                parts.append({"url": "error-message", "valueString": str(variables.get(f"dicError_{key}"))})
            tasks.add_output(start, DSF_PY_FEASIBILITY, "dic-result", "Coding", {"system": DSF_PY_DIC_STATUS, "code": status},
                             extension=[{"url": EXT_DIC_RESULT, "extension": parts}])
        report = summary_report(str(variables.get("measure-id")), total, fhir_instant(api), group_code="aggregated")
        report["meta"]["tag"] = [{"system": READ_ACCESS_TAG, "code": "LOCAL"}]
        created = await api.fhir.local().create(report)
        tasks.add_output(start, FEASIBILITY, "measure-report-reference", "Reference", {"reference": f"MeasureReport/{created.id}"})
        answered = sum(1 for t in targets if variables.get(f"dicStatus_{t.correlation_key}") == "answered")
        log.info("feasibility %s: %d of %d DIC(s) answered, total %d", variables.business_key, answered, len(targets), total)
