"""CQL evaluation on a store with ``$evaluate-measure`` (e.g. Blaze), as the Java plugin does it.

1. :func:`prepare_cql_resources` — copies of the HRP's Measure and Library made fit for a
   store (Java ``StoreFeasibilityResources`` + ``FeasibilityResourceCleaner``): ``meta`` and
   ``id`` dropped, only the ``text/cql`` attachment kept (an error without one), and, because the
   portal's Library url is ``urn:uuid:<x>``, canonicals fixed: Library url
   ``<measure url base>/Library/<x>``, name ``<x>``, version ``1.0.0``, Measure.library that url,
   and the CQL's first line rewritten to ``library "<x>" version '1.0.0'``.
2. :func:`evaluate_cql` — both POSTed in one transaction; the Measure id comes from the
   response's first ``location``; then ``GET Measure/<id>/$evaluate-measure?periodStart=1900-01-01
   &periodEnd=2100-01-01&reportType=population`` with ``Prefer: respond-async``
   (:mod:`.async_fhir`).
3. :func:`initial_population` — the answer may be a MeasureReport, a Parameters whose first
   parameter holds one, or a Bundle (Blaze's async batch-response) whose first entry holds one;
   an OperationOutcome, anything else, or a report without group / population /
   ``measure-population#initial-population`` code / count is an error saying which.

A store that does not implement the operation answers the GET with a 4xx; that becomes
:class:`CqlEvaluationError` saying the store does not support ``$evaluate-measure``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from dsf_core.api import FhirClient, FhirClientError
from dsf_core.client import parse_location

from dsf_plugin_feasibility.evaluation.async_fhir import Sleep, get_respond_async
from dsf_plugin_feasibility.evaluation.errors import EvaluationError, FeasibilityResourceError

__all__ = [
    "CqlEvaluationError",
    "CqlResult",
    "MEASURE_POPULATION",
    "evaluate_cql",
    "initial_population",
    "prepare_cql_resources",
]

CQL = "text/cql"
MEASURE_POPULATION = "http://terminology.hl7.org/CodeSystem/measure-population"
BLAZE_EVAL_DURATION = "https://samply.github.io/blaze/fhir/StructureDefinition/eval-duration"
PERIOD = (("periodStart", "1900-01-01"), ("periodEnd", "2100-01-01"), ("reportType", "population"))
_MEASURE_URL = re.compile(r"^(?P<base>.+)/Measure/(?P<id>.+)$")
_LIBRARY_URN = re.compile(r"^urn:uuid:(?P<id>.+)$")


class CqlEvaluationError(EvaluationError):
    """The store could not evaluate the Measure, or answered something that is not a usable report."""


@dataclass(frozen=True, slots=True)
class CqlResult:
    count: int
    measure_id: str
    seconds: float
    polls: int
    #: Blaze's own evaluation time, when its ``eval-duration`` extension is on the report.
    store_duration: str | None = None


def prepare_cql_resources(measure: Mapping[str, Any], library: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Store-ready copies of Measure and Library (the inputs are left alone)."""
    measure_copy = copy.deepcopy(dict(measure))
    library_copy = copy.deepcopy(dict(library))
    for resource in (measure_copy, library_copy):
        resource.pop("meta", None)
        resource.pop("id", None)
    contents = library_copy.get("content") or []
    cql: dict[str, Any] | None = next(
        (a for a in contents if isinstance(a, dict) and str(a.get("contentType", "")).lower() == CQL),
        None,
    )
    if cql is None:
        raise FeasibilityResourceError(f"Library {library.get('url', library.get('id'))} has no content of type {CQL}")
    library_copy["content"] = [cql]
    measure_match = _MEASURE_URL.match(str(measure_copy.get("url", "")))
    library_match = _LIBRARY_URN.match(str(library_copy.get("url", "")))
    if measure_match and library_match:
        name = library_match["id"]
        url = f"{measure_match['base']}/Library/{name}"
        measure_copy["library"] = [url]
        library_copy["url"] = url
        library_copy["name"] = name
        library_copy["version"] = "1.0.0"
        text = _decode(cql, library)
        rest = text.split("\n", 1)[1] if "\n" in text else ""
        text = f"library \"{name}\" version '1.0.0'\n{rest}"
        cql["data"] = base64.b64encode(text.encode("utf-8")).decode("ascii")
    return measure_copy, library_copy


def _decode(attachment: Mapping[str, Any], library: Mapping[str, Any]) -> str:
    try:
        return base64.b64decode(str(attachment.get("data", "")), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise FeasibilityResourceError(f"Library {library.get('url')}: {CQL} content is not base64 UTF-8: {exc}") from None


async def upload(client: FhirClient, measure: Mapping[str, Any], library: Mapping[str, Any]) -> str:
    """POST Measure and Library in one transaction; the new Measure's id."""
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": measure, "request": {"method": "POST", "url": "Measure"}},
            {"resource": library, "request": {"method": "POST", "url": "Library"}},
        ],
    }
    response = await client.transaction(bundle)
    entries = response.get("entry") or []
    location = ((entries[0] if entries else {}).get("response") or {}).get("location")
    if not isinstance(location, str):
        raise CqlEvaluationError("the transaction storing Measure and Library answered no Measure location")
    try:
        type_, id_, _ = parse_location(location)
    except ValueError:
        raise CqlEvaluationError(f"the transaction answered an unreadable Measure location {location!r}") from None
    if type_ != "Measure":
        raise CqlEvaluationError(f"the transaction's first location is {location!r}, not a Measure")
    return id_


