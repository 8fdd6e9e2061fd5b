"""Every conformance model in bpmn/ through the real engine: persistence, restarts, the due-time index.

Each scenario runs on an :class:`~dsf_core.testing.engine.EngineHarness` — a real Engine on a
real SQLite database with a real local mailbox — and restarts the engine between its steps,
so what happens after the restart was read back from the database. Messages are FHIR Tasks
on the mailbox; timers fire only when the test moves the clock and asks for due timers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dsf_core.api import ProcessPluginApi, ServiceTask, Variables, tasks
from dsf_core.client import FhirUnreachable
from dsf_core.testing.engine import START, EngineHarness, InstanceView
from tests.bpe import conformance
from tests.bpe.conformance import CLASS_MAP, JOURNAL, PROFILE, elements

CONFORMANCE_PEER = "http://dsf.dev/bpe/Process/conformance|1.0"


@pytest.fixture(scope="session")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pki")  # one development PKI for every harness: faster


@pytest.fixture(autouse=True)
def journal() -> Iterator[list[conformance.Call]]:
    JOURNAL.clear()
    yield JOURNAL
    JOURNAL.clear()


def harness(
    tmp_path: Path, pki_dir: Path, *names: str, class_map: dict[str, type[Any]] | None = None, **kwargs: Any
) -> EngineHarness:
    """A harness running the conformance models ``names`` (file stems) with the conformance classes."""
    deployed = conformance.models(*names)
    return EngineHarness(
        tmp_path, models=deployed, class_map={**CLASS_MAP, **(class_map or {})},
        resources=conformance.resources(deployed), pki_dir=pki_dir, **kwargs,
    )


@pytest.fixture
async def h(request: pytest.FixtureRequest, tmp_path: Path, pki_dir: Path) -> AsyncIterator[EngineHarness]:
    """The harness with the models of the test's ``models`` mark."""
    mark = request.node.get_closest_marker("models")
    assert mark is not None, "mark the test with @models(...)"
    async with harness(tmp_path, pki_dir, *mark.args) as running:
        yield running


models = pytest.mark.models


async def reply(h: EngineHarness, view: InstanceView, *, correlation_key: str | None = None) -> dict[str, Any]:
    """The peer's ``reply`` Task to the instance, posted and handed to the engine."""
    task = await h.task(view.process_key, "reply", business_key=view.business_key, correlation_key=correlation_key)
    return await h.send(task)


def error_of(task: dict[str, Any]) -> str:
    [error] = [o["valueString"] for o in task.get("output", []) if o["type"]["coding"][0]["code"] == "error"]
    return str(error)


# ---------------------------------------------------------------- service tasks, listeners, parameters


@models("message-start-service-end")
async def test_service_task_runs_its_class_with_fields_and_the_instance_is_stored(h: EngineHarness) -> None:
    instance_id = await h.start("dsfdev_serviceTask", variables={"name": "Ada", "count": 1})
    await h.restart()
    view = await h.instance(instance_id)
    assert view.status == "completed" and view.next_due is None
    assert view.variables == {"name": "Ada", "count": 1}
    [call] = JOURNAL
    assert (call.kind, call.element, call.class_name) == ("service", "Work", "conformance.Record")
    assert call.fields == {"label": "fixed text, ${not} evaluated", "greeting": "Hello Ada", "count": 2}


