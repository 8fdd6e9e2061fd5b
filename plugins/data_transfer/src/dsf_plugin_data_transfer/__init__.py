"""MII data transfer: a DIC sends a project's data set end-to-end encrypted to a DMS.

Processes ``medizininformatik-initiativede_dataSend`` (DIC, :mod:`.send`) and
``medizininformatik-initiativede_dataReceive`` (DMS, :mod:`.receive`), wire- and byte-compatible
with the Java plugin ``mii-process-data-transfer`` 1.0 (same URLs, messages, Task profiles, codes
and encryption). Data sets of any size stream (:mod:`.transfer`); a DMS publishes its public key
when it deploys (:mod:`.publish`).
"""

from __future__ import annotations

from datetime import date

from dsf_core.api import ProcessPlugin
from dsf_plugin_data_transfer.publish import publish_public_key
from dsf_plugin_data_transfer.status import SETTINGS_NAME, check_settings

__all__ = ["PLUGIN"]

_COMMON = (
    "fhir/CodeSystem/mii-data-set-status.json",
    "fhir/CodeSystem/data-transfer.json",
    "fhir/StructureDefinition/extension-data-set-status-error.json",
    "fhir/NamingSystem/mii-project-identifier.json",
    "fhir/ValueSet/data-transfer.json",
)

PLUGIN = ProcessPlugin(
    name="mii-process-data-transfer",
    version="1.0.0.0",
    release_date=date(2026, 11, 23),
    package=__name__,
    models=("bpe/send.bpmn", "bpe/receive.bpmn"),
    fhir_resources={
        "medizininformatik-initiativede_dataSend": (
            "fhir/ActivityDefinition/data-transfer-send.json",
            "fhir/StructureDefinition/task-data-send-start.json",
            "fhir/StructureDefinition/task-data-status.json",
            "fhir/ValueSet/mii-data-set-status-send.json",
            "fhir/Task/task-data-send-start.json",
            *_COMMON,
        ),
        "medizininformatik-initiativede_dataReceive": (
            "fhir/ActivityDefinition/data-transfer-receive.json",
            "fhir/StructureDefinition/task-data-send.json",
            "fhir/ValueSet/mii-data-set-status-receive.json",
            "fhir/CodeSystem/mii-cryptography.json",
            "fhir/ValueSet/mii-cryptography.json",
            *_COMMON,
        ),
    },
    title="MII data transfer",
    publisher="dsf-py",
    on_deployed=publish_public_key,
    settings_name=SETTINGS_NAME,
    check_settings=check_settings,
)
