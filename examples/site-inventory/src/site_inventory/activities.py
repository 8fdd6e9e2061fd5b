"""The activities of the site inventory: asking (process siteInventory) and answering (siteInventoryAnswer).

The asking side writes its result as outputs of the start Task: one ``status`` (a code of
``http://example.org/fhir/CodeSystem/site-inventory-status``) and, when the organisation
answered, one ``process`` per process it runs (``<process id>|<version>``).
"""

from __future__ import annotations

import logging
from typing import Any

from dsf_core.api import (
    BpmnError,
    FhirClientError,
    MessageSend,
    ProcessPluginApi,
    ServiceTask,
    Target,
    Variables,
    classify,
    tasks,
)

from site_inventory.settings import SETTINGS_NAME, answer_timeout

log = logging.getLogger(__name__)

CODE_SYSTEM = "http://example.org/fhir/CodeSystem/site-inventory"
STATUS = "http://example.org/fhir/CodeSystem/site-inventory-status"


# ----------------------------------------------------------------------------- asking


class SelectTarget(ServiceTask):
    """The organisation named by the start Task's ``organization`` input, with its endpoint.

    Unknown (no active organisation with an endpoint in the allow list): the BPMN error
    ``unknown-organization``, which the model catches with an error boundary event.
    """

    async def execute(self, api: ProcessPluginApi, variables: Variables) -> None:
        reference = tasks.first_input(variables.start_task, CODE_SYSTEM, "organization")
        identifier = reference.get("identifier", {}).get("value") if isinstance(reference, dict) else None
        target = await api.targets.of_organization(identifier) if isinstance(identifier, str) else None
        if target is None:
            raise BpmnError("unknown-organization", f"no active organization {identifier!r} with an endpoint")
        variables.set_target(target)
        # the timer of the model's answer timeout reads this variable: ${answerTimeout}
        variables.set("answerTimeout", answer_timeout(api.plugin_settings(SETTINGS_NAME)))


class SendRequest(MessageSend):
    """The ``siteInventoryRequest``; a refused or failed send takes the model's error boundary event
    with the DSF code (``not-allowed`` for 401/403, ``not-reachable`` for the rest)."""

    async def on_send_error(self, api: ProcessPluginApi, variables: Variables, target: Target,
                            error: FhirClientError) -> None:
        log.warning("site inventory request to %s failed: %s", target.organization_identifier, error)
        raise BpmnError(classify(error), f"{target.organization_identifier}: {error}")


class SaveAnswer(ServiceTask):
    """Keeps the processes the answer names (the answer is the Task delivered last)."""

    def execute(self, api: ProcessPluginApi, variables: Variables) -> None:
        variables.set("processes", sorted(tasks.input_strings(variables.latest_task, CODE_SYSTEM, "process")))


class SaveStatus(ServiceTask):
    """Writes the outputs to the start Task; every path of the model ends here."""

    def execute(self, api: ProcessPluginApi, variables: Variables) -> None:
        # statusCode is set by the error boundary events; no answer and no error: the timer fired
        code = variables.get("statusCode") or ("answer-received" if variables.has("processes") else "answer-missing")
        if variables.get("statusMessage"):
            log.warning("site inventory: %s (%s)", code, variables.get("statusMessage"))
        start = variables.start_task
        tasks.add_output(start, CODE_SYSTEM, "status", "Coding", {"system": STATUS, "code": code})
        for process in variables.get("processes") or []:
            tasks.add_output(start, CODE_SYSTEM, "process", "String", process)


# ----------------------------------------------------------------------------- answering


class SelectRequester(ServiceTask):
    """The organisation that asked, with its endpoint; not in the allow list: the Task fails."""

    async def execute(self, api: ProcessPluginApi, variables: Variables) -> None:
        requester = tasks.requester_identifier(variables.start_task)
        target = await api.targets.of_organization(requester) if requester else None
        if target is None:
            raise LookupError(f"the requester {requester!r} has no active endpoint in the allow list")
        variables.set_target(target)


class SendAnswer(MessageSend):
    """The ``siteInventoryAnswer``: one ``process`` input per process this node runs."""

    def additional_inputs(self, api: ProcessPluginApi, variables: Variables, target: Target) -> list[dict[str, Any]]:
        return [tasks.parameter(CODE_SYSTEM, "process", "String", p) for p in sorted(api.active_processes)]
