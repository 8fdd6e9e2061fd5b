"""User tasks as the DSF does them: a QuestionnaireResponse on the local mailbox, answered by a person.

When a user task (``bpmn:userTask``, ``camunda:formKey`` = Questionnaire ``url|version``) is
reached, the engine reads that Questionnaire from its local mailbox and posts a
QuestionnaireResponse built here (:func:`new_response`)::

    status        in-progress
    questionnaire the form key
    author        the local organisation (logical reference)
    meta.tag      read-access LOCAL
    item          business-key  (answer: the instance's business key)
                  user-task-id  (answer: the SpiffWorkflow task id of the user task)
                  … every other item of the Questionnaire, with its text, without an answer

The task's ``create`` task listeners (:class:`~dsf_core.api.UserTaskListener`) may change it
before it is posted (:func:`open_user_task`). A local user completes it in the mailbox UI
(``status`` ``completed`` with answers); the ``QuestionnaireResponse?status=completed``
subscription hands it to the engine, which finds the instance by the ``business-key`` item
and the task by ``user-task-id``, runs the ``complete`` listeners, sets the response
``amended``, stores it as the variable ``questionnaireResponse`` and completes the task
(reference ``dsf-core.md`` §1.4).

Any problem — no Questionnaire with that url and version on the mailbox, a failing
listener, a refused post — is a :class:`UserTaskError`: the engine fails the instance with
its message.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from dsf_core.api.services import ProcessPluginApi
from dsf_core.api.tasks import organization_reference
from dsf_core.api.variables import Variables
from dsf_core.client import FhirClient, FhirClientError
from dsf_core.fhir import codes

__all__ = [
    "BUSINESS_KEY",
    "RESPONSE_KEY",
    "USER_TASK_ID",
    "VARIABLE",
    "UserTaskContext",
    "UserTaskError",
    "item_string",
    "new_response",
    "open_user_task",
    "run_task_listeners",
    "split_form_key",
]

log = logging.getLogger("dsf.bpe.engine")

BUSINESS_KEY: Final = "business-key"
USER_TASK_ID: Final = "user-task-id"
#: The process variable holding the answered (amended) QuestionnaireResponse.
VARIABLE: Final = "questionnaireResponse"
#: ``task.internal_data`` key: the id of the QuestionnaireResponse posted for a user task.
RESPONSE_KEY: Final = "dsf_questionnaire_response"

_TEXTS: Final = {
    BUSINESS_KEY: "The business-key of the process execution",
    USER_TASK_ID: "The user-task-id of the process execution",
}


def split_form_key(form_key: str | None) -> tuple[str, str]:
    """``url|version`` of a user task's form key; a ValueError says what is wrong."""
    url, _, version = (form_key or "").partition("|")
    if not url or not version:
        raise ValueError(f"form key {form_key!r} is not a Questionnaire canonical url|version")
    return url, version


def _item(source: Mapping[str, Any]) -> dict[str, Any]:
    item: dict[str, Any] = {"linkId": source["linkId"]}
    if "text" in source:
        item["text"] = source["text"]
    children = [_item(child) for child in source.get("item", []) if child.get("linkId")]
    if children:
        item["item"] = children
    return item


def new_response(
    questionnaire: Mapping[str, Any],
    form_key: str,
    *,
    business_key: str,
    user_task_id: str,
    organization: str,
    now: datetime,
) -> dict[str, Any]:
    """The ``in-progress`` QuestionnaireResponse of one user task (see the module docstring)."""
    items: list[dict[str, Any]] = [
        {"linkId": BUSINESS_KEY, "text": _TEXTS[BUSINESS_KEY], "answer": [{"valueString": business_key}]},
        {"linkId": USER_TASK_ID, "text": _TEXTS[USER_TASK_ID], "answer": [{"valueString": user_task_id}]},
    ]
    items += [
        _item(item) for item in questionnaire.get("item", [])
        if item.get("linkId") and item["linkId"] not in (BUSINESS_KEY, USER_TASK_ID)
    ]
    return {
        "resourceType": "QuestionnaireResponse",
        "meta": {"tag": [{"system": codes.READ_ACCESS_TAG, "code": "LOCAL"}]},
        "questionnaire": form_key,
        "status": "in-progress",
        "authored": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "author": organization_reference(organization),
        "item": items,
    }


def item_string(response: Mapping[str, Any], link_id: str) -> str | None:
    """The string answer of the top-level item ``link_id`` (``business-key``, ``user-task-id``)."""
    for item in response.get("item", []):
        if isinstance(item, Mapping) and item.get("linkId") == link_id:
            for answer in item.get("answer", []):
                value = answer.get("valueString") if isinstance(answer, Mapping) else None
                if isinstance(value, str) and value:
                    return value
    return None


class UserTaskError(Exception):
    """A user task cannot be opened or completed; the message says which and why."""


@dataclass(frozen=True)
class UserTaskContext:
    """What opening or completing one user task needs from the engine."""

    local: FhirClient
    api: ProcessPluginApi
    classes: Mapping[str, type[Any]]
    business_key: str
    variables: Variables
    now: datetime


async def open_user_task(task: Any, context: UserTaskContext) -> str:
    """Post the QuestionnaireResponse of a user task just reached, its ``create`` listeners run
    first; records its id on the task (``internal_data``) and returns it."""
    spec = task.task_spec
    try:
        url, version = split_form_key(spec.form_key)
        bundle = await context.local.search("Questionnaire", {"url": url, "version": version})
    except (ValueError, FhirClientError) as exc:
        raise UserTaskError(f"user task {spec.bpmn_id}: cannot read Questionnaire {spec.form_key}: {exc}") from exc
    found = [e["resource"] for e in bundle.get("entry", []) if e.get("search", {}).get("mode", "match") == "match"]
    if not found:
        raise UserTaskError(f"user task {spec.bpmn_id}: Questionnaire {spec.form_key} not found on the local mailbox")
    response = new_response(
        found[0], spec.form_key, business_key=context.business_key, user_task_id=str(task.id),
        organization=context.api.organization_identifier, now=context.now,
    )
    await run_task_listeners(task, "create", response, context)
    try:
        created = await context.local.create(response, minimal=True)
    except FhirClientError as exc:
        raise UserTaskError(f"user task {spec.bpmn_id}: the mailbox refused its QuestionnaireResponse: {exc}") from exc
    task.internal_data[RESPONSE_KEY] = created.id
    log.info("user task %s (business-key %s) waits for QuestionnaireResponse/%s", spec.bpmn_id,
             context.business_key, created.id)
    return created.id


async def run_task_listeners(task: Any, event: str, response: dict[str, Any], context: UserTaskContext) -> None:
    """Run the user task's ``camunda:taskListener``s for ``event`` on ``response``, in model order."""
    for listener in task.task_spec.binding.task_listeners:
        if listener.event != event:
            continue
        try:
            fields = {f.name: f.resolve(task.data) for f in listener.fields}
            result = context.classes[listener.class_name](fields).notify(context.api, context.variables, response)
            if inspect.isawaitable(result):
                await result
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise UserTaskError(f"{event} listener {listener.class_name} of user task {task.task_spec.bpmn_id} "
                                f"failed: {str(exc) or type(exc).__name__}") from exc
