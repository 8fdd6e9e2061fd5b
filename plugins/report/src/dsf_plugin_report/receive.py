"""The HRP's process ``medizininformatik-initiativede_reportReceive``: download the report, store it, answer.

Started by ``reportSend`` from a DIC. The DIC is looked up first (its endpoint); the report is
read from the DIC's own mailbox (the reference must point there), checked to hold totals only,
and stored on the HRP's mailbox by conditional update on ``cds-report-identifier|<DIC>`` — one
living report per DIC, a new version each round — readable by the HRP and that DIC. A failed
step records ``receive-error`` with what failed on the Task and takes the error path, so the DIC
always gets a receipt.
"""

from __future__ import annotations

import logging
import re
from typing import Any, NoReturn

from dsf_core.api import BpmnError, MessageSend, ProcessPluginApi, ServiceTask, Target, Variables, tasks

from dsf_plugin_report.codes import (
    CDS_REPORT_IDENTIFIER,
    MII_PARENT,
    REPORT,
    SEARCH_BUNDLE_RESPONSE_REFERENCE,
    read_access_tags,
)
from dsf_plugin_report.mailbox import put_by_identifier
from dsf_plugin_report.report import check_report
from dsf_plugin_report.status import add_status, receipt_inputs

__all__ = ["DownloadReport", "HandleError", "InsertReport", "SelectTargetDic", "SendReceipt"]

log = logging.getLogger("dsf.plugin.report")

RECEIVE_ERROR = "reportReceiveError"
_REFERENCE = re.compile(
    r"^(?P<base>https?://.+)/Bundle/(?P<id>[A-Za-z0-9\-.]{1,64})(?:/_history/(?P<vid>[A-Za-z0-9\-.]{1,64}))?$")


def _sender(variables: Variables) -> str:
    sender = tasks.requester_identifier(variables.start_task)
    if not sender:
        raise ValueError("the Task names no requester")
    return sender


async def _failed(variables: Variables, step: str, error: BaseException) -> NoReturn:
    """``receive-error`` (``step``) on the Task, which fails; then the error path, which still answers the DIC."""
    task = variables.start_task
    task["status"] = "failed"
    add_status(task, "receive-error", step)
    await variables.update_task(task)
    log.warning("report from %s (%s): %s - %s", tasks.requester_identifier(task), variables.get("reportReference"),
                step, error)
    variables.set("reportReceiveErrorMessage", f"{step} - {error}")
    raise BpmnError(RECEIVE_ERROR, f"{step} - {error}")


class DownloadReport(ServiceTask):
    """The Bundle the Task's ``search-bundle-response-reference`` names, on the sender's own mailbox, totals only."""

    async def execute(self, api: ProcessPluginApi, variables: Variables) -> None:
        task = variables.start_task
        try:
            reference = tasks.first_input(task, REPORT, SEARCH_BUNDLE_RESPONSE_REFERENCE) or {}
            url = str(reference.get("reference") or "") if isinstance(reference, dict) else ""
            variables.set("reportReference", url)
            match = _REFERENCE.match(url)
            if match is None:
                raise ValueError(f"{url!r} is no absolute reference to a Bundle")
            dic = variables.target
            if dic is None or dic.endpoint_url != match["base"].rstrip("/"):
                # We read with our own client certificate: only from the sender's own mailbox.
                raise ValueError(f"{url} is not on the endpoint of the sending DIC {_sender(variables)}")
            client = api.fhir.by_url(match["base"])
            if match["vid"]:
                report = await client.vread("Bundle", match["id"], match["vid"])
            else:
                report = await client.read("Bundle", match["id"])
            problems = check_report(report)
            if problems:
                raise ValueError("the report holds more than totals: " + "; ".join(problems))
        except Exception as exc:
            await _failed(variables, "Download report failed", exc)
        variables.set("report", report)


class InsertReport(ServiceTask):
    """Conditional update on ``cds-report-identifier|<DIC>``, readable by us and the DIC; ``receive-ok``."""

    async def execute(self, api: ProcessPluginApi, variables: Variables) -> None:
        task = variables.start_task
        try:
            sender = _sender(variables)
            report: dict[str, Any] = dict(variables.get("report") or {})
            report.pop("id", None)
            profiles = (report.get("meta") or {}).get("profile")
            report["meta"] = {**({"profile": profiles} if profiles else {}), "tag": read_access_tags(sender)}
            report["identifier"] = {"system": CDS_REPORT_IDENTIFIER, "value": sender}
            stored = await put_by_identifier(api.fhir.local(), report, CDS_REPORT_IDENTIFIER, sender)
        except Exception as exc:
            await _failed(variables, "Insert report failed", exc)
        add_status(task, "receive-ok")
        await variables.update_task(task)
        variables.remove("report")
        log.info("report of %s stored as %s/%s", sender, api.endpoint_url, stored)


class HandleError(ServiceTask):
    def execute(self, api: ProcessPluginApi, variables: Variables) -> None:
        log.warning("could not receive the report %s of %s: %s", variables.get("reportReference"),
                    tasks.requester_identifier(variables.start_task), variables.get("reportReceiveErrorMessage"))


class SelectTargetDic(ServiceTask):
    """The sender, a DIC of the consortium, at its endpoint: where the report is read and the receipt goes."""

    async def execute(self, api: ProcessPluginApi, variables: Variables) -> None:
        sender = _sender(variables)
        dics = await api.targets.members(MII_PARENT, "DIC", correlation_keys=False)
        dic = next((t for t in dics if t.organization_identifier == sender), None)
        if dic is None:
            raise LookupError(f"{sender} is no active DIC of {MII_PARENT} with an endpoint")
        variables.set_target(dic)


class SendReceipt(MessageSend):
    """``reportReceive``: ``receipt-ok``, or this Task's ``receive-error`` as ``receipt-error`` with its error text."""

    def additional_inputs(self, api: ProcessPluginApi, variables: Variables, target: Target) -> list[dict[str, Any]]:
        return receipt_inputs(variables.start_task)
