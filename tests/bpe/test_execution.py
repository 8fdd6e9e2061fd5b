"""Every conformance model in bpmn/ executed with stub activities (see runner.py)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from SpiffWorkflow.bpmn.exceptions import WorkflowTaskException  # type: ignore[import-untyped]
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow  # type: ignore[import-untyped]
from SpiffWorkflow.util.task import TaskState  # type: ignore[import-untyped]

from dsf_core.bpe.events import message_event, next_timer_due, signal_event
from dsf_core.bpe.parser import parse_bpmn
from dsf_core.bpe.scripting import BpmnErrorRaised, DsfScriptEngine, HostMissing
from dsf_core.bpe.specs import UnhandledBpmnError, throw_bpmn_error
from tests.bpe.runner import START, Run, StubHost

# -- message start, service task, end ---------------------------------------------------


def test_service_task_runs_bound_class_with_fields() -> None:
    run = Run.of("message-start-service-end").start(name="Ada", count=1)
    assert run.completed
    [call] = run.host.calls
    assert (call.kind, call.element, call.class_name) == ("service", "Work", "conformance.Record")
    assert call.fields == {"label": "fixed text, ${not} evaluated", "greeting": "Hello Ada", "count": 2}
    assert call.variables["name"] == "Ada"


def test_waits_for_its_start_message_only() -> None:
    run = Run.of("message-start-service-end")
    assert [e.name for e in run.workflow.waiting_events()] == ["start"]
    assert not run.completed and not run.host.calls


def test_activity_may_complete_later() -> None:
    run = Run.of("message-start-service-end", StubHost(complete_later={"Work"})).start(name="Ada", count=0)
    [task] = run.workflow.get_tasks(state=TaskState.STARTED)
    assert task.task_spec.bpmn_id == "Work" and not run.completed
    task.set_data(result="async")
    task.complete()
    run.workflow.do_engine_steps()
    assert run.completed and run.data["result"] == "async"


def test_missing_host_is_reported() -> None:
    run = Run.of("message-start-service-end")
    run.workflow.script_engine.host = None
    with pytest.raises(HostMissing, match="'Work' needs an activity host"):
        run.start(name="Ada", count=0)


def test_listeners_run_at_start_and_end() -> None:
    run = Run.of("execution-listener").start()
    assert [(c.kind, c.fields.get("phase")) for c in run.host.calls] == [
        ("listener:start", "start"), ("service", None), ("listener:end", "end"),
    ]
    assert run.completed


def test_input_parameters_are_local_output_parameters_are_set() -> None:
    run = Run.of("io-parameters").start(name="Ada")
    [call] = run.host.calls
    assert call.variables["greeting"] == "Hello Ada"
    assert run.completed
    assert run.data["result"] == "Hello Ada!" and run.data["status"] == "done"
    assert "greeting" not in run.data


# -- messages ---------------------------------------------------------------------------


def test_message_throw_then_catch() -> None:
    run = Run.of("message-throw-catch").start()
    [send] = run.host.calls
    assert (send.kind, send.element, send.class_name) == ("send", "SendRequest", "conformance.Send")
    assert send.fields == {
        "instantiatesCanonical": "http://dsf.dev/bpe/Process/conformance|1.0",
        "profile": "http://dsf.dev/fhir/StructureDefinition/task-conformance|1.0",
        "messageName": "request",
    }
    [waiting] = run.waiting("ReceiveReply")
    run.deliver("reply", waiting, answer=42)
    assert run.host.elements() == ["SendRequest", "HandleReply"]
    assert run.host.calls[-1].variables["answer"] == 42
    assert run.completed


def test_send_task_then_receive_task() -> None:
    run = Run.of("send-receive").start()
    assert run.host.elements("send") == ["SendRequest"]
    assert run.model.element("SendRequest").event_definition.name == "request"
    run.deliver("reply", run.waiting("ReceiveReply")[0])
    assert run.completed


def test_message_end_event_sends() -> None:
    run = Run.of("message-end").start()
    assert [(c.kind, c.element) for c in run.host.calls] == [("service", "Prepare"), ("send", "SendReply")]
    assert run.model.element("SendReply").event_definition.name == "reply"
    assert run.completed


def test_send_failure_takes_the_send_task_error_boundary() -> None:
    run = Run.of("error-boundary-send-task").start(sendFails=True)
    assert run.host.elements() == ["SendRequest", "HandleError"]
    assert "SendRequest" in run.cancelled()
    assert run.completed


def test_send_success_skips_the_error_path() -> None:
    run = Run.of("error-boundary-send-task").start()
    assert run.host.elements() == ["SendRequest"]
    assert run.completed


# -- timers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "variables", "due"),
    [
        ("timer-duration", {}, START + timedelta(seconds=30)),
        ("timer-expression", {"timerInterval": "PT5M"}, START + timedelta(minutes=5)),
        ("timer-date", {}, START.replace(hour=10)),
        ("timer-cycle", {}, START + timedelta(seconds=10)),  # a catch event fires at the first occurrence
    ],
)
def test_intermediate_timer(model: str, variables: dict[str, Any], due: Any) -> None:
    run = Run.of(model).start(**variables)
    assert next_timer_due(run.workflow) == due
    run.clock.now = due - timedelta(microseconds=1)
    run.workflow.refresh_timers()
    run.workflow.do_engine_steps()
    assert not run.completed and run.waiting("Wait")
    run.advance(microseconds=1)
    assert run.host.elements() == ["AfterTimer"]
    assert run.completed
    assert next_timer_due(run.workflow) is None


def test_timer_expression_must_evaluate() -> None:
    with pytest.raises(WorkflowTaskException, match="unknown variable 'timerInterval'"):
        Run.of("timer-expression").start()


def test_interrupting_timer_boundary_fires() -> None:
    run = Run.of("timer-boundary-interrupting").start()
    assert next_timer_due(run.workflow) == START + timedelta(minutes=1)
    run.advance(minutes=1)
    assert run.host.elements() == ["HandleTimeout"]
    assert "AwaitReply" in run.cancelled()
    assert run.completed


def test_interrupting_timer_boundary_cancelled_by_reply() -> None:
    run = Run.of("timer-boundary-interrupting").start()
    run.deliver("reply", run.waiting("AwaitReply")[0])
    assert run.host.elements() == ["HandleReply"]
    assert run.completed and next_timer_due(run.workflow) is None


def test_non_interrupting_cycle_boundary_repeats() -> None:
    run = Run.of("timer-boundary-non-interrupting").start()
    assert run.advance_to_next_timer() == START + timedelta(minutes=1)
    assert run.host.elements() == ["Remind"] and run.waiting("AwaitReply")
    assert run.advance_to_next_timer() == START + timedelta(minutes=2)
    assert run.host.elements() == ["Remind", "Remind"]
    assert next_timer_due(run.workflow) is None  # R2: done
    run.advance(hours=1)
    run.deliver("reply", run.waiting("AwaitReply")[0])
    assert run.host.elements() == ["Remind", "Remind", "HandleReply"]
    assert run.completed


def test_event_based_gateway_message_wins() -> None:
    run = Run.of("event-based-gateway").start()
    [gateway] = run.waiting("ReplyOrTimeout")
    assert next_timer_due(run.workflow) == START + timedelta(seconds=20)
    run.deliver("reply", gateway, answer="yes")
    assert run.host.elements() == ["HandleReply"]
    assert run.completed and run.data["answer"] == "yes"
    run.advance(minutes=1)
    assert run.host.elements() == ["HandleReply"]


def test_event_based_gateway_timer_wins() -> None:
    run = Run.of("event-based-gateway").start()
    run.advance(seconds=20)
    assert run.host.elements() == ["HandleTimeout"]
    assert run.completed
    with pytest.raises(Exception, match="not waiting for reply"):
        run.workflow.send_event(message_event("reply"))


# -- errors -----------------------------------------------------------------------------


def test_error_boundary_on_service_task() -> None:
    run = Run.of("error-boundary-service-task").start(shouldFail=True)
    assert run.host.elements() == ["Risky", "HandleError"]
    handler = run.host.calls[-1]
    assert handler.variables["errorCode"] == "E_FAIL"
    assert handler.variables["errorMessage"] == "failed on purpose"
    assert "Risky" in run.cancelled()
    assert run.completed


def test_no_error_no_boundary_path() -> None:
    run = Run.of("error-boundary-service-task").start(shouldFail=False)
    assert run.host.elements() == ["Risky"]
    assert run.completed


def test_error_without_matching_boundary_fails_loudly() -> None:
    host = StubHost()

    def other(task: Any, fields: Any) -> None:
        raise BpmnErrorRaised("SOMETHING_ELSE", "unexpected")

    host.activities["conformance.MayFail"] = other
    with pytest.raises(UnhandledBpmnError, match="'SOMETHING_ELSE' raised by 'Risky' is not caught"):
        Run.of("error-boundary-service-task", host).start()


def test_plain_exception_fails_the_task() -> None:
    host = StubHost()

    def broken(task: Any, fields: Any) -> None:
        raise ValueError("boom")

    host.activities["conformance.Record"] = broken
    run = Run.of("message-start-service-end", host)
    with pytest.raises(ValueError, match="boom"):
        run.start(name="Ada", count=0)
    [failed] = run.workflow.get_tasks(state=TaskState.ERROR)
    assert failed.task_spec.bpmn_id == "Work"


# -- multi-instance ---------------------------------------------------------------------


def test_multi_instance_one_branch_per_target_with_targeted_correlation() -> None:
    run = Run.of("multi-instance").start(target="outer value")
    sends = [c for c in run.host.calls if c.kind == "send"]
    assert [c.variables["target"]["organization"] for c in sends] == ["dic-1", "dic-2", "dic-3"]
    assert [c.variables["loopCounter"] for c in sends] == [0, 1, 2]
    waiting = run.waiting("ReceiveReply")
    assert sorted(t.data["correlationKey"] for t in waiting) == ["ck-dic-1", "ck-dic-2", "ck-dic-3"]

    second = next(t for t in waiting if t.data["correlationKey"] == "ck-dic-2")
    run.deliver("reply", second, replyFrom="dic-2")
    handled = [c for c in run.host.calls if c.element == "HandleReply"]
    assert [c.variables["target"]["organization"] for c in handled] == ["dic-2"]
    assert len(run.waiting("ReceiveReply")) == 2

    for task in run.waiting("ReceiveReply"):
        run.deliver("reply", task)
    assert run.host.elements()[-1] == "SaveResults"
    assert run.completed
    # Camunda semantics: element variable and loop counter are instance-local
    assert run.data["target"] == "outer value"
    assert "loopCounter" not in run.data


def test_multi_instance_over_an_empty_collection() -> None:
    run = Run.of("multi-instance").start(organizations=[])
    assert run.host.elements() == ["SelectTargets", "SaveResults"]
    assert run.completed


def test_multi_instance_spec_keeps_the_camunda_attributes() -> None:
    run = Run.of("multi-instance")
    mi = run.model.element("PerTarget")
    assert mi.data_input.bpmn_id == "${targets.entries}"
    assert mi.input_item.bpmn_id == "target"
    assert mi.binding.async_before and not mi.binding.exclusive
    assert mi.binding.retry_cycle == "R3/PT5S"


# -- sub-process, signals, user task, gateways, loop -------------------------------------


def test_embedded_sub_process_shares_variables() -> None:
    host = StubHost()
    host.activities["conformance.Record"] = lambda task, fields: task.data.update(seen=task.task_spec.bpmn_id)
    run = Run.of("sub-process", host).start()
    assert host.elements() == ["InnerWork", "After"]
    assert host.calls[-1].variables["seen"] == "InnerWork"
    assert run.completed


def test_intermediate_signal_reaches_own_instance_and_is_queued_for_others() -> None:
    run = Run.of("signal-intermediate").start()
    assert run.host.elements() == ["Work", "Stopped"]
    assert run.completed
    assert [e.event_definition.name for e in run.workflow.get_events()] == ["stop_1.0"]


def test_signal_end_event_is_queued_for_other_instances() -> None:
    run = Run.of("signal-end").start()
    assert run.completed
    [event] = run.workflow.get_events()
    assert event.event_definition.name == "stop_1.0"
    waiting = Run.of("signal-boundary").start()
    waiting.workflow.send_event(event)  # what the engine does for every other instance
    waiting.workflow.do_engine_steps()
    assert waiting.host.elements() == ["HandleStop"] and waiting.completed


def test_signal_boundary_interrupts() -> None:
    run = Run.of("signal-boundary").start()
    run.signal("stop_1.0")
    assert run.host.elements() == ["HandleStop"]
    assert "AwaitReply" in run.cancelled()
    assert run.completed


def test_signal_start_event() -> None:
    run = Run.of("signal-start")
    assert sorted(e.name for e in run.workflow.waiting_events()) == ["start", "stop_1.0"]
    run.signal("stop_1.0")
    assert run.host.elements() == ["Work"]
    assert run.completed


def test_user_task_waits_for_its_answer() -> None:
    run = Run.of("user-task").start()
    [task] = run.ready_user_tasks()
    assert task.task_spec.form_key == "http://dsf.dev/fhir/Questionnaire/conformance-approve|1.0"
    assert [(x.event, x.class_name) for x in task.task_spec.binding.task_listeners] == [
        ("create", "conformance.UserTaskCreated")
    ]
    run.workflow.do_engine_steps()
    assert not run.completed and not run.host.calls
    task.set_data(approved=True)
    task.run()
    run.workflow.do_engine_steps()
    assert run.host.elements() == ["AfterApproval"]
    assert run.completed


@pytest.mark.parametrize(
    ("variables", "branch"),
    [
        ({"amount": 150, "approved": True, "label": ""}, "Big"),
        ({"amount": 150, "label": "x"}, "Other"),
        ({"amount": 50, "label": "x"}, "Small"),
        ({"amount": 50, "label": ""}, "Other"),
        ({"amount": "100", "approved": False, "label": None}, "Big"),
    ],
)
def test_exclusive_gateway_takes_the_branch_of_the_juel_condition(variables: dict[str, Any], branch: str) -> None:
    run = Run.of("exclusive-gateway").start(**variables)
    assert run.host.elements() == [branch]
    assert run.completed


def test_condition_must_be_boolean() -> None:
    model = parse_bpmn(EXCLUSIVE_NOT_BOOLEAN, "not-boolean.bpmn")
    workflow = BpmnWorkflow(model.spec, model.subprocess_specs, script_engine=DsfScriptEngine(StubHost()))
    workflow.do_engine_steps()
    with pytest.raises(WorkflowTaskException, match="gave 42, not a boolean"):
        workflow.send_event(message_event("start", {"amount": 42}))
        workflow.do_engine_steps()


def test_parallel_gateway_forks_and_joins() -> None:
    run = Run.of("parallel-gateway").start()
    assert sorted(run.host.elements()) == ["Left", "Right"]
    assert run.completed


def test_loop_back_to_an_earlier_task() -> None:
    run = Run.of("loop").start(limit=25)
    assert run.host.elements() == ["Increment"] * 25
    assert run.data["count"] == 25
    assert run.completed


EXCLUSIVE_NOT_BOOLEAN = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:camunda="http://camunda.org/schema/1.0/bpmn" id="d" targetNamespace="http://bpmn.io/schema/bpmn">
  <bpmn:process id="dsfdev_notBoolean" isExecutable="true" camunda:versionTag="1.0">
    <bpmn:startEvent id="Begin"><bpmn:messageEventDefinition messageRef="M" /></bpmn:startEvent>
    <bpmn:exclusiveGateway id="Decide" default="Otherwise" />
    <bpmn:endEvent id="A" /><bpmn:endEvent id="B" />
    <bpmn:sequenceFlow id="F0" sourceRef="Begin" targetRef="Decide" />
    <bpmn:sequenceFlow id="Amount" sourceRef="Decide" targetRef="A">
      <bpmn:conditionExpression>${amount}</bpmn:conditionExpression>
    </bpmn:sequenceFlow>
    <bpmn:sequenceFlow id="Otherwise" sourceRef="Decide" targetRef="B" />
  </bpmn:process>
  <bpmn:message id="M" name="start" />
</bpmn:definitions>
"""


