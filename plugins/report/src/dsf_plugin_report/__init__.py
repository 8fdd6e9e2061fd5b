"""MII KDS report plugin: DICs periodically report the counts of their core-data-set store to the HRP.

Processes, wire-compatible with the Java plugin ``mii-process-report`` 1.1 (same message names,
Task profiles, codes and authorization):

* ``medizininformatik-initiativede_reportAutostart`` (DIC, :mod:`.autostart`) — the loop;
* ``medizininformatik-initiativede_reportSend`` (DIC, :mod:`.send`) — search Bundle from the HRP,
  :mod:`.checker` rules, searches on the KDS store, :mod:`.report` of totals, send, receipt;
* ``medizininformatik-initiativede_reportReceive`` (HRP, :mod:`.receive`) — store the report, answer.

The HRP publishes its search Bundle when it starts (:mod:`.search_bundle`); settings are the
node config's ``[plugins.report]`` table (:mod:`.config`).
"""

from __future__ import annotations

from datetime import date

from dsf_core.api import PluginSettings, ProcessPlugin

from dsf_plugin_report.codes import PLUGIN_VERSION
from dsf_plugin_report.config import SETTINGS_NAME, ReportSettings
from dsf_plugin_report.search_bundle import publish_search_bundle, search_bundle

__all__ = ["PLUGIN"]

_COMMON = ("fhir/CodeSystem/report.json", "fhir/ValueSet/report.json")
_EXCHANGE = (
    "fhir/CodeSystem/report-status.json",
    "fhir/StructureDefinition/extension-report-status-error.json",
    "fhir/NamingSystem/cds-report-identifier.json",
    "fhir/StructureDefinition/search-bundle-report.json",
    "fhir/StructureDefinition/search-bundle-response-report.json",
)


def _check(settings: PluginSettings) -> None:
    search_bundle(ReportSettings.parse(settings))


PLUGIN = ProcessPlugin(
    name="mii-process-report",
    version=PLUGIN_VERSION,
    release_date=date(2026, 11, 23),
    package=__name__,
    models=("bpe/report-autostart.bpmn", "bpe/report-send.bpmn", "bpe/report-receive.bpmn"),
    fhir_resources={
        "medizininformatik-initiativede_reportAutostart": (
            "fhir/ActivityDefinition/report-autostart.json",
            "fhir/StructureDefinition/task-report-autostart-start.json",
            "fhir/StructureDefinition/task-report-autostart-stop.json",
            "fhir/Task/task-report-autostart-start.json",
            "fhir/Task/task-report-autostart-stop.json",
            *_COMMON,
        ),
        "medizininformatik-initiativede_reportSend": (
            "fhir/ActivityDefinition/report-send.json",
            "fhir/StructureDefinition/task-report-send-start.json",
            "fhir/StructureDefinition/task-report-receive.json",
            "fhir/ValueSet/report-status-send.json",
            "fhir/Task/task-report-send-start.json",
            *_EXCHANGE,
            *_COMMON,
        ),
        "medizininformatik-initiativede_reportReceive": (
            "fhir/ActivityDefinition/report-receive.json",
            "fhir/StructureDefinition/task-report-send.json",
            "fhir/ValueSet/report-status-receive.json",
            *_EXCHANGE,
            *_COMMON,
        ),
    },
    title="MII KDS report",
    publisher="dsf-py",
    settings_name=SETTINGS_NAME,
    check_settings=_check,
    on_deployed=publish_search_bundle,
)
