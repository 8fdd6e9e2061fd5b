"""Compaction: loops of any length in a small task tree, and nothing else changes.

``CompactingRun`` is the runner driven the way the engine drives an instance: after every
event (start, message, signal, timer) it calls ``run_engine_steps`` instead of
``do_engine_steps``, and records the largest tree it saw while the steps ran.
"""

from __future__ import annotations

import gc
import inspect
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta
from itertools import pairwise
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow  # type: ignore[import-untyped]
from SpiffWorkflow.task import Task  # type: ignore[import-untyped]
from SpiffWorkflow.util.task import TaskState  # type: ignore[import-untyped]

from dsf_core.bpe import compaction
from dsf_core.bpe.compaction import compact, run_engine_steps
from dsf_core.bpe.events import message_event, next_timer_due, signal_event
from dsf_core.bpe.model import ProcessModel
from dsf_core.bpe.parser import load_bpmn, parse_bpmn
from dsf_core.bpe.scripting import BpmnErrorRaised, DsfScriptEngine
from dsf_core.bpe.serializer import create_serializer
from tests.bpe import test_execution, test_ping_pong
from tests.bpe.runner import BPMN_DIR, PLACEHOLDERS, START, Clock, Run, StubHost


def workflows(workflow: Any) -> list[Any]:
    """The top workflow and every sub-process, each with its own task dict."""
    top = workflow.top_workflow
    return [top, *top.subprocesses.values()]


def tree_size(workflow: Any) -> int:
    return sum(len(wf.tasks) for wf in workflows(workflow))


def cancelled(run: Run) -> Counter[str]:
    return Counter(t.task_spec.bpmn_id for t in run.workflow.get_tasks(state=TaskState.CANCELLED))


def tree_depth(workflow: Any) -> int:
    return max(int(task.depth) for task in workflow.tasks.values())


class CompactingRun(Run):
    """The runner with ``run_engine_steps`` after every event (the engine's loop)."""

    checked = False  # assert_consistent after every step (slow; for small models)

    def __init__(self, model: ProcessModel, host: StubHost | None = None) -> None:
        self.model = model
        self.host = host or StubHost()
        self.clock = Clock()
        self.workflow = BpmnWorkflow(
            model.spec, model.subprocess_specs, script_engine=DsfScriptEngine(self.host, clock=self.clock)
        )
        self.largest = 0
        self.steps()

    @classmethod
    def of(cls, name: str, host: StubHost | None = None) -> CompactingRun:
        return cls(load_bpmn(BPMN_DIR / f"{name}.bpmn", placeholders=PLACEHOLDERS), host)

    def steps(self) -> None:
        run_engine_steps(self.workflow, did_complete_task=self._measure)
        self._measure()
        if self.checked:
            assert_consistent(self.workflow)

    def _measure(self, task: Any = None) -> None:
        self.largest = max(self.largest, tree_size(self.workflow))

    def start(self, message: str = "start", **variables: Any) -> CompactingRun:
        self.workflow.send_event(message_event(message, variables))
        self.steps()
        return self

    def deliver(self, message: str, to: Any, **payload: Any) -> None:
        self.workflow.send_event(message_event(message, payload, target=to.workflow))
        self.steps()

    def signal(self, name: str) -> None:
        self.workflow.send_event(signal_event(name))
        self.steps()

    def advance(self, **delta: float) -> None:
        self.clock.now += timedelta(**delta)
        self.workflow.refresh_timers()
        self.steps()

    def advance_to_next_timer(self) -> datetime:
        due = next_timer_due(self.workflow)
        assert due is not None, "nothing waits for a timer"
        self.clock.now = due
        self.workflow.refresh_timers()
        self.steps()
        return due

    def complete_started(self) -> Any:
        """What the engine does when an activity's I/O is done: complete it, step on."""
        [task] = [t for t in self.workflow.tasks.values() if t.state == TaskState.STARTED]
        task.complete()
        self.steps()
        return task


