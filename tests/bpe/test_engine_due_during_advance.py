"""Timers that fall due while the engine is busy with the same instance.

An activity can take long (a slow peer, a slow data store). Timers of the same instance that
fall due meanwhile are fired by the engine when it next looks at the instance's timers; what
they make ready must run then, not wait for a scheduler that no longer knows of them. (The
30-DIC feasibility benchmark once left an HRP instance ``running`` for good this way: six
branches' timeouts fell due while a seventh branch's timeout handler ran.)
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dsf_core.api import ProcessPluginApi, ServiceTask, Variables
from dsf_core.testing.engine import START, EngineHarness, ManualClock
from tests.bpe import conformance
from tests.bpe.conformance import CLASS_MAP, JOURNAL, elements

HEAD = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:camunda="http://camunda.org/schema/1.0/bpmn"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
    id="Definitions_{name}" targetNamespace="http://bpmn.io/schema/bpmn">
"""

#: Two parallel branches wait for timers 10 s and 12 s; the first branch's handler takes 5 s.
PARALLEL = HEAD.format(name="parallel") + """
  <bpmn:process id="dsfdev_timersDueDuringAdvance" isExecutable="true" camunda:versionTag="#{version}">
    <bpmn:startEvent id="StartEvent"><bpmn:outgoing>F1</bpmn:outgoing>
      <bpmn:messageEventDefinition messageRef="Message_start"/></bpmn:startEvent>
    <bpmn:parallelGateway id="Split"><bpmn:incoming>F1</bpmn:incoming>
      <bpmn:outgoing>FA</bpmn:outgoing><bpmn:outgoing>FB</bpmn:outgoing></bpmn:parallelGateway>
    <bpmn:intermediateCatchEvent id="WaitA"><bpmn:incoming>FA</bpmn:incoming><bpmn:outgoing>FA2</bpmn:outgoing>
      <bpmn:timerEventDefinition><bpmn:timeDuration xsi:type="bpmn:tFormalExpression">PT10S</bpmn:timeDuration>
      </bpmn:timerEventDefinition></bpmn:intermediateCatchEvent>
    <bpmn:serviceTask id="SlowA" camunda:class="test.TakesFiveSeconds"><bpmn:incoming>FA2</bpmn:incoming>
      <bpmn:outgoing>FA3</bpmn:outgoing></bpmn:serviceTask>
    <bpmn:intermediateCatchEvent id="WaitB"><bpmn:incoming>FB</bpmn:incoming><bpmn:outgoing>FB2</bpmn:outgoing>
      <bpmn:timerEventDefinition><bpmn:timeDuration xsi:type="bpmn:tFormalExpression">PT12S</bpmn:timeDuration>
      </bpmn:timerEventDefinition></bpmn:intermediateCatchEvent>
    <bpmn:serviceTask id="AfterB" camunda:class="conformance.Record"><bpmn:incoming>FB2</bpmn:incoming>
      <bpmn:outgoing>FB3</bpmn:outgoing></bpmn:serviceTask>
    <bpmn:parallelGateway id="Join"><bpmn:incoming>FA3</bpmn:incoming><bpmn:incoming>FB3</bpmn:incoming>
      <bpmn:outgoing>F4</bpmn:outgoing></bpmn:parallelGateway>
    <bpmn:endEvent id="EndEvent"><bpmn:incoming>F4</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="F1" sourceRef="StartEvent" targetRef="Split"/>
    <bpmn:sequenceFlow id="FA" sourceRef="Split" targetRef="WaitA"/>
    <bpmn:sequenceFlow id="FA2" sourceRef="WaitA" targetRef="SlowA"/>
    <bpmn:sequenceFlow id="FA3" sourceRef="SlowA" targetRef="Join"/>
    <bpmn:sequenceFlow id="FB" sourceRef="Split" targetRef="WaitB"/>
    <bpmn:sequenceFlow id="FB2" sourceRef="WaitB" targetRef="AfterB"/>
    <bpmn:sequenceFlow id="FB3" sourceRef="AfterB" targetRef="Join"/>
    <bpmn:sequenceFlow id="F4" sourceRef="Join" targetRef="EndEvent"/>
  </bpmn:process>
  <bpmn:message id="Message_start" name="start"/>
</bpmn:definitions>
"""

