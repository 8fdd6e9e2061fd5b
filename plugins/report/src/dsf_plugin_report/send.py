"""The DIC's process ``medizininformatik-initiativede_reportSend``: select the HRP, fetch and check its
search Bundle, count on the KDS store, store the report on our mailbox, send it, wait for the receipt.

Started by ``reportSendStart`` (optional input ``hrp-identifier``), by a local user or by the
autostart loop. The start Task ends with a ``report-status`` output (see :mod:`.status`); a step
that fails before anything was sent fails it with an ``error`` output saying why.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import unquote

from dsf_core.api import (
    FhirClient,
    FhirClientError,
    MessageSend,
    ProcessPluginApi,
    ServiceTask,
    Target,
    Variables,
    classify,
    tasks,
)

from dsf_plugin_report.checker import SearchBundleError, check_search_bundle, search_parameters
from dsf_plugin_report.codes import (
    CDS_REPORT_IDENTIFIER,
    HRP_IDENTIFIER,
    MII_PARENT,
    ORGANIZATION_IDENTIFIER,
    REPORT,
    SEARCH_BUNDLE_RESPONSE_REFERENCE,
    search_bundle_identifier,
)
from dsf_plugin_report.config import settings_of
from dsf_plugin_report.mailbox import put_by_identifier
from dsf_plugin_report.report import SearchResult, all_failed, check_report, report_bundle
from dsf_plugin_report.status import add_status, error_of, statuses

__all__ = ["CheckSearchBundle", "CreateReport", "DownloadSearchBundle", "ReportError", "SelectTargetHrp", "SendReport",
           "StoreReceipt", "hrp_of_task"]

log = logging.getLogger("dsf.plugin.report")

#: Searches run at once against the data store (the Java plugin runs them one after the other).
CONCURRENT_SEARCHES = 4


class ReportError(Exception):
    """A step of the DIC failed; the message is what the start Task's error output says."""


def hrp_of_task(task: dict[str, Any]) -> str | None:
    """The organisation identifier of the Task's ``hrp-identifier`` input (a logical Organization reference)."""
    reference = tasks.first_input(task, REPORT, HRP_IDENTIFIER)
    identifier = reference.get("identifier") if isinstance(reference, dict) else None
    if isinstance(identifier, dict) and identifier.get("system") == ORGANIZATION_IDENTIFIER and identifier.get("value"):
        return str(identifier["value"])
    return None


class SelectTargetHrp(ServiceTask):
    """The HRP: the Task's ``hrp-identifier``, else ``[plugins.report] hrp_identifier``, else the consortium's one HRP."""

    async def execute(self, api: ProcessPluginApi, variables: Variables) -> None:
        settings = settings_of(api)
        hrps = await api.targets.members(MII_PARENT, "HRP", correlation_keys=False)
        named = hrp_of_task(variables.start_task)
        source = "the Task's hrp-identifier"
        if named is None and settings.hrp_identifier:
            named, source = settings.hrp_identifier, "plugins.report.hrp_identifier"
        known = ", ".join(t.organization_identifier for t in hrps) or "none"
        if named is not None:
            target = next((t for t in hrps if t.organization_identifier == named), None)
            if target is None:
                raise ReportError(f"HRP {named} ({source}) is no active HRP of {MII_PARENT} with an endpoint "
                                  f"(HRPs: {known})")
        elif len(hrps) == 1:
            target, source = hrps.entries[0], f"the only HRP of {MII_PARENT}"
        else:
            raise ReportError(f"{len(hrps)} HRPs in {MII_PARENT} ({known}): name the one to report to in "
                              f"plugins.report.hrp_identifier or the Task's hrp-identifier input")
        log.info("report %s: to HRP %s (%s) at %s", variables.business_key, target.organization_identifier, source,
                 target.endpoint_url)
        variables.set_target(target)
        variables.set("hrpIdentifier", target.organization_identifier)
        variables.set("receiptTimeout", settings.receipt_timeout)


class DownloadSearchBundle(ServiceTask):
    """``Bundle?identifier=…/CodeSystem/report|search-bundle-v<a.b>`` on the HRP's mailbox: exactly one."""

    async def execute(self, api: ProcessPluginApi, variables: Variables) -> None:
        hrp = variables.target
        if hrp is None:
            raise ReportError("no HRP selected (variable 'target')")
        identifier = search_bundle_identifier()
        try:
            found = await api.fhir.by_url(hrp.endpoint_url).search("Bundle", {"identifier": identifier})
        except FhirClientError as exc:
            add_status(variables.start_task, classify(exc), "Download search bundle failed")
            raise ReportError(
                f"Download search bundle {identifier} from HRP {hrp.organization_identifier} failed: {exc}") from exc
        bundles = [e["resource"] for e in found.get("entry", [])
                   if (e.get("search") or {}).get("mode", "match") == "match"
                   and (e.get("resource") or {}).get("resourceType") == "Bundle"]
        if len(bundles) != 1:
            raise ReportError(f"HRP {hrp.organization_identifier} publishes {len(bundles)} search Bundles {identifier} "
                              f"at {hrp.endpoint_url}, expected exactly one")
        variables.set("searchBundle", bundles[0])


