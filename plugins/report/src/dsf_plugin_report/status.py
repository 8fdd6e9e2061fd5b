"""The report-status vocabulary: how each side says how a report went (codes of the Java plugin).

A status is a Task parameter typed ``report|report-status`` whose value is a Coding of
``http://medizininformatik-initiative.de/fhir/CodeSystem/report-status``, with the extension
``extension-report-status-error`` (valueString) saying what failed:

==================  ====================  ===============================================
on                  code                  meaning
==================  ====================  ===============================================
DIC start Task      ``receipt-ok``        the HRP stored the report
                    ``receipt-error``     the HRP could not (error: which step)
                    ``receipt-missing``   no receipt before ``receipt_timeout``
                    ``not-allowed``       the HRP refused us (401/403)
                    ``not-reachable``     the HRP could not be reached
HRP Task            ``receive-ok``        report stored
                    ``receive-error``     download or insert failed (error: which)
==================  ====================  ===============================================
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from dsf_core.api import tasks

from dsf_plugin_report.codes import EXT_REPORT_STATUS_ERROR, REPORT, REPORT_STATUS, REPORT_STATUS_TYPE

__all__ = ["add_status", "error_of", "receipt_inputs", "report_status", "status_codes", "statuses"]


def report_status(code: str, error: str | None = None) -> dict[str, Any]:
    """A ``report-status`` parameter (inputs and outputs have the same shape)."""
    extension = [{"url": EXT_REPORT_STATUS_ERROR, "valueString": error}] if error else None
    coding = {"system": REPORT_STATUS, "code": code}
    return tasks.parameter(REPORT, REPORT_STATUS_TYPE, "Coding", coding, extension=extension)


def add_status(task: dict[str, Any], code: str, error: str | None = None) -> None:
    """Append a ``report-status`` output to ``task`` (in memory)."""
    task.setdefault("output", []).append(report_status(code, error))


def statuses(task: Mapping[str, Any], kind: str) -> list[dict[str, Any]]:
    """Copies of the ``report-status`` parameters of ``task``'s ``input`` or ``output``."""
    found = tasks.input_parameters({"input": task.get(kind, [])}, REPORT, REPORT_STATUS_TYPE)
    return [dict(copy.deepcopy(p)) for p in found]


def status_codes(task: Mapping[str, Any], kind: str = "output") -> list[str]:
    return [str((p.get("valueCoding") or {}).get("code")) for p in statuses(task, kind)]


def error_of(parameter: Mapping[str, Any]) -> str | None:
    """The error text of a status parameter, if it has one."""
    texts = (str(e.get("valueString")) for e in parameter.get("extension", []) if e.get("url") == EXT_REPORT_STATUS_ERROR)
    return next(texts, None)


def receipt_inputs(received: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The receipt for a received ``reportSend`` Task: its ``receive-error`` outputs as ``receipt-error``,
    or ``receipt-ok`` when nothing failed."""
    failed = [p for p in statuses(received, "output") if error_of(p) is not None]
    for parameter in failed:
        coding = parameter["valueCoding"]
        if coding.get("code") == "receive-error":
            coding["code"] = "receipt-error"
    return failed or [report_status("receipt-ok")]