class QuietHost(StubHost):
    """Counts activity runs instead of recording them, so memory measures the workflow only."""

    runs: int = 0

    def _run(self, kind: str, task: Any, spec: Any, class_name: str, fields: Mapping[str, Any]) -> bool | None:
        result = super()._run(kind, task, spec, class_name, fields)
        self.calls.clear()
        self.runs += 1
        return result


def assert_consistent(workflow: Any) -> None:
    """Links both ways, parents before children, and an exact serializer round trip."""
    for wf in workflows(workflow):
        position = {task_id: index for index, task_id in enumerate(wf.tasks)}
        for task in wf.tasks.values():
            if task is wf.task_tree:
                assert task._parent is None
            else:
                parent = wf.tasks[task._parent]
                assert task.id in parent._children
                assert position[parent.id] < position[task.id]  # the serializer restores in this order
            assert all(wf.tasks[child]._parent == task.id for child in task._children)
    serializer = create_serializer()
    restored = serializer.deserialize_json(serializer.serialize_json(workflow))
    assert restored.subprocesses.keys() == workflow.top_workflow.subprocesses.keys()
    for wf, back in zip(workflows(workflow), workflows(restored), strict=True):
        assert list(back.tasks) == list(wf.tasks)
        for task in wf.tasks.values():
            copy = back.tasks[task.id]
            assert (copy.state, copy._parent, copy._children) == (task.state, task._parent, task._children)
            assert copy.data == task.data, task


# -- the loop -------------------------------------------------------------------------


def test_ten_thousand_loop_passes_in_a_small_tree() -> None:
    host = QuietHost()
    probes: dict[str, Any] = {}

    def increment(task: Any, fields: Any) -> None:
        count = task.data["count"] = task.data.get("count", 0) + 1
        # Bytes still held at pass 1,200 that were allocated after pass 1,000: a tree that
        # keeps its history holds three more tasks (with their data) per pass.
        if count == 1_000:
            probes["tasks"] = tree_size(task.workflow)
            tracemalloc.start()
        elif count == 1_200:
            gc.collect()
            probes["retained"] = tracemalloc.get_traced_memory()[0]
            tracemalloc.stop()

    host.activities["conformance.Increment"] = increment
    run = CompactingRun.of("loop", host).start(limit=10_000)

    assert run.completed and run.data["count"] == 10_000 and host.runs == 10_000
    assert run.largest <= 32  # while the steps ran (stock: three more per pass, stuck at pass ~333)
    assert probes["tasks"] <= 32 and tree_size(run.workflow) <= 8 and tree_depth(run.workflow) <= 8
    assert probes["retained"] < 16 * 1024  # stock: ~2.4 KB per pass, ~480 KB here
    gc.collect()
    removed_but_alive = [
        o for o in gc.get_objects()
        if isinstance(o, Task) and o.workflow is run.workflow and o.id not in run.workflow.tasks
    ]
    assert removed_but_alive == []


def test_loop_passes_completing_asynchronously() -> None:
    host = QuietHost(complete_later={"Increment"})
    run = CompactingRun.of("loop", host).start(limit=10_000)
    sizes = []
    while not run.completed:
        run.complete_started()
        sizes.append(tree_size(run.workflow))
    assert run.data["count"] == 10_000 and host.runs == 10_000
    assert run.largest <= 16 and max(sizes) <= 12
    assert sizes[999] == sizes[9_998]  # the same tree after 1,000 and 9,999 passes