class CheckSearchBundle(ServiceTask):
    """Every rule of :mod:`.checker`: the first violation stops the process before anything is searched."""

    def execute(self, api: ProcessPluginApi, variables: Variables) -> None:
        hrp = variables.get("hrpIdentifier")
        try:
            check_search_bundle(variables.get("searchBundle") or {})
        except SearchBundleError as exc:
            log.warning("report %s: search Bundle of HRP %s refused: %s", variables.business_key, hrp, exc)
            raise ReportError(f"search Bundle of HRP {hrp} refused - {exc}") from None


class CreateReport(ServiceTask):
    """The searches on the KDS store → the report (totals only) → our mailbox, readable by us and the HRP."""

    async def execute(self, api: ProcessPluginApi, variables: Variables) -> None:
        settings = settings_of(api)
        store = api.fhir.data_store(settings.data_store)
        urls = [str(e["request"]["url"]) for e in (variables.get("searchBundle") or {}).get("entry", [])]
        log.info("report %s: %d searches on data store %r (%s)", variables.business_key, len(urls), settings.data_store,
                 store.base_url)
        slots = asyncio.Semaphore(CONCURRENT_SEARCHES)
        results = await asyncio.gather(*(_search(store, url, slots) for url in urls))
        now = api.now().isoformat(timespec="milliseconds").replace("+00:00", "Z")
        hrp = str(variables.get("hrpIdentifier"))
        report = report_bundle(results, organization=api.organization_identifier, hrp=hrp, now=now)
        if all_failed(report):
            raise ReportError(f"every search of the report failed on data store {settings.data_store!r} ({store.base_url}); "
                              f"first: {results[0].url} gave HTTP {results[0].status}")
        problems = check_report(report)
        if problems:  # cannot happen: the report is built from totals only
            raise ReportError(f"report refused: {'; '.join(problems)}")
        reference = await put_by_identifier(api.fhir.local(), report, CDS_REPORT_IDENTIFIER, api.organization_identifier)
        failed = sum(1 for r in results if r.status != 200)
        log.info("report %s: stored as %s (%d searches, %d failed)", variables.business_key, reference, len(results), failed)
        variables.set("reportReference", f"{api.endpoint_url}/{reference}")
        variables.remove("searchBundle")


async def _search(store: FhirClient, url: str, slots: asyncio.Semaphore) -> SearchResult:
    path, parameters = search_parameters(url)
    async with slots:
        try:
            if path == "metadata":
                return SearchResult(url, capability_statement=await store.read_url(store.url("metadata")))
            found = await store.search(path, [(name, unquote(value or "")) for name, value in parameters])
        except FhirClientError as exc:
            if exc.status == 0:  # the store itself is unreachable: no report at all, as in Java
                raise ReportError(f"data store {store.base_url} unreachable: {exc}") from exc
            log.warning("report search %s failed: %s", url, exc)
            return SearchResult(url, status=exc.status)
    total = found.get("total")
    last_updated = (found.get("meta") or {}).get("lastUpdated")
    return SearchResult(url, total=total if isinstance(total, int) else 0, last_updated=last_updated)


class SendReport(MessageSend):
    """``reportSend`` with ``search-bundle-response-reference`` = the report on our mailbox (versioned, absolute)."""

    def additional_inputs(self, api: ProcessPluginApi, variables: Variables, target: Target) -> list[dict[str, Any]]:
        return [tasks.parameter(REPORT, SEARCH_BUNDLE_RESPONSE_REFERENCE, "Reference",
                                {"reference": str(variables.get("reportReference")), "type": "Bundle"})]

    async def on_send_error(
        self, api: ProcessPluginApi, variables: Variables, target: Target, error: FhirClientError
    ) -> None:
        log.warning("report %s to HRP %s not sent: %s", variables.business_key, target.organization_identifier, error)
        add_status(variables.start_task, classify(error), "Send report failed")
        raise error


class StoreReceipt(ServiceTask):
    """The HRP's receipt onto the start Task (failed when it carries an error), or ``receipt-missing``."""

    async def execute(self, api: ProcessPluginApi, variables: Variables) -> None:
        start, latest = variables.start_task, variables.latest_task
        hrp = variables.get("hrpIdentifier")
        if latest.get("id") != start.get("id"):
            received = statuses(latest, "input")
            start.setdefault("output", []).extend(received)
            if any(error_of(p) is not None for p in received):
                start["status"] = "failed"
        else:
            start["status"] = "failed"
            add_status(start, "receipt-missing")
        for output in statuses(start, "output"):
            code = output["valueCoding"].get("code")
            if code == "receipt-ok":
                log.info("report %s: HRP %s stored %s", variables.business_key, hrp, variables.get("reportReference"))
            else:
                log.warning("report %s: HRP %s: %s%s (report %s)", variables.business_key, hrp, code,
                            f" - {error_of(output)}" if error_of(output) else "", variables.get("reportReference"))
        await variables.update_task(start)