#: The feasibility HRP's shape: a parallel multi-instance sub-process per target, each waiting at
#: an event-based gateway for a reply or a timeout; targets' timeouts 10, 11 and 12 s; handling a
#: timeout takes 5 s.
FAN_OUT = HEAD.format(name="fanout") + """
  <bpmn:process id="dsfdev_fanOutTimeoutsDueDuringAdvance" isExecutable="true" camunda:versionTag="#{version}">
    <bpmn:startEvent id="StartEvent"><bpmn:outgoing>F1</bpmn:outgoing>
      <bpmn:messageEventDefinition messageRef="Message_start"/></bpmn:startEvent>
    <bpmn:subProcess id="PerTarget"><bpmn:incoming>F1</bpmn:incoming><bpmn:outgoing>F2</bpmn:outgoing>
      <bpmn:multiInstanceLoopCharacteristics camunda:collection="${timeouts}" camunda:elementVariable="timeout"/>
      <bpmn:startEvent id="SubStart"><bpmn:outgoing>S1</bpmn:outgoing></bpmn:startEvent>
      <bpmn:eventBasedGateway id="ReplyOrTimeout"><bpmn:incoming>S1</bpmn:incoming>
        <bpmn:outgoing>S2</bpmn:outgoing><bpmn:outgoing>S3</bpmn:outgoing></bpmn:eventBasedGateway>
      <bpmn:intermediateCatchEvent id="Reply"><bpmn:incoming>S2</bpmn:incoming><bpmn:outgoing>S4</bpmn:outgoing>
        <bpmn:messageEventDefinition messageRef="Message_reply"/></bpmn:intermediateCatchEvent>
      <bpmn:intermediateCatchEvent id="Timeout"><bpmn:incoming>S3</bpmn:incoming><bpmn:outgoing>S5</bpmn:outgoing>
        <bpmn:timerEventDefinition><bpmn:timeDuration xsi:type="bpmn:tFormalExpression">${timeout}</bpmn:timeDuration>
        </bpmn:timerEventDefinition></bpmn:intermediateCatchEvent>
      <bpmn:serviceTask id="HandleTimeout" camunda:class="test.TakesFiveSeconds"><bpmn:incoming>S5</bpmn:incoming>
        <bpmn:outgoing>S6</bpmn:outgoing></bpmn:serviceTask>
      <bpmn:exclusiveGateway id="Merge"><bpmn:incoming>S4</bpmn:incoming><bpmn:incoming>S6</bpmn:incoming>
        <bpmn:outgoing>S7</bpmn:outgoing></bpmn:exclusiveGateway>
      <bpmn:endEvent id="SubEnd"><bpmn:incoming>S7</bpmn:incoming></bpmn:endEvent>
      <bpmn:sequenceFlow id="S1" sourceRef="SubStart" targetRef="ReplyOrTimeout"/>
      <bpmn:sequenceFlow id="S2" sourceRef="ReplyOrTimeout" targetRef="Reply"/>
      <bpmn:sequenceFlow id="S3" sourceRef="ReplyOrTimeout" targetRef="Timeout"/>
      <bpmn:sequenceFlow id="S4" sourceRef="Reply" targetRef="Merge"/>
      <bpmn:sequenceFlow id="S5" sourceRef="Timeout" targetRef="HandleTimeout"/>
      <bpmn:sequenceFlow id="S6" sourceRef="HandleTimeout" targetRef="Merge"/>
      <bpmn:sequenceFlow id="S7" sourceRef="Merge" targetRef="SubEnd"/>
    </bpmn:subProcess>
    <bpmn:serviceTask id="Aggregate" camunda:class="conformance.Record"><bpmn:incoming>F2</bpmn:incoming>
      <bpmn:outgoing>F3</bpmn:outgoing></bpmn:serviceTask>
    <bpmn:endEvent id="EndEvent"><bpmn:incoming>F3</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="F1" sourceRef="StartEvent" targetRef="PerTarget"/>
    <bpmn:sequenceFlow id="F2" sourceRef="PerTarget" targetRef="Aggregate"/>
    <bpmn:sequenceFlow id="F3" sourceRef="Aggregate" targetRef="EndEvent"/>
  </bpmn:process>
  <bpmn:message id="Message_start" name="start"/>
  <bpmn:message id="Message_reply" name="reply"/>
</bpmn:definitions>
"""

_CLOCK: list[ManualClock] = []


class TakesFiveSeconds(ServiceTask):
    """Stands for a slow activity: the engine's clock moves on 5 s while it runs."""

    def execute(self, api: ProcessPluginApi, variables: Variables) -> None:
        conformance.record("service", self, variables)
        _CLOCK[0].advance(seconds=5)


@pytest.fixture(autouse=True)
def journal() -> Iterator[None]:
    JOURNAL.clear()
    yield
    JOURNAL.clear()
    _CLOCK.clear()


