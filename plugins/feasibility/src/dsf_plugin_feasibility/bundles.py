"""The transaction Bundle that starts a feasibility query at the HRP (what the FDPG backend posts).

``request_bundle(query, hrp="hrp.test")`` → Task (``feasibility-task-request``) + Measure +
Library (the structured query as ``application/json``, CQL as ``text/cql``), linked by
``urn:uuid`` references the HRP's mailbox resolves on the way in.
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime, timezone
from collections.abc import Mapping
from typing import Any

from dsf_core.api import tasks

from dsf_plugin_feasibility.common import (
    FEASIBILITY,
    MEASURE_POPULATION,
    PROCESS_REQUEST,
    PROFILE_LIBRARY,
    PROFILE_MEASURE,
    PROFILE_TASK_REQUEST,
    READ_ACCESS_TAG,
)

__all__ = ["request_bundle"]

#: Used when the caller has no CQL translation (a store evaluating CQL then counts nobody it should not).
PLACEHOLDER_CQL = """library Retrieve version '1.0.0'
using FHIR version '4.0.0'
include FHIRHelpers version '4.0.0'

context Patient

define InInitialPopulation:
  false
"""


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def request_bundle(
    structured_query: Mapping[str, Any],
    *,
    hrp: str,
    cql: str | None = None,
    version: str = "1.1",
    authored_on: str | None = None,
    business_key: str | None = None,
) -> dict[str, Any]:
    """A transaction Bundle starting ``feasibilityRequest`` at the HRP ``hrp`` (its organisation identifier)."""
    task_uuid, measure_uuid, library_uuid, library_url = (f"urn:uuid:{uuid.uuid4()}" for _ in range(4))
    task: dict[str, Any] = {
        "resourceType": "Task",
        "meta": {"profile": [f"{PROFILE_TASK_REQUEST}|{version}"]},
        "instantiatesCanonical": f"{PROCESS_REQUEST}|{version}",
        "status": "requested",
        "intent": "order",
        "authoredOn": "",
        "requester": tasks.organization_reference(hrp),
        "restriction": {"recipient": [tasks.organization_reference(hrp)]},
        "input": [
            tasks.parameter(tasks.BPMN_MESSAGE, "message-name", "String", "feasibilityRequestMessage"),
            tasks.parameter(tasks.BPMN_MESSAGE, "business-key", "String", business_key or str(uuid.uuid4())),
            tasks.parameter(FEASIBILITY, "measure-reference", "Reference", {"reference": measure_uuid}),
        ],
    }
    task["authoredOn"] = authored_on or datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    measure = {
        "resourceType": "Measure",
        "meta": {"tag": [{"system": READ_ACCESS_TAG, "code": "ALL"}], "profile": [PROFILE_MEASURE]},
        "url": f"https://{hrp}/Measure/{measure_uuid.rsplit(':', 1)[1]}",
        "status": "active",
        "library": [library_url],
        "scoring": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/measure-scoring", "code": "cohort"}]},
        "group": [{"population": [{
            "code": {"coding": [{"system": MEASURE_POPULATION, "code": "initial-population"}]},
            "criteria": {"language": "text/cql", "expression": "InInitialPopulation"},
        }]}],
    }
    library = {
        "resourceType": "Library",
        "meta": {"tag": [{"system": READ_ACCESS_TAG, "code": "ALL"}], "profile": [PROFILE_LIBRARY]},
        "url": library_url,
        "status": "active",
        "name": "Retrieve",
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/library-type", "code": "logic-library"}]},
        "content": [
            {"contentType": "text/cql", "data": _b64(cql or PLACEHOLDER_CQL)},
            {"contentType": "application/json", "data": _b64(json.dumps(structured_query))},
        ],
    }
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": task_uuid, "resource": task, "request": {"method": "POST", "url": "Task"}},
            {"fullUrl": measure_uuid, "resource": measure, "request": {"method": "POST", "url": "Measure"}},
            {"fullUrl": library_uuid, "resource": library, "request": {"method": "POST", "url": "Library"}},
        ],
    }
