"""What both sides of feasibility share: URLs and codes (those of the Java plugin), settings access, networks."""

from __future__ import annotations

from typing import Any

from dsf_core.api import ProcessPluginApi, tasks

from dsf_plugin_feasibility.config import FeasibilitySettings

#: The ``[plugins.<name>]`` table this plugin reads.
SETTINGS_NAME = "feasibility"

MII = "http://medizininformatik-initiative.de"
FEASIBILITY = f"{MII}/fhir/CodeSystem/feasibility"
PROFILE_TASK_REQUEST = f"{MII}/fhir/StructureDefinition/feasibility-task-request"
PROFILE_TASK_EXECUTE = f"{MII}/fhir/StructureDefinition/feasibility-task-execute"
PROFILE_TASK_SINGLE_DIC_RESULT = f"{MII}/fhir/StructureDefinition/feasibility-task-single-dic-result"
PROFILE_MEASURE = f"{MII}/fhir/StructureDefinition/feasibility-measure"
PROFILE_LIBRARY = f"{MII}/fhir/StructureDefinition/feasibility-library"
PROFILE_MEASURE_REPORT = f"{MII}/fhir/StructureDefinition/feasibility-measure-report"
PROCESS_REQUEST = f"{MII}/bpe/Process/feasibilityRequest"
PROCESS_EXECUTE = f"{MII}/bpe/Process/feasibilityExecute"

MEASURE_POPULATION = "http://terminology.hl7.org/CodeSystem/measure-population"
READ_ACCESS_TAG = "http://dsf.dev/fhir/CodeSystem/read-access-tag"
EXT_READ_ACCESS_ORGANIZATION = "http://dsf.dev/fhir/StructureDefinition/extension-read-access-organization"
ORGANIZATION_ROLE = "http://dsf.dev/fhir/CodeSystem/organization-role"
ORGANIZATION_IDENTIFIER = tasks.ORGANIZATION_IDENTIFIER

#: dsf-py's additions (the Java HRP leaves aggregation to the FDPG portal): per-DIC outcome outputs.
DSF_PY_FEASIBILITY = "http://dsf-py.dev/fhir/CodeSystem/feasibility"
DSF_PY_DIC_STATUS = "http://dsf-py.dev/fhir/CodeSystem/feasibility-dic-status"
EXT_DIC_RESULT = "http://dsf-py.dev/fhir/StructureDefinition/extension-feasibility-dic-result"

#: Evaluation period of every MeasureReport (as the Java plugin writes it).
PERIOD = {"start": "1900-01-01", "end": "2100-01-01"}


def settings_of(api: ProcessPluginApi) -> FeasibilitySettings:
    """The parsed ``[plugins.feasibility]`` table (parsed once per node)."""
    return api.shared("feasibility.settings", lambda: FeasibilitySettings.parse(api.plugin_settings(SETTINGS_NAME)))


async def parents_with_role(api: ProcessPluginApi, organization: str, role: str) -> list[str]:
    """Identifiers of the parent organisations in which ``organization`` is an active member with ``role``."""
    params = [
        ("active", "true"),
        ("participating-organization:identifier", f"{ORGANIZATION_IDENTIFIER}|{organization}"),
        ("role", f"{ORGANIZATION_ROLE}|{role}"),
        ("_include", "OrganizationAffiliation:primary-organization"),
    ]
    parents: list[str] = []
    async for bundle in api.fhir.local().search_pages("OrganizationAffiliation", params):
        for entry in bundle.get("entry", []):
            resource = entry.get("resource", {})
            if resource.get("resourceType") != "Organization" or not resource.get("active", True):
                continue
            identifier = tasks.identifier_value(resource, ORGANIZATION_IDENTIFIER)
            if identifier and identifier not in parents:
                parents.append(identifier)
    return sorted(parents)


def initial_population_count(report: dict[str, Any]) -> int:
    """The ``initial-population`` count of a summary MeasureReport; ValueError naming what is missing."""
    for group in report.get("group", []):
        for population in group.get("population", []):
            codings = population.get("code", {}).get("coding", [])
            if any(c.get("system") == MEASURE_POPULATION and c.get("code") == "initial-population" for c in codings):
                count = population.get("count")
                if not isinstance(count, int) or isinstance(count, bool):
                    raise ValueError("the initial-population of the MeasureReport has no count")
                return count
    raise ValueError("the MeasureReport has no initial-population population")


def summary_report(measure_url: str, count: int, now: str, *, group_code: str | None = None) -> dict[str, Any]:
    """A ``feasibility-measure-report``: complete, summary, one group, one initial-population count."""
    group: dict[str, Any] = {
        "population": [{
            "code": {"coding": [{"system": MEASURE_POPULATION, "code": "initial-population"}]},
            "count": count,
        }],
    }
    if group_code:
        group["code"] = {"coding": [{"system": FEASIBILITY, "code": group_code}]}
    return {
        "resourceType": "MeasureReport",
        "meta": {"profile": [PROFILE_MEASURE_REPORT]},
        "status": "complete",
        "type": "summary",
        "measure": measure_url,
        "date": now,
        "period": dict(PERIOD),
        "group": [group],
    }


def fhir_instant(api: ProcessPluginApi) -> str:
    return api.now().isoformat(timespec="milliseconds").replace("+00:00", "Z")
