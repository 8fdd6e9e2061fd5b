"""The URLs, codes and names of the MII report plugin (those of the Java plugin 1.1), in one place."""

from __future__ import annotations

from dsf_core.api import tasks

#: Plugin version ``a.b.c.d``; ``a.b`` is the resource version in every canonical URL.
PLUGIN_VERSION = "1.1.0.0"
RESOURCE_VERSION = ".".join(PLUGIN_VERSION.split(".")[:2])

#: The consortium whose DIC and HRP roles the processes use (fixed, as in the Java plugin).
MII_PARENT = "medizininformatik-initiative.de"

MII = "http://medizininformatik-initiative.de"
PROCESS_AUTOSTART = f"{MII}/bpe/Process/reportAutostart"
PROCESS_SEND = f"{MII}/bpe/Process/reportSend"
PROCESS_RECEIVE = f"{MII}/bpe/Process/reportReceive"

PROFILE_TASK_AUTOSTART_START = f"{MII}/fhir/StructureDefinition/task-report-autostart-start"
PROFILE_TASK_AUTOSTART_STOP = f"{MII}/fhir/StructureDefinition/task-report-autostart-stop"
PROFILE_TASK_SEND_START = f"{MII}/fhir/StructureDefinition/task-report-send-start"
PROFILE_TASK_SEND = f"{MII}/fhir/StructureDefinition/task-report-send"
PROFILE_TASK_RECEIVE = f"{MII}/fhir/StructureDefinition/task-report-receive"
#: The two Bundle profiles (their URLs lie under ``/fhir/Bundle/``, as the Java plugin names them).
PROFILE_SEARCH_BUNDLE = f"{MII}/fhir/Bundle/search-bundle-report"
PROFILE_SEARCH_BUNDLE_RESPONSE = f"{MII}/fhir/Bundle/search-bundle-response-report"

MESSAGE_AUTOSTART_START = "reportAutostartStart"
MESSAGE_AUTOSTART_STOP = "reportAutostartStop"
MESSAGE_SEND_START = "reportSendStart"
MESSAGE_SEND = "reportSend"
MESSAGE_RECEIVE = "reportReceive"

#: CodeSystem of the Task parameter types.
REPORT = f"{MII}/fhir/CodeSystem/report"
SEARCH_BUNDLE_RESPONSE_REFERENCE = "search-bundle-response-reference"
REPORT_STATUS_TYPE = "report-status"
TIMER_INTERVAL = "timer-interval"
FIRST_EXECUTION = "first-execution"
HRP_IDENTIFIER = "hrp-identifier"

#: CodeSystem of the status codes, and the extension carrying an error text.
REPORT_STATUS = f"{MII}/fhir/CodeSystem/report-status"
EXT_REPORT_STATUS_ERROR = f"{MII}/fhir/StructureDefinition/extension-report-status-error"

#: The report's identifier system: one living report per DIC, at the DIC and at the HRP.
CDS_REPORT_IDENTIFIER = f"{MII}/sid/cds-report-identifier"

READ_ACCESS_TAG = "http://dsf.dev/fhir/CodeSystem/read-access-tag"
EXT_READ_ACCESS_ORGANIZATION = "http://dsf.dev/fhir/StructureDefinition/extension-read-access-organization"
ORGANIZATION_IDENTIFIER = tasks.ORGANIZATION_IDENTIFIER

#: Default interval of the autostart loop and receipt wait (ISO-8601, as the Java plugin).
DEFAULT_TIMER_INTERVAL = "P7D"
DEFAULT_RECEIPT_TIMEOUT = "PT45M"


def search_bundle_code(version: str = RESOURCE_VERSION) -> str:
    """``search-bundle-v1.1``: the search Bundle's identifier value for a resource version."""
    return f"search-bundle-v{version}"


def search_bundle_identifier(version: str = RESOURCE_VERSION) -> str:
    """``<report CodeSystem>|search-bundle-v<a.b>``: what a DIC searches the HRP's mailbox for."""
    return f"{REPORT}|{search_bundle_code(version)}"


def read_access_tags(organization: str) -> list[dict[str, object]]:
    """``LOCAL`` plus ``ORGANIZATION`` for ``organization``: readable by us and that one peer."""
    return [
        {"system": READ_ACCESS_TAG, "code": "LOCAL"},
        {"system": READ_ACCESS_TAG, "code": "ORGANIZATION", "extension": [{
            "url": EXT_READ_ACCESS_ORGANIZATION,
            "valueIdentifier": {"system": ORGANIZATION_IDENTIFIER, "value": organization},
        }]},
    ]
