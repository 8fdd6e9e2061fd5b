"""The conformance vocabulary of bpmn/README.md as real plugin API activities, for the engine tests.

Each class is an ordinary :mod:`dsf_core.api` activity bound through a class map, as a plugin
binds Java class names. What they did goes to :data:`JOURNAL` (the test's own record; the
engine keeps nothing of it), with the variables the tests look at.

``conformance.Send`` builds and POSTs a real DSF Task — to the local mailbox, since the
harness is one organisation: a target's organisation becomes the local one, its correlation
key is kept. The Task names ``…/Process/conformance|1.0``, which nobody deploys: the tests
play that peer and answer with ``reply`` Tasks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from dsf_core.api import (
    BpmnError,
    ExecutionListener,
    MessageSend,
    ProcessPluginApi,
    ServiceTask,
    Target,
    Targets,
    UserTaskListener,
    Variables,
)
from dsf_core.bpe.instance import TaskVariables
from dsf_core.testing.engine import local_activity_definition

BPMN_DIR = Path(__file__).resolve().parents[2] / "bpmn"
MODELS = tuple(sorted(BPMN_DIR.glob("*.bpmn")))
PROFILE = "http://dsf.dev/fhir/StructureDefinition/task-conformance|1.0"
PROCESS = "http://dsf.dev/bpe/Process/"
QUESTIONNAIRE = "http://dsf.dev/fhir/Questionnaire/conformance-approve"

#: Variables copied into each journal entry (when set).
WATCHED = ("name", "count", "greeting", "result", "status", "errorCode", "errorMessage", "target",
           "loopCounter", "correlationKey", "seen", "answer", "questionnaireResponse")


@dataclass(frozen=True)
class Call:
    kind: str  # service | send | listener:<event> | task-listener:<event>
    element: str
    class_name: str
    fields: Mapping[str, Any]
    variables: Mapping[str, Any]
    latest_task: str | None = None


JOURNAL: list[Call] = []


def record(kind: str, activity: Any, variables: Variables) -> Call:
    element = cast(TaskVariables, variables).activity_id
    try:
        latest = variables.latest_task.get("id")
    except LookupError:
        latest = None
    call = Call(
        kind, element, f"conformance.{type(activity).__name__}", dict(activity.fields),
        {name: variables.get(name) for name in WATCHED if variables.has(name)}, latest,
    )
    JOURNAL.append(call)
    return call


def elements(kind: str | None = None) -> list[str]:
    return [c.element for c in JOURNAL if kind is None or c.kind == kind]


class Record(ServiceTask):
    def execute(self, api: ProcessPluginApi, variables: Variables) -> None:
        record("service", self, variables)


class MayFail(ServiceTask):
    def execute(self, api: ProcessPluginApi, variables: Variables) -> None:
        record("service", self, variables)
        if variables.get("shouldFail"):
            raise BpmnError(self.field("errorCode"), "failed on purpose")


class SelectTargets(ServiceTask):
    def execute(self, api: ProcessPluginApi, variables: Variables) -> None:
        record("service", self, variables)
        organizations = variables.get("organizations", ["dic-1", "dic-2", "dic-3"])
        variables.set_targets(Targets.of(
            Target(organization, f"{organization}-endpoint", api.endpoint_url, correlation_key=f"ck-{organization}")
            for organization in organizations
        ))


class Increment(ServiceTask):
    def execute(self, api: ProcessPluginApi, variables: Variables) -> None:
        variables.set("count", variables.get("count", 0) + 1)


class Send(MessageSend):
    """Sends to the local mailbox; ``sendFails`` takes the error boundary as a refused send would."""

    def target(self, api: ProcessPluginApi, variables: Variables) -> Target:
        branch = variables.target
        return Target(api.organization_identifier, api.endpoint_identifier, api.endpoint_url,
                      correlation_key=branch.correlation_key if branch is not None else None)

    async def execute(self, api: ProcessPluginApi, variables: Variables) -> None:
        record("send", self, variables)
        if variables.get("sendFails"):
            raise BpmnError("target_not_allowed", "403 Forbidden")
        await super().execute(api, variables)


class SetCorrelationKey(ExecutionListener):
    def notify(self, api: ProcessPluginApi, variables: Variables) -> None:
        target = variables.target
        assert target is not None and target.correlation_key is not None
        variables.set("correlationKey", target.correlation_key)


class Listen(ExecutionListener):
    def notify(self, api: ProcessPluginApi, variables: Variables) -> None:
        record(f"listener:{self.fields.get('phase')}", self, variables)


class UserTaskCreated(UserTaskListener):
    """Pre-fills the ``comment`` item: proves the listener runs before the response is posted."""

    def notify(self, api: ProcessPluginApi, variables: Variables, questionnaire_response: dict[str, Any]) -> None:
        record("task-listener:create", self, variables)
        for item in questionnaire_response["item"]:
            if item["linkId"] == "comment":
                item["answer"] = [{"valueString": f"asked by {api.organization_identifier}"}]


CLASS_MAP: dict[str, type[Any]] = {
    f"conformance.{cls.__name__}": cls
    for cls in (Record, MayFail, SelectTargets, Increment, Send, SetCorrelationKey, Listen, UserTaskCreated)
}


def process_name(model: Path) -> str:
    """``dsfdev_<name>`` of a conformance model (read from the file, as deployment does)."""
    text = model.read_text()
    start = text.index('<bpmn:process id="dsfdev_') + len('<bpmn:process id="dsfdev_')
    return text[start:text.index('"', start)]


def questionnaire(items: Sequence[Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """The Questionnaire of user-task.bpmn's form key."""
    return {
        "resourceType": "Questionnaire",
        "meta": {"tag": [{"system": "http://dsf.dev/fhir/CodeSystem/read-access-tag", "code": "ALL"}]},
        "url": QUESTIONNAIRE,
        "version": "1.0",
        "status": "active",
        "item": list(items) if items is not None else [
            {"linkId": "business-key", "text": "The business-key of the process execution", "type": "string", "required": True},
            {"linkId": "user-task-id", "text": "The user-task-id of the process execution", "type": "string", "required": True},
            {"linkId": "intro", "text": "Please decide.", "type": "display"},
            {"linkId": "approve", "text": "Approve?", "type": "boolean", "required": True},
            {"linkId": "comment", "text": "Comment", "type": "string"},
        ],
    }


def models(*names: str) -> tuple[Path, ...]:
    """The conformance models named by file stem (``"timer-duration"``); all of them without names."""
    return tuple(BPMN_DIR / f"{name}.bpmn" for name in names) if names else MODELS


def resources(deployed: Sequence[Path] = MODELS, *, with_questionnaire: bool = True) -> list[dict[str, Any]]:
    """What a conformance plugin would deploy: an ActivityDefinition per process letting the local
    organisation send it ``start`` and ``reply``, one for the ``conformance`` peer, the Questionnaire."""
    definitions = [
        local_activity_definition(PROCESS + process_name(model), "1.0", ("start", "reply"), PROFILE)
        for model in deployed
    ]
    definitions.append(local_activity_definition(PROCESS + "conformance", "1.0", ("request", "reply"), PROFILE))
    return [*definitions, *([questionnaire()] if with_questionnaire else [])]
