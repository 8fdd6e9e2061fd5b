"""User tasks answered through a QuestionnaireResponse on the local mailbox (reference dsf-core.md §1.4).

The engine posts an ``in-progress`` QuestionnaireResponse when a user task is reached; a
local user completes it on the mailbox; the engine sets it ``amended``, stores it as the
variable ``questionnaireResponse`` and completes the task. Run on the engine harness (real
engine, database and mailbox), with restarts in between.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from dsf_core.api import ProcessPluginApi, UserTaskListener, Variables
from dsf_core.testing.engine import EngineHarness, item_answer, local_activity_definition
from tests.bpe import conformance
from tests.bpe.conformance import CLASS_MAP, JOURNAL, PROFILE, QUESTIONNAIRE, elements

FORM_KEY = f"{QUESTIONNAIRE}|1.0"


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pki")


@pytest.fixture(autouse=True)
def journal() -> Iterator[None]:
    JOURNAL.clear()
    yield
    JOURNAL.clear()


@pytest.fixture
async def h(tmp_path: Path, pki_dir: Path) -> AsyncIterator[EngineHarness]:
    async with EngineHarness(tmp_path, models=[conformance.BPMN_DIR / "user-task.bpmn"], class_map=CLASS_MAP,
                             resources=conformance.resources(conformance.models("user-task")), pki_dir=pki_dir) as running:
        yield running


def error_of(task: dict[str, Any]) -> str:
    [error] = [o["valueString"] for o in task.get("output", []) if o["type"]["coding"][0]["code"] == "error"]
    return str(error)


async def test_reaching_a_user_task_posts_an_in_progress_questionnaire_response(h: EngineHarness) -> None:
    start = await h.send(await h.task("dsfdev_userTask", "start"))
    assert start["status"] == "in-progress"
    view = await h.instance_of_task(start)
    [user_task] = view.user_tasks()
    [response] = await h.questionnaire_responses()
    assert response["status"] == "in-progress"
    assert response["questionnaire"] == FORM_KEY
    assert response["author"] == {"type": "Organization", "identifier": {
        "system": "http://dsf.dev/sid/organization-identifier", "value": "local.test"}}
    assert {"system": "http://dsf.dev/fhir/CodeSystem/read-access-tag", "code": "LOCAL"} in response["meta"]["tag"]
    assert [(i["linkId"], i.get("text"), i.get("answer")) for i in response["item"]] == [
        ("business-key", "The business-key of the process execution", [{"valueString": view.business_key}]),
        ("user-task-id", "The user-task-id of the process execution", [{"valueString": str(user_task.id)}]),
        ("intro", "Please decide.", None),
        ("approve", "Approve?", None),
        ("comment", "Comment", [{"valueString": "asked by local.test"}]),  # the create listener's
    ]
    assert [(c.kind, c.element) for c in JOURNAL] == [("task-listener:create", "Approve")]
    assert view.next_due is None and view.status == "running"


async def test_the_answered_response_completes_the_user_task_across_a_restart(h: EngineHarness) -> None:
    start = await h.send(await h.task("dsfdev_userTask", "start"))
    [response] = await h.questionnaire_responses(status="in-progress")
    await h.restart()
    assert len(await h.questionnaire_responses()) == 1  # the resumed instance posts no second one
    amended = await h.answer(response, {"approve": True, "comment": "fine"})
    assert amended["status"] == "amended"
    assert item_answer(amended, "approve") is True
    view = await h.instance_of_task(start)
    assert view.status == "completed"
    assert (await h.local.read("Task", start["id"]))["status"] == "completed"
    [after] = [c for c in JOURNAL if c.element == "AfterApproval"]
    stored = after.variables["questionnaireResponse"]
    assert (stored["id"], stored["status"]) == (response["id"], "amended")
    assert item_answer(stored, "comment") == "fine"


async def test_answered_responses_arrive_through_the_connector_catch_up(h: EngineHarness) -> None:
    instance_id = await h.start("dsfdev_userTask")
    [response] = await h.questionnaire_responses()
    await h.answer(response, {"approve": False}, deliver=False)
    await h.restart()
    assert await h.deliver_completed_responses() == 1
    assert (await h.instance(instance_id)).status == "completed"
    assert [r["status"] for r in await h.questionnaire_responses()] == ["amended"]


async def test_a_response_for_an_unknown_business_key_is_ignored_with_a_warning(
    h: EngineHarness, caplog: pytest.LogCaptureFixture
) -> None:
    instance_id = await h.start("dsfdev_userTask")
    [response] = await h.questionnaire_responses()
    for item in response["item"]:
        if item["linkId"] == "business-key":
            item["answer"] = [{"valueString": "no-such-instance"}]
    with caplog.at_level(logging.WARNING, logger="dsf.bpe.engine"):
        stray = await h.answer(response, {"approve": True})
    assert stray["status"] == "completed"  # not ours to amend
    assert any("no running instance with business-key no-such-instance" in r.getMessage() for r in caplog.records)
    view = await h.instance(instance_id)
    assert view.status == "running" and len(view.user_tasks()) == 1


async def test_a_response_for_a_user_task_that_is_not_waiting_is_ignored(
    h: EngineHarness, caplog: pytest.LogCaptureFixture
) -> None:
    instance_id = await h.start("dsfdev_userTask")
    [response] = await h.questionnaire_responses()
    for item in response["item"]:
        if item["linkId"] == "user-task-id":
            item["answer"] = [{"valueString": "00000000-0000-0000-0000-000000000000"}]
    with caplog.at_level(logging.WARNING, logger="dsf.bpe.engine"):
        assert (await h.answer(response, {"approve": True}))["status"] == "completed"
    assert any("waits in user task 00000000-0000-0000-0000-000000000000" in r.getMessage() for r in caplog.records)
    assert (await h.instance(instance_id)).status == "running"


async def test_a_missing_questionnaire_fails_the_instance_clearly(tmp_path: Path, pki_dir: Path) -> None:
    async with EngineHarness(tmp_path, models=[conformance.BPMN_DIR / "user-task.bpmn"], class_map=CLASS_MAP,
                             resources=conformance.resources(conformance.models("user-task"), with_questionnaire=False),
                             pki_dir=pki_dir) as h:
        start = await h.send(await h.task("dsfdev_userTask", "start"))
        assert start["status"] == "failed"
        assert error_of(start) == f"user task Approve: Questionnaire {FORM_KEY} not found on the local mailbox"
        assert await h.questionnaire_responses() == []
        assert (await h.instance_of_task(start)).status == "failed"


class Refusing(UserTaskListener):
    async def notify(self, api: ProcessPluginApi, variables: Variables, questionnaire_response: dict[str, Any]) -> None:
        raise PermissionError("no practitioner role configured")


async def test_a_failing_create_listener_fails_the_instance_before_anything_is_posted(
    tmp_path: Path, pki_dir: Path
) -> None:
    async with EngineHarness(tmp_path, models=[conformance.BPMN_DIR / "user-task.bpmn"],
                             class_map={**CLASS_MAP, "conformance.UserTaskCreated": Refusing},
                             resources=conformance.resources(conformance.models("user-task")), pki_dir=pki_dir) as h:
        start = await h.send(await h.task("dsfdev_userTask", "start"))
        assert start["status"] == "failed"
        assert error_of(start) == ("create listener conformance.UserTaskCreated of user task Approve failed: "
                                   "no practitioner role configured")
        assert await h.questionnaire_responses() == []


class OnComplete(UserTaskListener):
    def notify(self, api: ProcessPluginApi, variables: Variables, questionnaire_response: dict[str, Any]) -> None:
        JOURNAL.append(conformance.Call("task-listener:complete", "Ask", "OnComplete", {}, {
            "status": questionnaire_response["status"], "approve": item_answer(questionnaire_response, "approve")}))


ASK_THEN_WAIT = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:camunda="http://camunda.org/schema/1.0/bpmn" id="d" targetNamespace="http://bpmn.io/schema/bpmn">
  <bpmn:process id="dsfdev_askThenWait" isExecutable="true" camunda:versionTag="#{version}">
    <bpmn:startEvent id="Begin"><bpmn:messageEventDefinition messageRef="M" /></bpmn:startEvent>
    <bpmn:userTask id="Ask" camunda:formKey="http://dsf.dev/fhir/Questionnaire/conformance-approve|#{version}">
      <bpmn:extensionElements>
        <camunda:taskListener class="test.OnComplete" event="complete"/>
      </bpmn:extensionElements>
    </bpmn:userTask>
    <bpmn:receiveTask id="AwaitReply" messageRef="R" />
    <bpmn:endEvent id="Done" />
    <bpmn:sequenceFlow id="F0" sourceRef="Begin" targetRef="Ask" />
    <bpmn:sequenceFlow id="F1" sourceRef="Ask" targetRef="AwaitReply" />
    <bpmn:sequenceFlow id="F2" sourceRef="AwaitReply" targetRef="Done" />
  </bpmn:process>
  <bpmn:message id="M" name="start" />
  <bpmn:message id="R" name="reply" />
</bpmn:definitions>
"""


