"""The activities of hello world: greet the requester; log what the user answered."""

from __future__ import annotations

import logging

from dsf_core.api import ProcessPluginApi, ServiceTask, Variables, tasks

log = logging.getLogger("dsf.plugin.hello_world")


class HelloWorld(ServiceTask):
    """Logs who asked, and records the greeting as a variable for tests to see."""

    def execute(self, api: ProcessPluginApi, variables: Variables) -> None:
        requester = tasks.requester_identifier(variables.start_task)
        log.info("Hello %s, from %s", requester, api.organization_identifier)
        variables.set("greeting", f"Hello {requester}")


class LogUserTaskResponse(ServiceTask):
    """Logs the answers of the completed QuestionnaireResponse (variable ``questionnaireResponse``)."""

    def execute(self, api: ProcessPluginApi, variables: Variables) -> None:
        response = variables.get("questionnaireResponse") or {}
        answers = {
            item.get("linkId"): [next(iter(a.values()), None) for a in item.get("answer", [])]
            for item in response.get("item", [])
            if item.get("linkId") not in ("business-key", "user-task-id")
        }
        log.info("the user answered %s", answers)