def inline(body: str) -> Run:
    document = f"""<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:camunda="http://camunda.org/schema/1.0/bpmn" id="d" targetNamespace="http://bpmn.io/schema/bpmn">
  <bpmn:process id="dsfdev_inline" isExecutable="true" camunda:versionTag="1.0">
    <bpmn:startEvent id="Begin"><bpmn:messageEventDefinition messageRef="M" /></bpmn:startEvent>
    {body}
    <bpmn:endEvent id="Done" />
    <bpmn:sequenceFlow id="F0" sourceRef="Begin" targetRef="Each" />
    <bpmn:sequenceFlow id="F1" sourceRef="Each" targetRef="Done" />
  </bpmn:process>
  <bpmn:message id="M" name="start" />
</bpmn:definitions>
"""
    return Run(parse_bpmn(document, "inline.bpmn"))


def test_sequential_multi_instance_with_cardinality() -> None:
    run = inline('<bpmn:serviceTask id="Each" camunda:class="conformance.Record">'
                 '<bpmn:multiInstanceLoopCharacteristics isSequential="true">'
                 "<bpmn:loopCardinality>3</bpmn:loopCardinality></bpmn:multiInstanceLoopCharacteristics>"
                 "</bpmn:serviceTask>").start()
    assert [c.variables["loopCounter"] for c in run.host.calls] == [0, 1, 2]
    assert run.completed and "loopCounter" not in run.data