def test_serialization_round_trip_in_the_middle_of_a_compacted_loop() -> None:
    host = QuietHost(complete_later={"Increment"})
    run = CompactingRun.of("loop", host).start(limit=2_000, label="kept")
    serializer = create_serializer()
    sizes = {}
    for passes in range(1, 1_001):
        run.complete_started()
        if passes in (500, 1_000):
            sizes[passes] = len(serializer.serialize_json(run.workflow))
    assert abs(sizes[500] - sizes[1_000]) < 64  # the saved state does not grow either (digits do)
    assert_consistent(run.workflow)

    restored = serializer.deserialize_json(serializer.serialize_json(run.workflow))
    restored.script_engine = DsfScriptEngine(host, clock=run.clock)
    run.workflow = restored
    [started] = [t for t in restored.tasks.values() if t.state == TaskState.STARTED]
    assert started.data["count"] == 1_001 and started.data["label"] == "kept"
    while not run.completed:
        run.complete_started()
    assert run.data == {"limit": 2_000, "label": "kept", "count": 2_000}
    assert host.runs == 2_000


def test_resumes_a_loop_stock_spiffworkflow_gave_up_on() -> None:
    run = Run.of("loop").start(limit=400)  # plain do_engine_steps
    assert not run.completed and tree_depth(run.workflow) >= 1_000
    [stuck] = [t for t in run.workflow.tasks.values() if t.state == TaskState.READY]
    assert run.workflow.get_tasks(state=TaskState.READY) == []  # below max_depth: invisible

    removed = compact(run.workflow)
    assert removed > 990 and stuck.id in run.workflow.tasks
    assert_consistent(run.workflow)
    run_engine_steps(run.workflow)
    assert run.completed and run.data["count"] == 400
    assert run.host.elements() == ["Increment"] * 400


def test_compaction_is_idempotent_and_keeps_the_structure() -> None:
    run = Run.of("loop").start(limit=25)
    assert compact(run.workflow) == 25 * 3  # LoopMerge, Increment, Again of every pass
    assert compact(run.workflow) == 0
    names = [t.task_spec.name for t in run.workflow.tasks.values()]
    # the root and the start event, the end event (the EndJoin reads its parent), the EndJoin, End
    assert names == ["Start", "StartEvent", "EndEvent", "dsfdev_loop.EndJoin", "End"]
    assert run.workflow.last_task is run.workflow.tasks[run.workflow.last_task.id]
    assert_consistent(run.workflow)


# -- ping autostart ---------------------------------------------------------------------


def test_ping_autostart_runs_two_thousand_timer_passes_then_stops(reference_dir: Path) -> None:
    def configure(task: Any, fields: Any) -> None:
        task.data["timerInterval"] = task.data.get("timer-interval", "PT24H")

    host = QuietHost({"dev.dsf.bpe.service.SetTargetAndConfigureTimer": configure})
    model = load_bpmn(reference_dir / "dsf-ping-pong-1.0.1.0" / "bpe" / "ping-autostart.bpmn", placeholders=PLACEHOLDERS)
    run = CompactingRun(model, host).start("startPingAutostart", **{"timer-interval": "PT1H"})
    sizes = []
    for hour in range(1, 2_001):
        assert run.advance_to_next_timer() == START + timedelta(hours=hour)
        sizes.append(tree_size(run.workflow))
    assert host.runs == 1 + 2_001  # SetTargetAndConfigureTimer, then one startPing per pass
    assert run.largest <= 24 and max(sizes) == min(sizes) == 12
    assert_consistent(run.workflow)

    run.signal("stop_dsfdev_pingAutostart_1.0")
    assert run.completed and run.data["stop"] == "yes" and run.data["timerInterval"] == "PT1H"
    assert next_timer_due(run.workflow) is None


# -- structures inside a loop -----------------------------------------------------------