async def test_an_activity_running_when_the_engine_stops_runs_again_after_the_restart(
    tmp_path: Path, pki_dir: Path
) -> None:
    entered = asyncio.Event()
    release = {"open": False}

    class Gate(ServiceTask):
        async def execute(self, api: ProcessPluginApi, variables: Variables) -> None:
            conformance.record("service", self, variables)
            if not release["open"]:
                entered.set()
                await asyncio.Event().wait()  # until the "crash" cancels it

    async with harness(tmp_path, pki_dir, "message-start-service-end", class_map={"conformance.Record": Gate}) as h:
        starting = asyncio.ensure_future(h.start("dsfdev_serviceTask", variables={"name": "Ada", "count": 0}))
        await asyncio.wait_for(entered.wait(), 10)
        [instance_id] = await h.instance_ids("dsfdev_serviceTask")
        view = await h.instance(instance_id)
        assert view.status == "running"  # saved before the activity ran
        starting.cancel()  # the process dies while the activity runs
        with pytest.raises(asyncio.CancelledError):
            await starting
        release["open"] = True
        await h.restart()
        assert (await h.instance(instance_id)).status == "completed"
        assert elements() == ["Work", "Work"]  # at least once, as Camunda's jobs


@models("execution-listener")
async def test_execution_listeners_run_at_start_and_end(h: EngineHarness) -> None:
    instance_id = await h.start("dsfdev_executionListener")
    await h.restart()
    assert (await h.instance(instance_id)).status == "completed"
    assert [(c.kind, c.element, c.fields.get("phase")) for c in JOURNAL] == [
        ("listener:start", "Work", "start"), ("service", "Work", None), ("listener:end", "Work", "end"),
    ]


@models("io-parameters")
async def test_input_parameters_are_local_output_parameters_are_set(h: EngineHarness) -> None:
    instance_id = await h.start("dsfdev_ioParameters", variables={"name": "Ada"})
    await h.restart()
    view = await h.instance(instance_id)
    [call] = JOURNAL
    assert call.variables["greeting"] == "Hello Ada"
    assert view.status == "completed"
    assert view.variables == {"name": "Ada", "result": "Hello Ada!", "status": "done"}


# ---------------------------------------------------------------- messages as Tasks


@models("message-throw-catch")
async def test_message_throw_posts_a_task_and_the_catch_takes_the_reply_task(h: EngineHarness) -> None:
    instance_id = await h.start("dsfdev_messageThrowCatch")
    view = await h.instance(instance_id)
    assert view.status == "running" and view.waiting() == ["ReceiveReply"] and view.next_due is None
    [request] = await h.search("Task", {"status": "requested"})
    assert request["instantiatesCanonical"] == CONFORMANCE_PEER
    assert request["meta"]["profile"] == [PROFILE]
    assert tasks.message_input(request, "message-name") == "request"
    assert tasks.message_input(request, "business-key") == view.business_key
    assert tasks.requester_identifier(request) == "local.test"

    await h.restart()
    answer = await h.local.create(await h.task("dsfdev_messageThrowCatch", "reply", business_key=view.business_key))
    # the connector's catch-up hands over both requested Tasks: the reply and the request nobody runs
    assert await h.deliver_requested() == 2
    view = await h.instance(instance_id)
    assert view.status == "completed"
    assert elements() == ["SendRequest", "HandleReply"]
    assert JOURNAL[-1].latest_task == answer.id  # the activity sees the Task that reached its branch
    assert (await h.local.read("Task", answer.id))["status"] == "completed"
    refused = await h.local.read("Task", request["id"])
    assert refused["status"] == "failed" and "dsfdev_conformance|1.0 is not deployed" in error_of(refused)

    # the same Task again (a websocket push after the catch-up) changes nothing
    again = {**(await h.local.read("Task", answer.id)), "status": "requested"}
    await h.engine.handle_task(again)
    assert (await h.local.read("Task", answer.id))["status"] == "completed"
    assert elements() == ["SendRequest", "HandleReply"]


@models("send-receive")
async def test_send_task_then_receive_task(h: EngineHarness) -> None:
    instance_id = await h.start("dsfdev_sendReceive")
    view = await h.instance(instance_id)
    assert view.waiting() == ["ReceiveReply"]
    [request] = await h.search("Task", {"status": "requested"})
    assert tasks.message_input(request, "message-name") == "request"
    await h.restart()
    answer = await reply(h, view)
    assert answer["status"] == "completed"
    assert (await h.instance(instance_id)).status == "completed"


