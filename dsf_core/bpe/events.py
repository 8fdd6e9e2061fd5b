"""Event definitions of the DSF subset, and the helpers the engine uses to deliver events.

SpiffWorkflow matches an event to a waiting task by the *class* of its event definition
plus a name or code, so every event the engine sends must be built from the classes
here (:func:`message_event`, :func:`signal_event`) — never from SpiffWorkflow's own.

* Messages (:class:`DsfMessageEventDefinition`) are only *caught* inside SpiffWorkflow.
  DSF sends every message as a FHIR Task — even to itself — so throwing specs call the
  activity host instead; and the engine delivers a received Task to exactly one waiting
  task (``event.target``), because SpiffWorkflow would otherwise give an uncorrelated
  message to every waiting instance (python-stack.md §1.3).
* Signals (:class:`DsfSignalEventDefinition`) reach the throwing instance at once and are
  also queued on ``workflow.bpmn_events`` (``workflow.get_events()``) so the engine can
  broadcast them to the node's other instances, as Camunda does. Signals carry no data.
* Errors (:class:`DsfErrorEventDefinition`) are thrown by the specs when the host raises
  :class:`~dsf_core.bpe.scripting.BpmnErrorRaised`; ``camunda:errorCodeVariable`` and
  ``camunda:errorMessageVariable`` receive the code and message.
* Timers compute their due time with :mod:`dsf_core.bpe.timers` and the engine's injected
  clock instead of SpiffWorkflow's wall clock. :class:`DsfTimerEventDefinition` fires once
  (durations, dates, and cycles on catch events, event-based gateways and interrupting
  boundaries, where Camunda uses the first occurrence); :class:`DsfCycleTimerEventDefinition`
  repeats and is used for non-interrupting boundary cycles. Each stores its due instant,
  ISO text, in ``task.internal_data["dsf_timer_due"][element id]`` — :func:`next_timer_due`
  reads them so the engine's scheduler needs no scan of SpiffWorkflow internals.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from SpiffWorkflow.bpmn.exceptions import WorkflowTaskException  # type: ignore[import-untyped]
from SpiffWorkflow.bpmn.specs.event_definitions.item_aware_event import (  # type: ignore[import-untyped]
    ErrorEventDefinition,
    SignalEventDefinition,
)
from SpiffWorkflow.bpmn.specs.event_definitions.message import MessageEventDefinition  # type: ignore[import-untyped]
from SpiffWorkflow.bpmn.specs.event_definitions.timer import (  # type: ignore[import-untyped]
    CycleTimerEventDefinition,
    TimerEventDefinition,
)
from SpiffWorkflow.bpmn.util import BpmnEvent, PendingBpmnEvent  # type: ignore[import-untyped]
from SpiffWorkflow.util.task import TaskState  # type: ignore[import-untyped]

from dsf_core.bpe.scripting import local_tz_of, now_of
from dsf_core.bpe.timers import Timer, TimerDefinition, TimerError, TimerKind, next_due, parse_timer

__all__ = [
    "DUE_KEY",
    "DsfCycleTimerEventDefinition",
    "DsfErrorEventDefinition",
    "DsfMessageEventDefinition",
    "DsfSignalEventDefinition",
    "DsfTimerEventDefinition",
    "message_event",
    "next_timer_due",
    "signal_event",
    "timer_due",
]

DUE_KEY: Final = "dsf_timer_due"

SpiffTask = Any


class DsfMessageEventDefinition(MessageEventDefinition):  # type: ignore[misc]
    """A BPMN message by name; the payload (a dict) is merged into the catching task's data.

    A sender whose message name is only known at run time (a ``messageName`` field with
    an expression, no ``messageRef``) has ``name`` ``None``.
    """

    def __init__(self, name: str | None, **kwargs: Any) -> None:
        # DSF correlates by business key and correlation key in the engine, never by
        # BPMN correlation properties.
        kwargs.pop("correlation_properties", None)
        super().__init__(name, None, **kwargs)

    def throw(self, my_task: SpiffTask) -> None:
        raise WorkflowTaskException(
            f"message {self.name!r} must be sent through the activity host, not thrown inside the workflow",
            task=my_task,
        )


class DsfSignalEventDefinition(SignalEventDefinition):  # type: ignore[misc]
    """A signal by name, broadcast to this instance and queued for the node's others."""

    def throw(self, my_task: SpiffTask) -> None:
        top = my_task.workflow.top_workflow
        top.event_manager.catch(BpmnEvent(DsfSignalEventDefinition(self.name)), internal=False)
        top.bpmn_events.append(BpmnEvent(DsfSignalEventDefinition(self.name)))


