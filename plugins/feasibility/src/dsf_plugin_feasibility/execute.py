"""DIC side: ``medizininformatik-initiativede_feasibilityExecute``.

Settings of the requester's network → rate limit (hard: once exceeded, every request fails
until the node restarts, as in Java) → Measure + Library from the HRP → evaluation on the
network's data stores (structured query and/or CQL, summed) → optional obfuscation →
MeasureReport on our mailbox readable only by the requester → ``feasibilitySingleDicResultMessage``.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from dsf_core.api import BpmnError, MessageSend, ProcessPluginApi, ServiceTask, Target, Variables, tasks

from dsf_plugin_feasibility.common import (
    EXT_READ_ACCESS_ORGANIZATION,
    FEASIBILITY,
    ORGANIZATION_IDENTIFIER,
    READ_ACCESS_TAG,
    fhir_instant,
    initial_population_count,
    parents_with_role,
    settings_of,
    summary_report,
)
from dsf_plugin_feasibility.config import NetworkSettings, RateLimitSettings
from dsf_plugin_feasibility.evaluation import EvaluationStore, LaplaceObfuscator, evaluate_feasibility

log = logging.getLogger("dsf.plugin.feasibility")

RATE_LIMIT_EXCEEDED = "The request rate limit has been exceeded."


def _measure_reference(task: dict[str, Any]) -> str:
    reference = tasks.first_input(task, FEASIBILITY, "measure-reference") or {}
    url = reference.get("reference") if isinstance(reference, dict) else None
    if not isinstance(url, str) or "/Measure/" not in url or not url.startswith(("http://", "https://")):
        raise BpmnError("invalid_request", f"Task/{task.get('id')} has no absolute measure-reference to a Measure")
    return url


class SetupEvaluationSettings(ServiceTask):
    """The requester's network (a parent where it is HRP) and that network's settings."""

    async def execute(self, api: ProcessPluginApi, variables: Variables) -> None:
        settings = settings_of(api)
        requester = tasks.requester_identifier(variables.start_task)
        if requester is None or await api.organizations.by_identifier(requester) is None:
            raise BpmnError("unknown_requester", f"requester {requester!r} is not an active organisation of the allow list")
        parents = await parents_with_role(api, requester, "HRP")
        configured = [p for p in parents if p in settings.networks] if settings.networks else parents
        if not configured:
            raise BpmnError(
                "no_network",
                f"{requester} is HRP in {', '.join(parents) or 'no network'}, none of which is configured "
                f"in [plugins.feasibility.networks]",
            )
        network = settings.network(configured[0])
        variables.set("requester-parent-organization", network.parent)
        variables.set("evaluation-obfuscation", network.obfuscate)


@dataclass
class RateLimit:
    """Requests per interval, sticky: once over the limit, refused until the node restarts (as Java's)."""

    limit: RateLimitSettings
    clock: Any = time.monotonic
    _seen: deque[float] = field(default_factory=deque)
    exceeded: bool = False

    def allow(self) -> bool:
        if self.exceeded or self.limit.count == 0:
            self.exceeded = True
            return False
        now = self.clock()
        window = self.limit.interval.total_seconds()
        while self._seen and now - self._seen[0] >= window:
            self._seen.popleft()
        if len(self._seen) >= self.limit.count:
            self.exceeded = True
            return False
        self._seen.append(now)
        return True


class EvaluateRequestRate(ServiceTask):
    def execute(self, api: ProcessPluginApi, variables: Variables) -> None:
        network: NetworkSettings = settings_of(api).network(str(variables.get("requester-parent-organization")))
        limiter = api.shared(f"feasibility.rate.{network.parent}", lambda: RateLimit(network.rate_limit))
        allowed = limiter.allow()
        if not allowed:
            log.warning("feasibility %s: rate limit of %s (%d per %s) exceeded", variables.business_key,
                        network.parent, network.rate_limit.count, network.rate_limit.interval)
        variables.set("request-rate-below-limit", allowed)


class RateLimitExceededTaskRejecter(ServiceTask):
    """The request Task fails with the Java status reason; no answer is sent (the HRP times out)."""

    async def execute(self, api: ProcessPluginApi, variables: Variables) -> None:
        start = variables.start_task
        start["status"] = "failed"
        start["statusReason"] = {"text": RATE_LIMIT_EXCEEDED}
        await variables.update_task(start)


class DownloadFeasibilityResources(ServiceTask):
    """``Measure?_id=<id>&_include=Measure:depends-on`` at the HRP: the Measure first, then its Library."""

    async def execute(self, api: ProcessPluginApi, variables: Variables) -> None:
        url = _measure_reference(variables.start_task)
        base, _, rest = url.rpartition("/Measure/")
        bundle = await api.fhir.by_url(base).search(
            "Measure", [("_id", rest.split("/")[0]), ("_include", "Measure:depends-on")]
        )
        resources = [e.get("resource", {}) for e in bundle.get("entry", [])]
        measure = next((r for r in resources if r.get("resourceType") == "Measure"), None)
        library = next((r for r in resources if r.get("resourceType") == "Library"), None)
        if measure is None or library is None:
            raise BpmnError("missing_resources", f"{url} and the Library it depends on were not both found at the HRP")
        variables.set("measure", measure)
        variables.set("library", library)


class EvaluateFeasibility(ServiceTask):
    """Counts on every data store of the network (summed); any store failing fails the request."""

    async def execute(self, api: ProcessPluginApi, variables: Variables) -> None:
        settings = settings_of(api)
        network = settings.network(str(variables.get("requester-parent-organization")))
        names = network.stores or tuple(settings.stores) or ("default",)
        stores = [EvaluationStore.of(settings.store(name), api.fhir.data_store(name)) for name in names]
        measure = variables.get("measure")
        library = variables.get("library")
        started = time.monotonic()
        evaluation = await evaluate_feasibility(measure, library, stores, today=api.now().date(),
                                                mapping_file=settings.mapping_file)
        log.info("feasibility %s: %d patient(s) on %s in %.2f s", variables.business_key, evaluation.count,
                 ", ".join(names), time.monotonic() - started)
        report = summary_report(_measure_reference(variables.start_task), evaluation.count, fhir_instant(api))
        variables.set("measureReport", report)
        variables.remove("measure")
        variables.remove("library")


class ObfuscateEvaluationResult(ServiceTask):
    """Laplace noise (b = 2), rounded to tens, never negative; the same value per true count while the node runs."""

    def execute(self, api: ProcessPluginApi, variables: Variables) -> None:
        report = dict(variables.get("measureReport"))
        if report.get("status") != "complete":
            raise BpmnError("invalid_report", "only a complete MeasureReport can be obfuscated")
        count = initial_population_count(report)
        obfuscator = api.shared("feasibility.obfuscator", LaplaceObfuscator)
        measure = str(report.get("measure", ""))
        variables.set("measureReport", summary_report(measure, obfuscator.obfuscate(count), str(report.get("date"))))


class StoreMeasureReport(ServiceTask):
    """On our mailbox, readable by the requester only; output on the start Task; ``measure-report-id`` for the reply."""

    async def execute(self, api: ProcessPluginApi, variables: Variables) -> None:
        start = variables.start_task
        requester = tasks.requester_identifier(start)
        report = dict(variables.get("measureReport"))
        report["measure"] = _measure_reference(start)
        report.pop("evaluatedResource", None)
        report["meta"] = {**report.get("meta", {}), "tag": [
            {"system": READ_ACCESS_TAG, "code": "LOCAL"},
            {"system": READ_ACCESS_TAG, "code": "ORGANIZATION", "extension": [{
                "url": EXT_READ_ACCESS_ORGANIZATION,
                "valueIdentifier": {"system": ORGANIZATION_IDENTIFIER, "value": requester},
            }]},
        ]}
        created = await api.fhir.local().create(report)
        tasks.add_output(start, FEASIBILITY, "measure-report-reference", "Reference", {"reference": f"MeasureReport/{created.id}"})
        variables.set("measure-report-id", f"{api.endpoint_url}/MeasureReport/{created.id}")
        variables.remove("measureReport")


class SelectResponseTarget(ServiceTask):
    """The requester at its endpoint, with the correlation key of the execute Task."""

    async def execute(self, api: ProcessPluginApi, variables: Variables) -> None:
        start = variables.start_task
        requester = tasks.requester_identifier(start)
        key = tasks.message_input(start, "correlation-key")
        target = await api.targets.of_organization(requester, correlation_key=key) if requester else None
        if target is None:
            raise BpmnError("target_not_found", f"no active endpoint of the requester {requester!r}")
        variables.set_target(target)


class SendDicResponse(MessageSend):
    """``feasibilitySingleDicResultMessage`` with ``measure-report-reference`` = our MeasureReport's absolute URL."""

    def additional_inputs(self, api: ProcessPluginApi, variables: Variables, target: Target) -> list[dict[str, Any]]:
        return [tasks.parameter(FEASIBILITY, "measure-report-reference", "Reference",
                                {"reference": variables.get("measure-report-id")})]

