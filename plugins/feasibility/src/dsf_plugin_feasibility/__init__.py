"""MII feasibility plugin: ``medizininformatik-initiativede_feasibilityRequest`` (HRP) and
``medizininformatik-initiativede_feasibilityExecute`` (DIC), wire-compatible with the Java
plugin 1.1 (same message names, Task profiles, codes and authorization).

* :mod:`.request` — the HRP fans the query out to every DIC of its network and collects the
  answers (and, beyond Java, aggregates them on the request Task);
* :mod:`.execute` — a DIC evaluates the query on its data stores, obfuscates and answers;
* :mod:`.evaluation` — structured query (CCDL) and CQL evaluation, obfuscation;
* :mod:`.config` — the ``[plugins.feasibility]`` settings, checked at node start;
* :mod:`.profiles` — checks of the Task, Measure, Library and MeasureReport shapes.
"""

from __future__ import annotations

from datetime import date

from dsf_core.api import PluginSettings, ProcessPlugin

from dsf_plugin_feasibility.common import SETTINGS_NAME
from dsf_plugin_feasibility.config import FeasibilitySettings

__all__ = ["PLUGIN"]

_SHARED = (
    "fhir/CodeSystem/feasibility.json",
    "fhir/ValueSet/feasibility.json",
    "fhir/StructureDefinition/feasibility-task-single-dic-result.json",
    "fhir/StructureDefinition/feasibility-measure.json",
    "fhir/StructureDefinition/feasibility-measure-report.json",
    "fhir/StructureDefinition/feasibility-library.json",
)


def _check(settings: PluginSettings) -> None:
    FeasibilitySettings.parse(settings)


PLUGIN = ProcessPlugin(
    name="dsf-plugin-feasibility",
    version="1.1.0.0",
    release_date=date(2026, 11, 23),
    package=__name__,
    models=("bpe/feasibilityRequest.bpmn", "bpe/feasibilityExecute.bpmn"),
    fhir_resources={
        "medizininformatik-initiativede_feasibilityRequest": (
            "fhir/ActivityDefinition/feasibilityRequest.json",
            "fhir/StructureDefinition/feasibility-task-request.json",
            "fhir/StructureDefinition/feasibility-extension-dic.json",
            "fhir/StructureDefinition/extension-feasibility-dic-result.json",
            "fhir/CodeSystem/dsf-py-feasibility.json",
            "fhir/CodeSystem/dsf-py-feasibility-dic-status.json",
            "fhir/ValueSet/dsf-py-feasibility-dic-status.json",
            *_SHARED,
        ),
        "medizininformatik-initiativede_feasibilityExecute": (
            "fhir/ActivityDefinition/feasibilityExecute.json",
            "fhir/StructureDefinition/feasibility-task-execute.json",
            *_SHARED,
        ),
    },
    title="Feasibility",
    publisher="dsf-py",
    settings_name=SETTINGS_NAME,
    check_settings=_check,
)