class DsfErrorEventDefinition(ErrorEventDefinition):  # type: ignore[misc]
    """An error by code (``None`` catches every code), optionally storing code and message."""

    def __init__(
        self,
        name: str,
        code: str | None = None,
        code_variable: str | None = None,
        message_variable: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(name, code, **kwargs)
        self.code_variable = code_variable
        self.message_variable = message_variable

    def update_task_data(self, my_task: SpiffTask) -> None:
        payload = my_task.internal_data.get(self.name) or {}
        if self.code_variable:
            my_task.data[self.code_variable] = payload.get("code")
        if self.message_variable:
            my_task.data[self.message_variable] = payload.get("message")


def _due_map(task: SpiffTask) -> dict[str, str | None]:
    dues: dict[str, str | None] = task.internal_data.setdefault(DUE_KEY, {})
    return dues


def _resolve(definition: Any, task: SpiffTask, text: str | None = None) -> Timer:
    value = task.workflow.script_engine.evaluate(task, definition.expression) if text is None else text
    try:
        return parse_timer(definition.kind, value, local_tz=local_tz_of(task))
    except TimerError as exc:
        raise WorkflowTaskException(f"timer {definition.name!r}: {exc}", task=task, exception=exc) from exc


class DsfTimerEventDefinition(TimerEventDefinition):  # type: ignore[misc]
    """A timer that fires once: at its date, after its duration, or at a cycle's first occurrence.

    ``name`` is the element id (unique, so an event-based gateway can tell its timers apart).
    """

    def __init__(self, name: str, expression: str, kind: str = TimerKind.DURATION.value, **kwargs: Any) -> None:
        super().__init__(name, expression, **kwargs)
        self.kind = kind

    @property
    def definition(self) -> TimerDefinition:
        """The timer as drawn (kind and literal or ``${...}`` text)."""
        return TimerDefinition(TimerKind(self.kind), self.expression)

    def due(self, my_task: SpiffTask) -> datetime:
        """The due instant, computed (and stored) when the timer is first armed."""
        dues = _due_map(my_task)
        stored = dues.get(self.name)
        if stored is None:
            due = next_due(_resolve(self, my_task), now_of(my_task), fired_count=0)
            if due is None:  # timers.parse_* reject every value that never fires
                raise WorkflowTaskException(f"timer {self.name!r} never fires", task=my_task)
            dues[self.name] = due.isoformat()
            return due
        return datetime.fromisoformat(stored)

    def has_fired(self, my_task: SpiffTask) -> bool:
        return bool(self.due(my_task) <= now_of(my_task))

    def details(self, my_task: SpiffTask) -> Any:
        return PendingBpmnEvent(self.name, type(self).__name__, _due_map(my_task).get(self.name))


class DsfCycleTimerEventDefinition(CycleTimerEventDefinition):  # type: ignore[misc]
    """A repeating ``timeCycle`` (non-interrupting boundary): each occurrence starts a branch."""

    def __init__(self, name: str, expression: str, kind: str = TimerKind.CYCLE.value, **kwargs: Any) -> None:
        super().__init__(name, expression, **kwargs)
        self.kind = kind

    @property
    def definition(self) -> TimerDefinition:
        return TimerDefinition(TimerKind(self.kind), self.expression)

    def cycle_complete(self, my_task: SpiffTask) -> bool:
        state = my_task._get_internal_data("event_value")
        now = now_of(my_task)
        if state is None:
            text = my_task.workflow.script_engine.evaluate(my_task, self.expression)
            first = next_due(_resolve(self, my_task, text), now, fired_count=0)
            state = {"value": text, "fired": 0, "next": first.isoformat() if first else None}
        ready = False
        if state["next"] is not None and datetime.fromisoformat(state["next"]) <= now:
            fired = state["fired"] + 1
            # The previous due time, not "now", is the reference: no drift.
            after = next_due(_resolve(self, my_task, state["value"]), datetime.fromisoformat(state["next"]), fired_count=fired)
            state = {"value": state["value"], "fired": fired, "next": after.isoformat() if after else None}
            ready = True
        my_task._set_internal_data(event_value=state)
        _due_map(my_task)[self.name] = state["next"]
        if state["next"] is None:
            my_task._set_internal_data(event_fired=True)
        return ready

    def details(self, my_task: SpiffTask) -> Any:
        return PendingBpmnEvent(self.name, type(self).__name__, _due_map(my_task).get(self.name))


def message_event(name: str, payload: Mapping[str, Any] | None = None, *, target: Any = None) -> Any:
    """A message for ``workflow.send_event``; pass ``target=waiting_task.workflow`` to deliver
    to one (sub)process only — always do, see the module docstring."""
    return BpmnEvent(DsfMessageEventDefinition(name), payload=dict(payload or {}), target=target)


def signal_event(name: str) -> Any:
    """A signal for ``workflow.send_event`` (broadcast from another instance)."""
    return BpmnEvent(DsfSignalEventDefinition(name))


def timer_due(task: SpiffTask) -> datetime | None:
    """The earliest due instant of the timers ``task`` waits for, if any."""
    if not task.has_state(TaskState.WAITING):
        return None
    dues = [datetime.fromisoformat(v) for v in task.internal_data.get(DUE_KEY, {}).values() if v is not None]
    return min(dues) if dues else None


def next_timer_due(workflow: Any) -> datetime | None:
    """When the engine must next call ``refresh_timers()`` on ``workflow``, or ``None``."""
    dues = [d for t in workflow.top_workflow.event_manager.tasks.values() if (d := timer_due(t)) is not None]
    return min(dues) if dues else None