GAUNTLET = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
    xmlns:camunda="http://camunda.org/schema/1.0/bpmn" id="d" targetNamespace="http://bpmn.io/schema/bpmn">
  <bpmn:process id="dsfdev_gauntlet" isExecutable="true" camunda:versionTag="1.0">
    <bpmn:startEvent id="Begin"><bpmn:messageEventDefinition messageRef="M" /></bpmn:startEvent>
    <bpmn:serviceTask id="Prep" camunda:class="conformance.Record" />
    <bpmn:parallelGateway id="Fork" />
    <bpmn:serviceTask id="Left1" camunda:class="conformance.Record" />
    <bpmn:serviceTask id="Left2" camunda:class="conformance.Record" />
    <bpmn:serviceTask id="Left3" camunda:class="conformance.Record" />
    <bpmn:intermediateCatchEvent id="Nap">
      <bpmn:timerEventDefinition><bpmn:timeDuration xsi:type="bpmn:tFormalExpression">PT30S</bpmn:timeDuration></bpmn:timerEventDefinition>
    </bpmn:intermediateCatchEvent>
    <bpmn:serviceTask id="Right" camunda:class="conformance.Record" />
    <bpmn:parallelGateway id="Join" />
    <bpmn:exclusiveGateway id="Merge" />
    <bpmn:serviceTask id="Count" camunda:class="conformance.Increment" />
    <bpmn:serviceTask id="Risky" camunda:class="conformance.MayFail">
      <bpmn:extensionElements><camunda:field name="errorCode"><camunda:string>E_FAIL</camunda:string></camunda:field></bpmn:extensionElements>
    </bpmn:serviceTask>
    <bpmn:boundaryEvent id="Failed" attachedToRef="Risky">
      <bpmn:errorEventDefinition errorRef="E" camunda:errorCodeVariable="errorCode" />
    </bpmn:boundaryEvent>
    <bpmn:serviceTask id="HandleError" camunda:class="conformance.Record" />
    <bpmn:exclusiveGateway id="Rejoin" />
    <bpmn:subProcess id="Inner">
      <bpmn:startEvent id="InnerStart" />
      <bpmn:serviceTask id="InnerWork" camunda:class="conformance.Record" />
      <bpmn:endEvent id="InnerEnd" />
      <bpmn:sequenceFlow id="I1" sourceRef="InnerStart" targetRef="InnerWork" />
      <bpmn:sequenceFlow id="I2" sourceRef="InnerWork" targetRef="InnerEnd" />
    </bpmn:subProcess>
    <bpmn:serviceTask id="Each" camunda:class="conformance.Record">
      <bpmn:multiInstanceLoopCharacteristics camunda:collection="items" camunda:elementVariable="item" />
    </bpmn:serviceTask>
    <bpmn:eventBasedGateway id="Wait" />
    <bpmn:intermediateCatchEvent id="Reply"><bpmn:messageEventDefinition messageRef="R" /></bpmn:intermediateCatchEvent>
    <bpmn:intermediateCatchEvent id="Timeout">
      <bpmn:timerEventDefinition><bpmn:timeDuration xsi:type="bpmn:tFormalExpression">PT1M</bpmn:timeDuration></bpmn:timerEventDefinition>
    </bpmn:intermediateCatchEvent>
    <bpmn:exclusiveGateway id="Again" default="Enough" />
    <bpmn:serviceTask id="Finish" camunda:class="conformance.Record" />
    <bpmn:endEvent id="Done" />
    <bpmn:sequenceFlow id="F1" sourceRef="Begin" targetRef="Prep" />
    <bpmn:sequenceFlow id="F2" sourceRef="Prep" targetRef="Fork" />
    <bpmn:sequenceFlow id="F3" sourceRef="Fork" targetRef="Left1" />
    <bpmn:sequenceFlow id="F3a" sourceRef="Left1" targetRef="Left2" />
    <bpmn:sequenceFlow id="F3b" sourceRef="Left2" targetRef="Left3" />
    <bpmn:sequenceFlow id="F4" sourceRef="Fork" targetRef="Nap" />
    <bpmn:sequenceFlow id="F4a" sourceRef="Nap" targetRef="Right" />
    <bpmn:sequenceFlow id="F5" sourceRef="Left3" targetRef="Join" />
    <bpmn:sequenceFlow id="F6" sourceRef="Right" targetRef="Join" />
    <bpmn:sequenceFlow id="F7" sourceRef="Join" targetRef="Merge" />
    <bpmn:sequenceFlow id="F8" sourceRef="Merge" targetRef="Count" />
    <bpmn:sequenceFlow id="F9" sourceRef="Count" targetRef="Risky" />
    <bpmn:sequenceFlow id="F10" sourceRef="Risky" targetRef="Rejoin" />
    <bpmn:sequenceFlow id="F11" sourceRef="Failed" targetRef="HandleError" />
    <bpmn:sequenceFlow id="F12" sourceRef="HandleError" targetRef="Rejoin" />
    <bpmn:sequenceFlow id="F13" sourceRef="Rejoin" targetRef="Inner" />
    <bpmn:sequenceFlow id="F14" sourceRef="Inner" targetRef="Each" />
    <bpmn:sequenceFlow id="F15" sourceRef="Each" targetRef="Wait" />
    <bpmn:sequenceFlow id="F16" sourceRef="Wait" targetRef="Reply" />
    <bpmn:sequenceFlow id="F17" sourceRef="Wait" targetRef="Timeout" />
    <bpmn:sequenceFlow id="F18" sourceRef="Reply" targetRef="Again" />
    <bpmn:sequenceFlow id="F19" sourceRef="Timeout" targetRef="Again" />
    <bpmn:sequenceFlow id="Loop" sourceRef="Again" targetRef="Merge">
      <bpmn:conditionExpression>${count &lt; limit}</bpmn:conditionExpression>
    </bpmn:sequenceFlow>
    <bpmn:sequenceFlow id="Enough" sourceRef="Again" targetRef="Finish" />
    <bpmn:sequenceFlow id="F20" sourceRef="Finish" targetRef="Done" />
  </bpmn:process>
  <bpmn:message id="M" name="start" />
  <bpmn:message id="R" name="reply" />
  <bpmn:error id="E" name="fail" errorCode="E_FAIL" />
