"""Base classes of the Python code a BPMN model binds with ``camunda:class``.

==============================  ====================================================
BPMN element                    class
==============================  ====================================================
service task                    :class:`ServiceTask` (``execute``)
send task, message intermediate :class:`MessageSend` (builds and POSTs the Task;
throw event, message end event  override ``additional_inputs``/``on_send_error``)
execution listener              :class:`ExecutionListener` (``notify``, synchronous)
user task listener              :class:`UserTaskListener` (``notify``; ``create``:
                                before the QuestionnaireResponse is posted)
==============================  ====================================================

The engine makes a new instance for every execution (activities keep no state between
runs) and passes the element's ``camunda:field`` injections as ``fields`` — strings, or
the value of a ``camunda:expression`` evaluated at that moment.

``execute`` may be a coroutine function (I/O: FHIR clients, data stores) or a plain
function. Raise :class:`~dsf_core.api.errors.BpmnError` to take an error boundary event;
any other exception fails the activity (see the errors module).
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import Any, ClassVar

from dsf_core.api.services import ProcessPluginApi
from dsf_core.api.targets import Target
from dsf_core.api.tasks import BPMN_MESSAGE, organization_reference, parameter
from dsf_core.api.variables import Variables
from dsf_core.client import FhirClientError

__all__ = ["ExecutionListener", "MessageSend", "ServiceTask", "UserTaskListener"]


class _Activity:
    def __init__(self, fields: Mapping[str, Any] | None = None) -> None:
        self.fields: Mapping[str, Any] = dict(fields or {})

    def field(self, name: str) -> Any:
        """A ``camunda:field`` injection; a clear error when the model lacks it."""
        try:
            return self.fields[name]
        except KeyError:
            raise LookupError(f"{type(self).__name__} needs the camunda:field {name!r} in the BPMN model") from None


class ServiceTask(_Activity):
    """A service task's activity."""

    def execute(self, api: ProcessPluginApi, variables: Variables) -> Awaitable[None] | None:
        raise NotImplementedError(f"{type(self).__name__}.execute")


class ExecutionListener(_Activity):
    """Runs when an element is entered (``start``) or left (``end``); no I/O, no waiting."""

    def notify(self, api: ProcessPluginApi, variables: Variables) -> None:
        raise NotImplementedError(f"{type(self).__name__}.notify")


class SetCorrelationKey(ExecutionListener):
    """The framework listener of a fan-out branch (Java ``SetCorrelationKeyListener``): put it on the
    event-based gateway that awaits the reply, so the reply is matched by the branch's target's
    correlation key (variable ``correlationKey``)."""

    def notify(self, api: ProcessPluginApi, variables: Variables) -> None:
        target = variables.target
        if target is None or not target.correlation_key:
            raise LookupError("SetCorrelationKey needs the element variable 'target' with a correlation key")
        variables.set("correlationKey", target.correlation_key)


class UserTaskListener(_Activity):
    """A ``camunda:taskListener`` of a user task.

    ``create``: runs when the user task is reached, before the engine posts its
    QuestionnaireResponse (``in-progress``, items ``business-key``, ``user-task-id`` and the
    Questionnaire's items) to the local mailbox; ``questionnaire_response`` is that resource,
    to change in place (pre-filled answers, a questionnaire-authorization extension …).
    ``complete``: runs with the answered response before the task completes. May be a
    coroutine function; an exception fails the instance.
    """

    def notify(
        self, api: ProcessPluginApi, variables: Variables, questionnaire_response: dict[str, Any]
    ) -> Awaitable[None] | None:
        return None


class MessageSend(_Activity):
    """Sends the element's message as a FHIR Task to ``target(variables)``.

    The Task is built as the Java DSF builds it: profile, ``instantiatesCanonical``,
    status ``requested``, intent ``order``, ``authoredOn``, requester = the local
    organisation, ``restriction.recipient`` = the target organisation, inputs
    ``message-name``, ``business-key``, ``correlation-key`` (when the target has one),
    then :meth:`additional_inputs`. The element's fields ``instantiatesCanonical``,
    ``messageName`` and ``profile`` say what to send.
    """

    #: "same": the recipient replies to this instance; "new": a fresh business key (no reply expected).
    business_key_strategy: ClassVar[str] = "same"

    @property
    def instantiates_canonical(self) -> str:
        return str(self.field("instantiatesCanonical"))

    @property
    def message_name(self) -> str:
        return str(self.field("messageName"))

    @property
    def profile(self) -> str:
        return str(self.field("profile"))

    def target(self, api: ProcessPluginApi, variables: Variables) -> Target:
        """Where to send: the variable ``target`` (a fan-out branch's element variable)."""
        target = variables.target
        if target is None:
            raise LookupError(f"{type(self).__name__}: no variable 'target' to send {self.message_name!r} to")
        return target

    def additional_inputs(self, api: ProcessPluginApi, variables: Variables, target: Target) -> list[dict[str, Any]]:
        """Plugin-specific inputs appended after the message inputs."""
        return []

    def build_task(self, api: ProcessPluginApi, variables: Variables, target: Target) -> dict[str, Any]:
        business_key = variables.business_key if self.business_key_strategy == "same" else _new_key()
        inputs = [
            parameter(BPMN_MESSAGE, "message-name", "String", self.message_name),
            parameter(BPMN_MESSAGE, "business-key", "String", business_key),
        ]
        if target.correlation_key:
            inputs.append(parameter(BPMN_MESSAGE, "correlation-key", "String", target.correlation_key))
        inputs += self.additional_inputs(api, variables, target)
        return {
            "resourceType": "Task",
            "meta": {"profile": [self.profile]},
            "instantiatesCanonical": self.instantiates_canonical,
            "status": "requested",
            "intent": "order",
            "authoredOn": api.now().isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "requester": organization_reference(api.organization_identifier),
            "restriction": {"recipient": [organization_reference(target.organization_identifier)]},
            "input": inputs,
        }

    async def execute(self, api: ProcessPluginApi, variables: Variables) -> None:
        target = self.target(api, variables)
        task = self.build_task(api, variables, target)
        try:
            url = await api.send_task(task, target)
        except FhirClientError as error:
            await self.on_send_error(api, variables, target, error)
        else:
            await self.on_sent(api, variables, target, url)

    async def on_sent(self, api: ProcessPluginApi, variables: Variables, target: Target, task_url: str) -> None:
        """The Task was accepted at ``task_url`` (absolute). Default: nothing; override to remember it,
        e.g. to read the remote Task's status when no answer comes."""

    async def on_send_error(
        self, api: ProcessPluginApi, variables: Variables, target: Target, error: FhirClientError
    ) -> None:
        """A refused or failed send. Default: fail (re-raise); override to record a status instead."""
        raise error


def _new_key() -> str:
    import uuid

    return str(uuid.uuid4())
