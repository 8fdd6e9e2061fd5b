"""The Python the BPMN model of exampleorg_siteInventory binds with ``camunda:class``."""

from __future__ import annotations

import logging

from dsf_core.api import ProcessPluginApi, ServiceTask, Variables, tasks

log = logging.getLogger(__name__)


class LogStart(ServiceTask):
    """Logs who started the process and keeps it as the variable ``requester``.

    Replace the body with the work of your process. ``execute`` may be ``async`` (for FHIR
    clients and data stores: ``api.fhir``); raise ``dsf_core.api.BpmnError(code)`` to take an
    error boundary event; any other exception fails the start Task with an ``error`` output.
    """

    def execute(self, api: ProcessPluginApi, variables: Variables) -> None:
        requester = tasks.requester_identifier(variables.start_task)
        log.info("exampleorg_siteInventory started by %s at %s", requester, api.organization_identifier)
        variables.set("requester", requester)