</bpmn:definitions>
"""


class CheckedRun(CompactingRun):
    checked = True


def _run_gauntlet(run_class: type[Run], limit: int) -> tuple[Run, list[list[str]], list[int]]:
    """A parallel join waiting on a timer, then ``limit`` loop passes through an error
    boundary (every third pass fails), a sub-process, a multi-instance activity and an
    event-based gateway (answered by message and by timer, in turns)."""
    host = StubHost()

    def may_fail(task: Any, fields: Any) -> None:
        if task.data["count"] % 3 == 0:
            raise BpmnErrorRaised(fields["errorCode"], "every third pass")

    host.activities["conformance.MayFail"] = may_fail
    run = run_class(parse_bpmn(GAUNTLET, "gauntlet.bpmn"), host).start(limit=limit, items=["a", "b"])
    waits = [sorted(e.name or "" for e in run.workflow.waiting_events())]
    run.advance(seconds=30)
    sizes = []
    while not run.completed:
        [gateway] = run.waiting("Wait")
        if len(waits) % 2:
            run.advance(minutes=1)
        else:
            run.deliver("reply", gateway, answer=len(waits))
        waits.append(sorted(e.name or "" for e in run.workflow.waiting_events()))
        sizes.append(tree_size(run.workflow))
    return run, waits, sizes


def test_joins_boundaries_sub_processes_and_multi_instance_in_a_loop_behave_the_same(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(compaction, "_COMPACT_EVERY", 1)
    stock, stock_waits, stock_sizes = _run_gauntlet(Run, 12)
    compacted, waits, sizes = _run_gauntlet(CheckedRun, 12)

    def calls(run: Run) -> list[tuple[Any, ...]]:
        return [(c.kind, c.element, c.fields, c.variables) for c in run.host.calls]

    assert calls(compacted) == calls(stock) and len(calls(stock)) == 70
    assert waits == stock_waits
    assert compacted.data == stock.data and compacted.data["count"] == 12
    # every interrupted Risky, every boundary event not taken, the first Join instance
    assert cancelled(compacted) == cancelled(stock) == {"Risky": 4, "Failed": 8, "Join": 1}
    # Such structures are kept (see compaction's docstring): the tree still grows, by 10
    # tasks per pass (finished sub-processes pruned) instead of 20 or 21.
    assert {b - a for a, b in pairwise(sizes[:-1])} == {10}
    assert {b - a for a, b in pairwise(stock_sizes[:-1])} == {20, 21}


# -- every conformance scenario, compacted after every task ------------------------------


def _scenarios(module: ModuleType) -> Iterator[Any]:
    """Each ``test_*`` function of ``module`` with each of its parametrized argument sets."""
    for name, function in vars(module).items():
        if not name.startswith("test_") or not inspect.isfunction(function):
            continue
        marks = [m for m in getattr(function, "pytestmark", []) if m.name == "parametrize"]
        if not marks:
            yield pytest.param(function, {}, id=name)
            continue
        [mark] = marks
        names = mark.args[0].split(",") if isinstance(mark.args[0], str) else list(mark.args[0])
        for index, values in enumerate(mark.args[1]):
            arguments = dict(zip(names, values if len(names) > 1 else (values,), strict=True))
            yield pytest.param(function, arguments, id=f"{name}[{index}]")


@pytest.mark.parametrize(("scenario", "arguments"), [*_scenarios(test_execution), *_scenarios(test_ping_pong)])
def test_every_scenario_behaves_the_same_under_compaction(
    scenario: Callable[..., None], arguments: dict[str, Any], request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The existing scenarios, unchanged, with every ``do_engine_steps`` replaced by
    ``run_engine_steps`` compacting after every batch of tasks — joins, boundary events,
    multi-instance merges and sub-processes must not notice."""
    stepped = []

    def engine_steps(workflow: Any, **callbacks: Any) -> None:
        run_engine_steps(workflow, **callbacks)
        assert compact(workflow) == 0
        assert_consistent(workflow)
        stepped.append(workflow)

    monkeypatch.setattr(compaction, "_COMPACT_EVERY", 1)
    monkeypatch.setattr(BpmnWorkflow, "do_engine_steps", engine_steps)
    if "reference_dir" in inspect.signature(scenario).parameters:
        arguments = {**arguments, "reference_dir": request.getfixturevalue("reference_dir")}
    scenario(**arguments)
    assert stepped