async def test_complete_listeners_and_a_response_delivered_again(tmp_path: Path, pki_dir: Path) -> None:
    model = tmp_path / "ask-then-wait.bpmn"
    model.write_text(ASK_THEN_WAIT)
    resources = [conformance.questionnaire(),
                 local_activity_definition("http://dsf.dev/bpe/Process/askThenWait", "1.0", ("start", "reply"), PROFILE)]
    async with EngineHarness(tmp_path / "h", models=[model], class_map={"test.OnComplete": OnComplete},
                             resources=resources, pki_dir=pki_dir) as h:
        instance_id = await h.start("dsfdev_askThenWait")
        [response] = await h.questionnaire_responses()
        assert item_answer(response, "comment") is None  # no create listener here
        amended = await h.answer(response, {"approve": True})
        assert amended["status"] == "amended"
        assert [(c.kind, c.variables) for c in JOURNAL] == [("task-listener:complete", {"status": "amended", "approve": True})]
        view = await h.instance(instance_id)
        assert view.waiting() == ["AwaitReply"] and view.user_tasks() == []
        # As if the engine stopped after saving but before the amended write: the response
        # comes again; it is set amended, the task is not completed twice.
        await h.restart()
        again = await h.local.update({**amended, "status": "completed"})
        await h.engine.handle_questionnaire_response(again)
        assert (await h.local.read("QuestionnaireResponse", str(amended["id"])))["status"] == "amended"
        assert len(JOURNAL) == 1
        assert (await h.instance(instance_id)).waiting() == ["AwaitReply"]


def test_user_task_listeners_are_checked_at_deployment(tmp_path: Path) -> None:
    from dsf_core.api import ServiceTask
    from dsf_core.api.plugin import ProcessPlugin
    from dsf_core.bpe.deployment import DeploymentError, load_plugin

    model = tmp_path / "ask-then-wait.bpmn"
    model.write_text(ASK_THEN_WAIT)
    plugin = ProcessPlugin(name="t", version="1.0.0.0", release_date=__import__("datetime").date(2026, 1, 1),
                           package="dsf_core", models=(str(model),), class_map={"test.OnComplete": ServiceTask})
    with pytest.raises(DeploymentError, match="camunda:class test.OnComplete is 'ServiceTask', not a dsf_core.api.UserTaskListener"):
        load_plugin(plugin, {"version": "1.0"})
    assert elements() == []