def _harness(tmp_path: Path, text: str) -> EngineHarness:
    model = tmp_path / "model.bpmn"
    model.write_text(text)
    return EngineHarness(
        tmp_path / "node", models=[model], class_map={**CLASS_MAP, "test.TakesFiveSeconds": TakesFiveSeconds},
        resources=conformance.resources([model]),
    )


async def test_a_timer_falling_due_while_a_parallel_branch_runs_fires_in_the_same_advance(tmp_path: Path) -> None:
    async with _harness(tmp_path, PARALLEL) as h:
        _CLOCK.append(h.clock)
        instance_id = await h.start("dsfdev_timersDueDuringAdvance")
        h.clock.set(START.replace(second=10))
        assert await h.run_due_timers() == 1  # WaitA fires; SlowA moves the clock to 15 s, past WaitB's 12 s
        view = await h.instance(instance_id)
        assert (view.status, view.next_due) == ("completed", None)
        assert elements() == ["SlowA", "AfterB"]


async def test_event_based_gateway_timeouts_falling_due_while_another_timeout_is_handled(tmp_path: Path) -> None:
    async with _harness(tmp_path, FAN_OUT) as h:
        _CLOCK.append(h.clock)
        instance_id = await h.start("dsfdev_fanOutTimeoutsDueDuringAdvance",
                                    variables={"timeouts": ["PT10S", "PT11S", "PT12S", "PT60S"]})
        h.clock.set(START.replace(second=10))
        assert await h.run_due_timers() == 1  # 10 s fires; handling it moves the clock past 11 s and 12 s
        view = await h.instance(instance_id)
        assert view.status == "running"
        assert elements() == ["HandleTimeout"] * 3
        assert view.next_due == START.replace(minute=1)  # only the 60 s target still waits
        await h.restart()
        h.clock.set(START.replace(minute=1))
        assert await h.run_due_timers() == 1
        view = await h.instance(instance_id)
        assert (view.status, view.next_due) == ("completed", None)
        assert elements() == ["HandleTimeout"] * 4 + ["Aggregate"]


#: A reply awaited with a non-interrupting reminder every second that leads straight to an end.
FAST_CYCLE = HEAD.format(name="cycle") + """
  <bpmn:process id="dsfdev_fastCycle" isExecutable="true" camunda:versionTag="#{version}">
    <bpmn:startEvent id="StartEvent"><bpmn:outgoing>F1</bpmn:outgoing>
      <bpmn:messageEventDefinition messageRef="Message_start"/></bpmn:startEvent>
    <bpmn:receiveTask id="AwaitReply" messageRef="Message_reply"><bpmn:incoming>F1</bpmn:incoming>
      <bpmn:outgoing>F2</bpmn:outgoing></bpmn:receiveTask>
    <bpmn:boundaryEvent id="Tick" attachedToRef="AwaitReply" cancelActivity="false"><bpmn:outgoing>F3</bpmn:outgoing>
      <bpmn:timerEventDefinition><bpmn:timeCycle xsi:type="bpmn:tFormalExpression">R/PT1S</bpmn:timeCycle>
      </bpmn:timerEventDefinition></bpmn:boundaryEvent>
    <bpmn:endEvent id="TickEnd"><bpmn:incoming>F3</bpmn:incoming></bpmn:endEvent>
    <bpmn:endEvent id="EndEvent"><bpmn:incoming>F2</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="F1" sourceRef="StartEvent" targetRef="AwaitReply"/>
    <bpmn:sequenceFlow id="F2" sourceRef="AwaitReply" targetRef="EndEvent"/>
    <bpmn:sequenceFlow id="F3" sourceRef="Tick" targetRef="TickEnd"/>
  </bpmn:process>
  <bpmn:message id="Message_start" name="start"/>
  <bpmn:message id="Message_reply" name="reply"/>
</bpmn:definitions>
"""


async def test_timers_that_fall_due_at_every_round_fail_the_instance_instead_of_spinning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from dsf_core.bpe import engine as engine_module

    monkeypatch.setattr(engine_module, "_MAX_SETTLING_ROUNDS", 5)
    async with _harness(tmp_path, FAST_CYCLE) as h:
        steps = engine_module.run_engine_steps

        def slow_steps(workflow: Any) -> None:  # every round of steps takes a second
            steps(workflow)
            h.clock.advance(seconds=1)
            workflow.refresh_timers()  # as the steps' own refresh would see it a second later

        monkeypatch.setattr(engine_module, "run_engine_steps", slow_steps)
        with caplog.at_level(logging.ERROR, logger="dsf.bpe.engine"):
            instance_id = await h.start("dsfdev_fastCycle")
        view = await h.instance(instance_id)
        assert view.status == "failed"
        assert "timers keep tasks ready after 5 rounds of steps" in caplog.text