@models("message-end")
async def test_message_end_event_sends(h: EngineHarness) -> None:
    instance_id = await h.start("dsfdev_messageEnd")
    await h.restart()
    assert (await h.instance(instance_id)).status == "completed"
    assert [(c.kind, c.element) for c in JOURNAL] == [("service", "Prepare"), ("send", "SendReply")]
    [sent] = await h.search("Task", {"status": "requested"})
    assert (sent["instantiatesCanonical"], tasks.message_input(sent, "message-name")) == (CONFORMANCE_PEER, "reply")


@models("send-receive")
async def test_a_task_whose_status_write_was_lost_is_written_when_it_comes_again(
    h: EngineHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    instance_id = await h.start("dsfdev_sendReceive")
    view = await h.instance(instance_id)
    local = h.engine.local
    write = local.update

    async def lost(resource: Any, **options: Any) -> dict[str, Any]:
        if resource.get("resourceType") == "Task":
            raise FhirUnreachable("PUT", f"Task/{resource.get('id')}", "connection reset")
        return await write(resource, **options)

    monkeypatch.setattr(local, "update", lost)
    answer = await reply(h, view)  # the reply ends the instance in one step; its status writes are lost
    assert answer["status"] == "requested"
    assert (await h.instance(instance_id)).status == "completed"
    monkeypatch.undo()
    await h.restart()
    assert await h.deliver_requested() == 2  # the reply again, and the request nobody runs
    assert (await h.local.read("Task", answer["id"]))["status"] == "completed"
    assert (await h.instance(instance_id)).status == "completed"


@models("message-throw-catch")
async def test_a_task_for_an_instance_that_waits_for_something_else_is_refused(h: EngineHarness) -> None:
    instance_id = await h.start("dsfdev_messageThrowCatch")
    view = await h.instance(instance_id)
    await h.restart()
    wrong = await h.send(await h.task("dsfdev_messageThrowCatch", "start", business_key=view.business_key))
    assert wrong["status"] == "failed"
    assert error_of(wrong).startswith("Unable to correlate Task: no element waits for message 'start'")
    assert (await h.instance(instance_id)).waiting() == ["ReceiveReply"]


# ---------------------------------------------------------------- timers


@models("timer-duration", "timer-expression", "timer-date", "timer-cycle")
@pytest.mark.parametrize(
    ("model", "variables", "due"),
    [
        ("dsfdev_timerDuration", {}, START + timedelta(seconds=30)),
        ("dsfdev_timerExpression", {"timerInterval": "PT5M"}, START + timedelta(minutes=5)),
        ("dsfdev_timerDate", {}, START.replace(hour=10)),
        ("dsfdev_timerCycle", {}, START + timedelta(seconds=10)),  # a catch event fires at the first occurrence
    ],
)
async def test_intermediate_timer_fires_when_due_and_not_before(
    h: EngineHarness, model: str, variables: dict[str, Any], due: datetime
) -> None:
    instance_id = await h.start(model, variables=variables)
    view = await h.instance(instance_id)
    assert (view.waiting(), view.next_due) == (["Wait"], due)
    await h.restart()
    h.clock.set(due - timedelta(milliseconds=1))
    assert await h.run_due_timers() == 0
    view = await h.instance(instance_id)
    assert (view.status, view.waiting(), view.next_due) == ("running", ["Wait"], due)
    assert JOURNAL == []
    h.clock.set(due)
    assert await h.run_due_timers() == 1
    view = await h.instance(instance_id)
    assert (view.status, view.next_due) == ("completed", None)
    assert elements() == ["AfterTimer"]


@models("timer-expression")
async def test_timer_expression_that_does_not_evaluate_fails_the_start_task(h: EngineHarness) -> None:
    start = await h.send(await h.task("dsfdev_timerExpression", "start"))
    assert start["status"] == "failed"
    assert "unknown variable 'timerInterval'" in error_of(start)
    await h.restart()
    assert (await h.instance_of_task(start)).status == "failed"


@models("timer-boundary-interrupting")
async def test_interrupting_timer_boundary_fires(h: EngineHarness) -> None:
    instance_id = await h.start("dsfdev_timerBoundaryInterrupting")
    view = await h.instance(instance_id)
    assert (view.waiting(), view.next_due) == (["AwaitReply", "ReplyTimeout"], START + timedelta(minutes=1))
    await h.restart()
    h.clock.advance(seconds=59)
    assert await h.run_due_timers() == 0
    h.clock.advance(seconds=1)
    assert await h.run_due_timers() == 1
    view = await h.instance(instance_id)
    assert view.status == "completed" and "AwaitReply" in view.cancelled()
    assert elements() == ["HandleTimeout"]
    late = await reply(h, view)  # the reply comes after the timeout
    assert late["status"] == "failed" and "Unable to correlate" in error_of(late)


@models("timer-boundary-interrupting")
async def test_interrupting_timer_boundary_cancelled_by_the_reply(h: EngineHarness) -> None:
    instance_id = await h.start("dsfdev_timerBoundaryInterrupting")
    await h.restart()
    view = await h.instance(instance_id)
    assert (await reply(h, view))["status"] == "completed"
    view = await h.instance(instance_id)
    assert (view.status, view.next_due) == ("completed", None)
    h.clock.advance(hours=1)
    assert await h.run_due_timers() == 0
    assert elements() == ["HandleReply"]


@models("timer-boundary-non-interrupting")
async def test_non_interrupting_cycle_boundary_repeats_until_the_reply(h: EngineHarness) -> None:
    instance_id = await h.start("dsfdev_timerBoundaryNonInterrupting")
    assert (await h.instance(instance_id)).next_due == START + timedelta(minutes=1)
    h.clock.advance(minutes=1)
    assert await h.run_due_timers() == 1
    view = await h.instance(instance_id)
    assert elements() == ["Remind"] and "AwaitReply" in view.waiting()
    assert view.next_due == START + timedelta(minutes=2)
    await h.restart()
    h.clock.advance(seconds=59)
    assert await h.run_due_timers() == 0
    h.clock.advance(seconds=1)
    assert await h.run_due_timers() == 1
    view = await h.instance(instance_id)
    assert elements() == ["Remind", "Remind"]
    assert view.next_due is None and view.waiting() == ["AwaitReply"]  # R2: done
    h.clock.advance(hours=1)
    assert await h.run_due_timers() == 0
    assert (await reply(h, view))["status"] == "completed"
    assert elements() == ["Remind", "Remind", "HandleReply"]
    assert (await h.instance(instance_id)).status == "completed"


@models("event-based-gateway")
async def test_event_based_gateway_message_wins(h: EngineHarness) -> None:
    instance_id = await h.start("dsfdev_eventBasedGateway")
    view = await h.instance(instance_id)
    assert view.next_due == START + timedelta(seconds=20)
    await h.restart()
    answer = await h.send(await h.task(
        "dsfdev_eventBasedGateway", "reply", business_key=view.business_key,
        inputs=[tasks.parameter("http://dsf.dev/fhir/CodeSystem/conformance", "answer", "String", "yes")],
    ))
    assert answer["status"] == "completed"
    view = await h.instance(instance_id)
    assert (view.status, view.next_due) == ("completed", None)
    assert elements() == ["HandleReply"] and JOURNAL[-1].latest_task == answer["id"]
    h.clock.advance(minutes=1)
    assert await h.run_due_timers() == 0
    assert elements() == ["HandleReply"]


@models("event-based-gateway")
async def test_event_based_gateway_timer_wins(h: EngineHarness) -> None:
    instance_id = await h.start("dsfdev_eventBasedGateway")
    await h.restart()
    h.clock.advance(seconds=19, milliseconds=999)
    assert await h.run_due_timers() == 0
    h.clock.advance(milliseconds=1)
    assert await h.run_due_timers() == 1
    view = await h.instance(instance_id)
    assert view.status == "completed" and elements() == ["HandleTimeout"]
    late = await reply(h, view)
    assert late["status"] == "failed"
    assert error_of(late).startswith("Unable to correlate Task")


async def test_timers_and_restarts_on_both_databases(tmp_path: Path, pki_dir: Path, database_url: str) -> None:
    async with harness(tmp_path, pki_dir, "event-based-gateway", database_url=database_url) as h:
        first = await h.start("dsfdev_eventBasedGateway")
        second = await h.start("dsfdev_eventBasedGateway")
        h.clock.advance(seconds=10)
        await h.restart()
        view = await h.instance(second)
        assert view.next_due == START + timedelta(seconds=20)
        assert (await reply(h, view))["status"] == "completed"
        h.clock.advance(seconds=10)
        assert await h.run_due_timers() == 1
        assert [(await h.instance(i)).status for i in (first, second)] == ["completed", "completed"]
        assert sorted(elements()) == ["HandleReply", "HandleTimeout"]


# ---------------------------------------------------------------- errors and failures


@models("error-boundary-service-task")
@pytest.mark.parametrize("fail", [True, False])
async def test_error_boundary_on_a_service_task(h: EngineHarness, fail: bool) -> None:
    instance_id = await h.start("dsfdev_errorBoundaryServiceTask", variables={"shouldFail": fail})
    await h.restart()
    view = await h.instance(instance_id)
    assert view.status == "completed"
    if fail:
        assert elements() == ["Risky", "HandleError"]
        assert JOURNAL[-1].variables["errorCode"] == "E_FAIL"
        assert JOURNAL[-1].variables["errorMessage"] == "failed on purpose"
        assert "Risky" in view.cancelled()
    else:
        assert elements() == ["Risky"] and not view.cancelled() & {"Risky"}


@models("error-boundary-send-task")
@pytest.mark.parametrize("fail", [True, False])
async def test_error_boundary_on_a_send_task(h: EngineHarness, fail: bool) -> None:
    instance_id = await h.start("dsfdev_errorBoundarySendTask", variables={"sendFails": fail})
    await h.restart()
    view = await h.instance(instance_id)
    assert view.status == "completed"
    sent = await h.search("Task", {"status": "requested"})
    if fail:
        assert elements() == ["SendRequest", "HandleError"] and "SendRequest" in view.cancelled()
        assert sent == []
    else:
        assert elements() == ["SendRequest"] and len(sent) == 1


async def test_a_bpmn_error_nobody_catches_fails_the_instance_and_its_start_task(tmp_path: Path, pki_dir: Path) -> None:
    class Unexpected(ServiceTask):
        def execute(self, api: ProcessPluginApi, variables: Variables) -> None:
            from dsf_core.api import BpmnError

            raise BpmnError("SOMETHING_ELSE", "unexpected")

    async with harness(tmp_path, pki_dir, "error-boundary-service-task", class_map={"conformance.MayFail": Unexpected}) as h:
        start = await h.send(await h.task("dsfdev_errorBoundaryServiceTask", "start"))
        assert start["status"] == "failed"
        assert "'SOMETHING_ELSE' raised by 'Risky' is not caught" in error_of(start)
        await h.restart()
        assert (await h.instance_of_task(start)).status == "failed"
        assert (await h.local.read("Task", start["id"]))["status"] == "failed"


async def test_a_plain_exception_fails_the_instance_and_its_start_task(tmp_path: Path, pki_dir: Path) -> None:
    class Broken(ServiceTask):
        def execute(self, api: ProcessPluginApi, variables: Variables) -> None:
            raise ValueError("boom")

    async with harness(tmp_path, pki_dir, "sub-process", class_map={"conformance.Record": Broken}) as h:
        start = await h.send(await h.task("dsfdev_subProcess", "start"))
        assert start["status"] == "failed"
        assert error_of(start) == "InnerWork (conformance.Record) failed: boom"
        instance_id = (await h.instance_of_task(start)).id
        await h.restart()
        assert (await h.instance(instance_id)).status == "failed"
        assert await h.engine.store.running_ids() == []  # a failed instance is not resumed
        assert h.sleep.calls == []  # no retry cycle on this model


class FlakySend(conformance.Send):
    """Fails ``FAILURES`` times in a row (a peer unreachable), then sends."""

    FAILURES = 2
    attempts = 0

    async def execute(self, api: ProcessPluginApi, variables: Variables) -> None:
        FlakySend.attempts += 1
        if FlakySend.attempts <= FlakySend.FAILURES:
            raise ConnectionError(f"peer unreachable (attempt {FlakySend.attempts})")
        await super().execute(api, variables)


@pytest.fixture
def flaky() -> Iterator[type[FlakySend]]:
    FlakySend.attempts = 0
    yield FlakySend


async def test_an_activity_failing_twice_is_retried_by_its_retry_cycle(
    tmp_path: Path, pki_dir: Path, flaky: type[FlakySend]
) -> None:
    flaky.FAILURES = 2
    async with harness(tmp_path, pki_dir, "multi-instance", class_map={"conformance.Send": flaky}) as h:
        instance_id = await h.start("dsfdev_multiInstance", variables={"organizations": ["dic-1"]})
        assert h.sleep.calls == [5.0, 5.0]  # R3/PT5S: pauses of 5 s, no real waiting
        assert flaky.attempts == 3
        view = await h.instance(instance_id)
        assert view.status == "running" and view.waiting() == ["ReceiveReply"]
        await h.restart()
        assert (await reply(h, view, correlation_key="ck-dic-1"))["status"] == "completed"
        assert (await h.instance(instance_id)).status == "completed"


async def test_an_activity_failing_always_fails_the_instance_after_its_retries(
    tmp_path: Path, pki_dir: Path, flaky: type[FlakySend]
) -> None:
    flaky.FAILURES = 100
    async with harness(tmp_path, pki_dir, "multi-instance", class_map={"conformance.Send": flaky}) as h:
        start = await h.send(await h.task("dsfdev_multiInstance", "start"))
        assert start["status"] == "failed"
        assert "SendRequest (conformance.Send) failed: peer unreachable (attempt" in error_of(start)
        assert flaky.attempts == 3 * 4  # three branches, each: one attempt and three retries
        assert h.sleep.calls == [5.0] * 9
        view = await h.instance_of_task(start)
        await h.restart()
        assert (await h.instance(view.id)).status == "failed"


# ---------------------------------------------------------------- multi-instance, sub-process


@models("multi-instance")
async def test_multi_instance_fan_out_with_targeted_correlation(h: EngineHarness) -> None:
    instance_id = await h.start("dsfdev_multiInstance", variables={"target": "outer value"})
    view = await h.instance(instance_id)
    requests = await h.search("Task", {"status": "requested"})
    assert sorted(tasks.message_input(t, "correlation-key") or "" for t in requests) == ["ck-dic-1", "ck-dic-2", "ck-dic-3"]
    assert {tasks.message_input(t, "business-key") for t in requests} == {view.business_key}
    assert sorted(t.data["correlationKey"] for t in view.waiting_tasks("ReceiveReply")) == ["ck-dic-1", "ck-dic-2", "ck-dic-3"]
    await h.restart()

    wrong = await reply(h, view, correlation_key="ck-dic-9")
    assert wrong["status"] == "failed"
    assert error_of(wrong) == (f"Unable to correlate Task: no element waits for message 'reply' with business-key "
                               f"{view.business_key} and correlation-key ck-dic-9")
    missing = await reply(h, view)
    assert missing["status"] == "failed"
    assert error_of(missing).startswith("Unable to correlate Task: 3 elements wait for message 'reply'")

    second = await reply(h, view, correlation_key="ck-dic-2")
    assert second["status"] == "in-progress"  # delivered; completed when the instance ends
    handled = [c for c in JOURNAL if c.element == "HandleReply"]
    assert [c.variables["target"]["organizationIdentifier"] for c in handled] == ["dic-2"]
    assert [c.latest_task for c in handled] == [second["id"]]
    view = await h.instance(instance_id)
    assert sorted(t.data["correlationKey"] for t in view.waiting_tasks("ReceiveReply")) == ["ck-dic-1", "ck-dic-3"]

    await h.restart()
    again = await reply(h, view, correlation_key="ck-dic-2")  # that branch is done
    assert again["status"] == "failed" and "Unable to correlate" in error_of(again)
    for key in ("ck-dic-3", "ck-dic-1"):
        await reply(h, view, correlation_key=key)
    view = await h.instance(instance_id)
    assert view.status == "completed" and elements()[-1] == "SaveResults"
    assert view.variables["target"] == "outer value" and "loopCounter" not in view.variables
    assert (await h.local.read("Task", second["id"]))["status"] == "completed"


@models("sub-process")
async def test_embedded_sub_process(h: EngineHarness) -> None:
    instance_id = await h.start("dsfdev_subProcess")
    await h.restart()
    assert (await h.instance(instance_id)).status == "completed"
    assert elements() == ["InnerWork", "After"]


# ---------------------------------------------------------------- signals between instances


@models("signal-boundary", "signal-end", "signal-start")
async def test_signal_end_stops_a_waiting_instance_and_starts_the_signal_start_process(h: EngineHarness) -> None:
    waiting = await h.start("dsfdev_signalBoundary")
    assert await h.instance_ids("dsfdev_signalStart") == []
    await h.restart()  # the signal reaches it through the database's wait index
    thrower = await h.start("dsfdev_signalEnd")
    assert (await h.instance(thrower)).status == "completed"
    view = await h.instance(waiting)
    assert view.status == "completed" and "AwaitReply" in view.cancelled()
    [started] = await h.instance_ids("dsfdev_signalStart")
    assert (await h.instance(started)).status == "completed"
    assert sorted(elements()) == ["HandleStop", "Work"]


@models("signal-boundary", "signal-intermediate", "signal-start")
async def test_intermediate_signal_reaches_its_own_instance_and_the_others(h: EngineHarness) -> None:
    waiting = await h.start("dsfdev_signalBoundary")
    await h.restart()
    thrower = await h.start("dsfdev_signalIntermediate")
    assert (await h.instance(thrower)).status == "completed"
    assert (await h.instance(waiting)).status == "completed"
    assert sorted(elements()) == ["HandleStop", "Stopped", "Work", "Work"]  # Work: its own and signalStart's


@models("signal-start")
async def test_a_signal_start_process_started_by_message_runs_once(h: EngineHarness) -> None:
    instance_id = await h.start("dsfdev_signalStart")
    await h.restart()
    assert (await h.instance(instance_id)).status == "completed"
    assert elements() == ["Work"]
    assert await h.instance_ids("dsfdev_signalStart") == [instance_id]


@models("signal-end", "message-throw-catch")
async def test_a_signal_reaches_no_instance_that_does_not_wait_for_it(h: EngineHarness) -> None:
    other = await h.start("dsfdev_messageThrowCatch")
    await h.restart()
    await h.start("dsfdev_signalEnd")
    view = await h.instance(other)
    assert view.status == "running" and view.waiting() == ["ReceiveReply"]


# ---------------------------------------------------------------- loops


class MeasuringIncrement(ServiceTask):
    """``count += 1``; at the checkpoints, the size of the state the engine stored before this run."""

    checkpoints = (1_000, 5_000, 10_000)
    sizes: dict[int, int] = {}
    store: Any = None

    async def execute(self, api: ProcessPluginApi, variables: Variables) -> None:
        count = variables.get("count", 0) + 1
        variables.set("count", count)
        if count in self.checkpoints:
            [instance_id] = await self.store.running_by_business_key(variables.business_key)
            row = await self.store.load_instance(instance_id)
            MeasuringIncrement.sizes[count] = len(row.state)


async def test_ten_thousand_loop_iterations_with_a_stored_state_that_does_not_grow(tmp_path: Path, pki_dir: Path) -> None:
    MeasuringIncrement.sizes = {}
    async with harness(tmp_path, pki_dir, "loop", class_map={"conformance.Increment": MeasuringIncrement}) as h:
        MeasuringIncrement.store = h.store
        instance_id = await h.start("dsfdev_loop", variables={"limit": 10_000})
        view = await h.instance(instance_id)
        assert view.status == "completed" and view.variables["count"] == 10_000
        sizes = MeasuringIncrement.sizes
        assert sorted(sizes) == [1_000, 5_000, 10_000]
        # the same tree at every checkpoint: only the digits of the count differ
        assert sizes[10_000] - sizes[1_000] <= 8, sizes
        assert view.state_size < 2 * sizes[1_000]
        assert view.revision > 10_000  # saved before every activity run
        await h.restart()
        assert (await h.instance(instance_id)).variables["count"] == 10_000


RETRY_SCOPE_BPMN = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:camunda="http://camunda.org/schema/1.0/bpmn"
    id="Definitions_retry" targetNamespace="http://bpmn.io/schema/bpmn">
  <bpmn:process id="dsfdev_retryScope" isExecutable="true" camunda:versionTag="1.0">
    <bpmn:startEvent id="Begin"><bpmn:outgoing>f1</bpmn:outgoing><bpmn:messageEventDefinition id="Begin_def" messageRef="Message_start"/></bpmn:startEvent>
    <bpmn:serviceTask id="First" camunda:class="retry.First">
      <bpmn:extensionElements><camunda:failedJobRetryTimeCycle>R2/PT7S</camunda:failedJobRetryTimeCycle></bpmn:extensionElements>
      <bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
    </bpmn:serviceTask>
    <bpmn:serviceTask id="Second" camunda:class="retry.Second"><bpmn:incoming>f2</bpmn:incoming><bpmn:outgoing>f3</bpmn:outgoing></bpmn:serviceTask>
    <bpmn:endEvent id="Finish"><bpmn:incoming>f3</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="Begin" targetRef="First"/>
    <bpmn:sequenceFlow id="f2" sourceRef="First" targetRef="Second"/>
    <bpmn:sequenceFlow id="f3" sourceRef="Second" targetRef="Finish"/>
  </bpmn:process>
  <bpmn:message id="Message_start" name="start"/>
</bpmn:definitions>
"""


async def test_a_retry_cycle_applies_to_its_own_activity_not_to_the_next(tmp_path: Path, pki_dir: Path) -> None:
    calls: list[str] = []

    class First(ServiceTask):
        def execute(self, api: ProcessPluginApi, variables: Variables) -> None:
            calls.append("first")

    class Second(ServiceTask):
        def execute(self, api: ProcessPluginApi, variables: Variables) -> None:
            calls.append("second")
            raise ValueError("always")

    model = tmp_path / "retry-scope.bpmn"
    model.write_text(RETRY_SCOPE_BPMN)
    async with EngineHarness(tmp_path / "h", models=[model], class_map={"retry.First": First, "retry.Second": Second},
                             pki_dir=pki_dir) as h:
        instance_id = await h.start("dsfdev_retryScope")
        assert (await h.instance(instance_id)).status == "failed"
        assert calls == ["first", "second"]  # Second has no retry cycle: First's R2/PT7S is not its
        assert h.sleep.calls == []
