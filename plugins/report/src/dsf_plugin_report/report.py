"""The report a DIC sends: a ``batch-response`` Bundle of totals, built so it cannot carry patient data.

Entry *i* answers search *i* of the search Bundle:

* a search → a new ``searchset`` Bundle holding only ``total``, ``meta.lastUpdated`` and a
  ``self`` link naming the HRP's request URL (never a resource); a failed search → the same with
  total 0, and ``response.status`` the HTTP status with an OperationOutcome saying only that;
* ``metadata`` → the store's CapabilityStatement reduced to what says which resource types and
  search parameters it supports (software, FHIR version, formats, types, parameter names and types).

Nothing is copied from the data store's answers but integers, that reduced structure and HTTP
status codes — by construction, not by filtering. :func:`check_report` is the same rule as a
check, used by the HRP before it stores a report.
"""

from __future__ import annotations

import http
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dsf_plugin_report.codes import (
    CDS_REPORT_IDENTIFIER,
    PROFILE_SEARCH_BUNDLE_RESPONSE,
    RESOURCE_VERSION,
    read_access_tags,
)

__all__ = ["SearchResult", "all_failed", "check_report", "reduced_capability_statement", "report_bundle"]

OK = "200"
_FORMATS = ("application/fhir+xml", "application/fhir+json")
_SEARCH_PARAM_KEYS = ("name", "definition", "type")


@dataclass(frozen=True)
class SearchResult:
    """What one request of the search Bundle gave: a total, a CapabilityStatement, or an HTTP error status."""

    url: str
    status: int = 200
    total: int | None = None
    last_updated: str | None = None
    capability_statement: Mapping[str, Any] | None = None


def report_bundle(results: Sequence[SearchResult], *, organization: str, hrp: str, now: str) -> dict[str, Any]:
    """The report Bundle of ``organization`` (its identifier), readable by itself and the ``hrp``."""
    return {
        "resourceType": "Bundle",
        "meta": {
            "lastUpdated": now,
            "profile": [f"{PROFILE_SEARCH_BUNDLE_RESPONSE}|{RESOURCE_VERSION}"],
            "tag": read_access_tags(hrp),
        },
        "identifier": {"system": CDS_REPORT_IDENTIFIER, "value": organization},
        "type": "batch-response",
        "entry": [_entry(result, now) for result in results],
    }


def _entry(result: SearchResult, now: str) -> dict[str, Any]:
    if result.status == 200 and result.capability_statement is not None:
        return {"resource": reduced_capability_statement(result.capability_statement), "response": {"status": OK}}
    searchset: dict[str, Any] = {
        "resourceType": "Bundle",
        "meta": {"lastUpdated": result.last_updated or now},
        "type": "searchset",
        "total": result.total if result.status == 200 and isinstance(result.total, int) else 0,
        "link": [{"relation": "self", "url": result.url}],
    }
    if result.status == 200:
        return {"resource": searchset, "response": {"status": OK}}
    phrase = _phrase(result.status)
    return {
        "resource": searchset,
        "response": {
            "status": str(result.status),
            "outcome": {
                "resourceType": "OperationOutcome",
                "issue": [{"severity": "error", "code": "exception",
                           "diagnostics": f"HTTP {result.status} {phrase}".strip()}],
            },
        },
    }


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


def reduced_capability_statement(statement: Mapping[str, Any]) -> dict[str, Any]:
    """Kind, status, date, software, FHIR version, XML/JSON formats, and per REST mode its resource types
    with their search parameters (name, definition, type) — no documentation, no URLs, no descriptions."""
    raw = statement.get("software")
    software: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    formats = [f for f in statement.get("format", []) if f in _FORMATS]
    reduced: dict[str, Any] = {
        "resourceType": "CapabilityStatement",
        "status": statement.get("status") or "unknown",
        "date": statement.get("date"),
        "name": "Server",
        "kind": "capability",
        "software": {k: software[k] for k in ("name", "version") if isinstance(software.get(k), str)},
        "fhirVersion": statement.get("fhirVersion"),
        # FHIR requires a format; the store answered our JSON requests, so it speaks JSON at least.
        "format": formats or ["application/fhir+json"],
        "rest": [_rest(rest) for rest in statement.get("rest", []) if isinstance(rest, Mapping)],
    }
    return {k: v for k, v in reduced.items() if v not in (None, {}, [])}


def _rest(rest: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"mode": rest["mode"]} if isinstance(rest.get("mode"), str) else {}
    resources = []
    for resource in rest.get("resource", []):
        if isinstance(resource, Mapping) and isinstance(resource.get("type"), str):
            params = _params(resource)
            resources.append({"type": resource["type"], **({"searchParam": params} if params else {})})
    if resources:
        out["resource"] = resources
    params = _params(rest)
    if params:
        out["searchParam"] = params
    return out


def _params(holder: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [
        {k: p[k] for k in _SEARCH_PARAM_KEYS if isinstance(p.get(k), str)}
        for p in holder.get("searchParam", []) if isinstance(p, Mapping) and isinstance(p.get("name"), str)
    ]


def all_failed(report: Mapping[str, Any]) -> bool:
    """True when no entry of the report has status 200 (the Java plugin refuses to send such a report)."""
    return all(str((e.get("response") or {}).get("status")) != OK for e in report.get("entry", []))


def check_report(report: Mapping[str, Any]) -> list[str]:
    """What makes ``report`` more than totals: anything but a batch-response of empty searchsets and
    reduced CapabilityStatements (empty list = a report as the plugin builds them)."""
    problems = []
    if report.get("resourceType") != "Bundle" or report.get("type") != "batch-response":
        problems.append("the report is not a Bundle of type batch-response")
    if (report.get("identifier") or {}).get("system") != CDS_REPORT_IDENTIFIER:
        problems.append(f"the report has no identifier of {CDS_REPORT_IDENTIFIER}")
    for index, entry in enumerate(report.get("entry", [])):
        resource = entry.get("resource") or {}
        kind = resource.get("resourceType")
        if kind == "Bundle":
            if resource.get("type") != "searchset" or resource.get("entry"):
                problems.append(f"Bundle.entry[{index}]: a searchset Bundle with resources")
        elif kind == "CapabilityStatement":
            if resource != reduced_capability_statement(resource):
                problems.append(f"Bundle.entry[{index}]: a CapabilityStatement with more than the report keeps")
        else:
            problems.append(f"Bundle.entry[{index}]: a {kind or 'missing'} resource where a total belongs")
    return problems
