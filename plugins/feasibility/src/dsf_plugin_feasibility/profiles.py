"""Checks of the feasibility resource shapes, following the profiles the plugin ships (fhir/StructureDefinition).

The mailbox validates FHIR structure, not profiles; these functions check what the Java
plugin's profiles require of each resource, so tests (and a wary operator) can verify what
goes on the wire. Each returns the list of problems (empty = conforms).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from dsf_core.api import tasks

from dsf_plugin_feasibility.common import (
    FEASIBILITY,
    MEASURE_POPULATION,
    PROCESS_EXECUTE,
    PROCESS_REQUEST,
    PROFILE_LIBRARY,
    PROFILE_MEASURE,
    PROFILE_MEASURE_REPORT,
    PROFILE_TASK_EXECUTE,
    PROFILE_TASK_REQUEST,
    PROFILE_TASK_SINGLE_DIC_RESULT,
)

__all__ = ["check_library", "check_measure", "check_measure_report", "check_task"]

BPMN_MESSAGE = tasks.BPMN_MESSAGE

#: profile → (process URL, message name, correlation key required, feasibility input code, its count)
_TASKS = {
    PROFILE_TASK_REQUEST: (PROCESS_REQUEST, "feasibilityRequestMessage", False, "measure-reference"),
    PROFILE_TASK_EXECUTE: (PROCESS_EXECUTE, "feasibilityExecuteMessage", True, "measure-reference"),
    PROFILE_TASK_SINGLE_DIC_RESULT: (PROCESS_REQUEST, "feasibilitySingleDicResultMessage", True, "measure-report-reference"),
}


def _codes(parameter: Mapping[str, Any]) -> list[tuple[str | None, str | None]]:
    return [(c.get("system"), c.get("code")) for c in parameter.get("type", {}).get("coding", [])]


def _has_coding(concept: Mapping[str, Any] | None, system: str, code: str) -> bool:
    return any(c.get("system") == system and c.get("code") == code for c in (concept or {}).get("coding", []))


def check_task(task: Mapping[str, Any], version: str = "1.1") -> list[str]:
    """A feasibility Task against the profile its ``meta.profile`` claims (request, execute, single DIC result)."""
    profiles = [p.split("|")[0] for p in task.get("meta", {}).get("profile", [])]
    profile = next((p for p in profiles if p in _TASKS), None)
    if profile is None:
        return [f"meta.profile names none of {', '.join(sorted(_TASKS))}"]
    process, message, correlated, code = _TASKS[profile]
    problems = []
    if task.get("instantiatesCanonical") != f"{process}|{version}":
        problems.append(f"instantiatesCanonical must be {process}|{version}, is {task.get('instantiatesCanonical')!r}")
    for key in ("status", "intent", "authoredOn", "requester"):
        if not task.get(key):
            problems.append(f"{key} is required")
    if not task.get("restriction", {}).get("recipient"):
        problems.append("restriction.recipient is required")
    inputs = task.get("input", [])
    expected = 4 if correlated else 3
    if len(inputs) != expected:
        problems.append(f"exactly {expected} inputs are allowed, found {len(inputs)}")
    if tasks.message_input(task, "message-name") != message:
        problems.append(f"input message-name must be {message!r}")
    if not tasks.message_input(task, "business-key"):
        problems.append("input business-key is required")
    if correlated and not tasks.message_input(task, "correlation-key"):
        problems.append("input correlation-key is required")
    if not correlated and tasks.message_input(task, "correlation-key") is not None:
        problems.append("input correlation-key is not allowed")
    references = [p for p in inputs if (FEASIBILITY, code) in _codes(p)]
    if len(references) != 1:
        problems.append(f"exactly one input {code} is required, found {len(references)}")
    for parameter in references:
        value = parameter.get("valueReference")
        if not isinstance(value, dict) or not value.get("reference") or "identifier" in value:
            problems.append(f"input {code} must be a literal Reference (reference, no identifier)")
    for output in task.get("output", []):
        if (FEASIBILITY, "measure-report-reference") in _codes(output):
            # also on a received single-DIC result: the HRP links its local copy there (Java PR #70)
            value = output.get("valueReference")
            if not isinstance(value, dict) or "MeasureReport/" not in str(value.get("reference")) or "identifier" in value:
                problems.append("output measure-report-reference must be a literal Reference to a MeasureReport")
    return problems


def _metadata(resource: Mapping[str, Any], profile: str) -> list[str]:
    """Profile claimed, url present, status active (Measure and Library alike)."""
    problems = []
    if profile not in [p.split("|")[0] for p in resource.get("meta", {}).get("profile", [])]:
        problems.append(f"meta.profile must name {profile}")
    if not resource.get("url"):
        problems.append("url is required")
    if resource.get("status") != "active":
        problems.append("status must be active")
    return problems


def _population(resource: Mapping[str, Any], problems: list[str]) -> dict[str, Any] | None:
    """The one population of the one group (a problem is recorded when there is not exactly one)."""
    groups = resource.get("group", [])
    if len(groups) != 1 or len(groups[0].get("population", [])) != 1:
        problems.append("exactly one group with exactly one population is required")
        return None
    population: dict[str, Any] = groups[0]["population"][0]
    if not _has_coding(population.get("code"), MEASURE_POPULATION, "initial-population"):
        problems.append("the population must be measure-population#initial-population")
    return population


def check_measure(measure: Mapping[str, Any]) -> list[str]:
    problems = _metadata(measure, PROFILE_MEASURE)
    if len(measure.get("library", [])) != 1:
        problems.append("exactly one library is required")
    if not _has_coding(measure.get("scoring"), "http://terminology.hl7.org/CodeSystem/measure-scoring", "cohort"):
        problems.append("scoring must be measure-scoring#cohort")
    population = _population(measure, problems)
    if population is not None:
        criteria = population.get("criteria", {})
        if criteria.get("language") != "text/cql" or criteria.get("expression") != "InInitialPopulation":
            problems.append("the population criteria must be text/cql InInitialPopulation")
        if measure["group"][0].get("stratifier"):
            problems.append("stratifiers are not allowed")
    return problems


def check_library(library: Mapping[str, Any]) -> list[str]:
    problems = _metadata(library, PROFILE_LIBRARY)
    if not _has_coding(library.get("type"), "http://terminology.hl7.org/CodeSystem/library-type", "logic-library"):
        problems.append("type must be library-type#logic-library")
    content = library.get("content", [])
    by_type: dict[str, int] = {}
    for attachment in content:
        by_type[str(attachment.get("contentType"))] = by_type.get(str(attachment.get("contentType")), 0) + 1
        try:
            base64.b64decode(str(attachment.get("data", "")), validate=True)
        except ValueError:
            problems.append(f"content {attachment.get('contentType')}: data is not base64")
    for content_type, bounds in (("text/cql", (1, 1)), ("application/json", (1, 1)), ("application/x-fhir-query", (0, 1))):
        if not bounds[0] <= by_type.get(content_type, 0) <= bounds[1]:
            problems.append(f"content {content_type}: {bounds[0]}..{bounds[1]} required, found {by_type.get(content_type, 0)}")
    return problems


def check_measure_report(report: Mapping[str, Any]) -> list[str]:
    problems = []
    if PROFILE_MEASURE_REPORT not in [p.split("|")[0] for p in report.get("meta", {}).get("profile", [])]:
        problems.append(f"meta.profile must name {PROFILE_MEASURE_REPORT}")
    if report.get("status") != "complete":
        problems.append("status must be complete")
    if report.get("type") != "summary":
        problems.append("type must be summary")
    if not report.get("date"):
        problems.append("date is required")
    period = report.get("period", {})
    if not period.get("start") or not period.get("end"):
        problems.append("period.start and period.end are required")
    population = _population(report, problems)
    if population is not None and not isinstance(population.get("count"), int):
        problems.append("the population count is required")
    return problems