def test_finished_branches_of_a_fan_out_are_pruned_and_the_rest_still_finishes() -> None:
    targets = [f"dic-{i}" for i in range(1, 11)]
    stock = Run.of("multi-instance").start(organizations=targets)
    run = CompactingRun.of("multi-instance").start(organizations=targets)
    serializer = create_serializer()
    for count, organization in enumerate(targets[:7], 1):
        for r in (stock, run):
            [waiting] = [t for t in r.waiting("ReceiveReply") if t.data["target"]["organization"] == organization]
            r.deliver("reply", waiting, answer=organization)
        assert len(run.workflow.subprocesses) == len(targets) - count  # only the waiting branches stay
    assert len(stock.workflow.subprocesses) == len(targets)
    # (the serialized specs are a constant part of both)
    assert len(serializer.serialize_json(run.workflow)) < 0.6 * len(serializer.serialize_json(stock.workflow))
    assert_consistent(run.workflow)

    restored = serializer.deserialize_json(serializer.serialize_json(run.workflow))
    restored.script_engine = DsfScriptEngine(run.host, clock=run.clock)
    run.workflow = restored
    for organization in targets[7:]:
        for r in (stock, run):
            [waiting] = [t for t in r.waiting("ReceiveReply") if t.data["target"]["organization"] == organization]
            r.deliver("reply", waiting, answer=organization)
    assert run.completed and stock.completed
    assert run.data == stock.data and run.workflow.subprocesses == {}
    assert [(c.kind, c.element, c.variables) for c in run.host.calls] == [
        (c.kind, c.element, c.variables) for c in stock.host.calls
    ]