def test_multi_instance_collection_by_variable_name() -> None:
    run = inline('<bpmn:serviceTask id="Each" camunda:class="conformance.Record">'
                 '<bpmn:multiInstanceLoopCharacteristics camunda:collection="items" camunda:elementVariable="item" />'
                 "</bpmn:serviceTask>").start(items=["a", "b"])
    assert run.model.element("Each").data_input.bpmn_id == "${items}"
    assert sorted(c.variables["item"] for c in run.host.calls) == ["a", "b"]
    assert run.completed and "item" not in run.data


def test_input_parameter_shadows_and_restores() -> None:
    run = Run.of("io-parameters").start(name="Ada", greeting="outer")
    assert run.host.calls[0].variables["greeting"] == "Hello Ada"
    assert run.data["greeting"] == "outer" and run.data["result"] == "Hello Ada!"


def test_activity_completing_later_may_raise_a_bpmn_error() -> None:
    run = Run.of("error-boundary-service-task", StubHost(complete_later={"Risky"})).start()
    [task] = run.workflow.get_tasks(state=TaskState.STARTED)
    throw_bpmn_error(task, "E_FAIL", "remote said no")  # what the engine does when async work fails
    run.workflow.do_engine_steps()
    assert run.host.elements() == ["Risky", "HandleError"]
    assert run.host.calls[-1].variables["errorMessage"] == "remote said no"
    assert run.completed and "Risky" in run.cancelled()