async def evaluate_cql(
    client: FhirClient,
    measure: Mapping[str, Any],
    library: Mapping[str, Any],
    *,
    request_timeout: float = 300.0,
    sleep: Sleep = asyncio.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> CqlResult:
    """Prepare, upload and evaluate; the initial-population count of the store's MeasureReport."""
    start = monotonic()
    prepared_measure, prepared_library = prepare_cql_resources(measure, library)
    measure_id = await upload(client, prepared_measure, prepared_library)
    path = f"Measure/{measure_id}/$evaluate-measure"
    try:
        result = await get_respond_async(client, path, PERIOD, timeout=request_timeout, sleep=sleep, monotonic=monotonic)
    except FhirClientError as exc:
        if (400 <= exc.status < 500 or exc.status == 501) and exc.url.split("?")[0].endswith("$evaluate-measure"):
            raise CqlEvaluationError(
                f"the store does not support $evaluate-measure on Measure/{measure_id} ({exc.message})"
            ) from None
        raise
    report = _report_of(result.body)
    count = initial_population(report)
    return CqlResult(count, measure_id, monotonic() - start, result.polls, _eval_duration(report))


def _report_of(body: Any) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise CqlEvaluationError("$evaluate-measure answered no FHIR resource")
    type_ = body.get("resourceType")
    if type_ == "MeasureReport":
        return body
    if type_ == "Parameters":
        first = (body.get("parameter") or [{}])[0]
        return _report_of_resource(first.get("resource") if isinstance(first, Mapping) else None, "Parameters")
    if type_ == "Bundle":
        first = (body.get("entry") or [{}])[0]
        if not isinstance(first, Mapping):
            raise CqlEvaluationError("$evaluate-measure answered a Bundle without entries")
        status = str((first.get("response") or {}).get("status", ""))
        outcome = first.get("resource") or (first.get("response") or {}).get("outcome")
        if status[:1] in ("4", "5"):
            raise CqlEvaluationError(f"$evaluate-measure failed with {status}: {_diagnostics(outcome)}")
        return _report_of_resource(first.get("resource"), "Bundle")
    if type_ == "OperationOutcome":
        raise CqlEvaluationError(f"$evaluate-measure answered an OperationOutcome: {_diagnostics(body)}")
    raise CqlEvaluationError(f"$evaluate-measure answered a {type_ or 'resource without type'}, not a MeasureReport")


def _report_of_resource(resource: Any, container: str) -> Mapping[str, Any]:
    if isinstance(resource, Mapping) and resource.get("resourceType") == "MeasureReport":
        return resource
    if isinstance(resource, Mapping) and resource.get("resourceType") == "OperationOutcome":
        raise CqlEvaluationError(f"$evaluate-measure answered an OperationOutcome: {_diagnostics(resource)}")
    found = resource.get("resourceType") if isinstance(resource, Mapping) else "nothing"
    raise CqlEvaluationError(f"$evaluate-measure answered a {container} whose first item is {found}, not a MeasureReport")


def _diagnostics(outcome: Any) -> str:
    issues = outcome.get("issue") if isinstance(outcome, Mapping) else None
    for issue in issues or []:
        text = issue.get("diagnostics") or (issue.get("details") or {}).get("text") or issue.get("code")
        if text:
            return str(text)
    return "no diagnostics"


def initial_population(report: Mapping[str, Any]) -> int:
    """The count of the first group's first population, checked as the Java plugin checks it."""
    groups = report.get("group") or []
    if not groups or not isinstance(groups[0], Mapping):
        raise CqlEvaluationError("MeasureReport has no group")
    populations = groups[0].get("population") or []
    if not populations or not isinstance(populations[0], Mapping):
        raise CqlEvaluationError("MeasureReport group has no population")
    population = populations[0]
    codings = (population.get("code") or {}).get("coding") or []
    if not codings:
        raise CqlEvaluationError("MeasureReport population has no code")
    if not any(c.get("system") == MEASURE_POPULATION and c.get("code") == "initial-population" for c in codings):
        raise CqlEvaluationError(f"MeasureReport population code is not {MEASURE_POPULATION}#initial-population")
    count = population.get("count")
    if isinstance(count, bool) or not isinstance(count, int):
        raise CqlEvaluationError("MeasureReport population has no count")
    if count < 0:
        raise CqlEvaluationError(f"MeasureReport population count {count} is negative")
    return count


def _eval_duration(report: Mapping[str, Any]) -> str | None:
    for extension in report.get("extension") or []:
        if extension.get("url") == BLAZE_EVAL_DURATION:
            quantity = extension.get("valueQuantity") or {}
            return f"{quantity.get('value')} {quantity.get('unit') or quantity.get('code') or ''}".strip()
    return None
