"""A small in-test runner: parsed specs executed by SpiffWorkflow with stub activities.

Not the engine (that comes with persistence, dispatch and the plugin API); just enough to
show the specs are executable: a stub :class:`ActivityHost` that records every call and
implements the conformance vocabulary of ``bpmn/README.md``, an injected clock, and
helpers to start an instance, deliver a message to one waiting task, and move time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from SpiffWorkflow.bpmn.workflow import BpmnWorkflow  # type: ignore[import-untyped]
from SpiffWorkflow.util.task import TaskState  # type: ignore[import-untyped]

from dsf_core.bpe.bindings import Listener
from dsf_core.bpe.events import message_event, next_timer_due, signal_event
from dsf_core.bpe.model import ProcessModel
from dsf_core.bpe.parser import load_bpmn
from dsf_core.bpe.scripting import BpmnErrorRaised, DsfScriptEngine

BPMN_DIR = Path(__file__).resolve().parents[2] / "bpmn"
PLACEHOLDERS = {"version": "1.0"}
START = datetime(2026, 1, 1, 9, 0, tzinfo=timezone.utc)


@dataclass
class Clock:
    now: datetime = START

    def __call__(self) -> datetime:
        return self.now


@dataclass(frozen=True)
class Call:
    kind: str  # "service" | "send" | "listener"
    element: str
    class_name: str
    fields: Mapping[str, Any]
    variables: Mapping[str, Any]


Activity = Callable[[Any, Mapping[str, Any]], bool | None]


def _select_targets(task: Any, fields: Mapping[str, Any]) -> None:
    organizations = task.data.get("organizations", ["dic-1", "dic-2", "dic-3"])
    task.data["targets"] = {
        "entries": [{"organization": o, "correlationKey": f"ck-{o}"} for o in organizations]
    }


def _may_fail(task: Any, fields: Mapping[str, Any]) -> None:
    if task.data.get("shouldFail"):
        raise BpmnErrorRaised(fields["errorCode"], "failed on purpose")


def _send(task: Any, fields: Mapping[str, Any]) -> None:
    if task.data.get("sendFails"):
        raise BpmnErrorRaised("target_not_allowed", "403 Forbidden")


def _increment(task: Any, fields: Mapping[str, Any]) -> None:
    task.data["count"] = task.data.get("count", 0) + 1


def _set_correlation_key(task: Any, fields: Mapping[str, Any]) -> None:
    task.data["correlationKey"] = task.data["target"]["correlationKey"]


CONFORMANCE_ACTIVITIES: dict[str, Callable[[Any, Mapping[str, Any]], None]] = {
    "conformance.Record": lambda task, fields: None,
    "conformance.Listen": lambda task, fields: None,
    "conformance.Send": _send,
    "conformance.MayFail": _may_fail,
    "conformance.SelectTargets": _select_targets,
    "conformance.Increment": _increment,
    "conformance.SetCorrelationKey": _set_correlation_key,
}


@dataclass
class StubHost:
    """Runs a ``camunda:class`` by looking it up in ``activities`` (unknown names just record)."""

    activities: dict[str, Callable[[Any, Mapping[str, Any]], None]] = field(
        default_factory=lambda: dict(CONFORMANCE_ACTIVITIES)
    )
    calls: list[Call] = field(default_factory=list)
    complete_later: set[str] = field(default_factory=set)  # element ids answered with None (STARTED)

    def _run(self, kind: str, task: Any, spec: Any, class_name: str, fields: Mapping[str, Any]) -> bool | None:
        self.calls.append(Call(kind, spec.bpmn_id, class_name, dict(fields), dict(task.data)))
        activity = self.activities.get(class_name)
        if activity is not None:
            activity(task, fields)
        return None if spec.bpmn_id in self.complete_later else True

    def execute_service_task(self, task: Any, spec: Any) -> bool | None:
        return self._run("service", task, spec, spec.binding.class_name, spec.binding.field_values(task.data))

    def send_message(self, task: Any, spec: Any) -> bool | None:
        fields = spec.binding.field_values(task.data)
        return self._run("send", task, spec, spec.binding.class_name, fields)

    def run_listener(self, task: Any, spec: Any, listener: Listener) -> None:
        fields = {f.name: f.resolve(task.data) for f in listener.fields}
        self._run(f"listener:{listener.event}", task, spec, listener.class_name, fields)

    def elements(self, kind: str | None = None) -> list[str]:
        return [c.element for c in self.calls if kind is None or c.kind == kind]


class Run:
    """One workflow instance of ``model`` under a stub host and an injected clock."""

    def __init__(self, model: ProcessModel, host: StubHost | None = None) -> None:
        self.model = model
        self.host = host or StubHost()
        self.clock = Clock()
        self.workflow = BpmnWorkflow(
            model.spec, model.subprocess_specs, script_engine=DsfScriptEngine(self.host, clock=self.clock)
        )
        self.workflow.do_engine_steps()

    @classmethod
    def of(cls, name: str, host: StubHost | None = None) -> Run:
        return cls(load_bpmn(BPMN_DIR / f"{name}.bpmn", placeholders=PLACEHOLDERS), host)

    def start(self, message: str = "start", **variables: Any) -> Run:
        self.workflow.send_event(message_event(message, variables))
        self.workflow.do_engine_steps()
        return self

    def waiting(self, element: str) -> list[Any]:
        return [
            t for t in self.workflow.get_tasks(state=TaskState.WAITING)
            if getattr(t.task_spec, "bpmn_id", None) == element
        ]

    def deliver(self, message: str, to: Any, **payload: Any) -> None:
        """Targeted delivery to the (sub)workflow of the waiting task ``to``."""
        self.workflow.send_event(message_event(message, payload, target=to.workflow))
        self.workflow.do_engine_steps()

    def signal(self, name: str) -> None:
        self.workflow.send_event(signal_event(name))
        self.workflow.do_engine_steps()

    def advance(self, **delta: float) -> None:
        self.clock.now += timedelta(**delta)
        self.workflow.refresh_timers()
        self.workflow.do_engine_steps()

    def advance_to_next_timer(self) -> datetime:
        due = next_timer_due(self.workflow)
        assert due is not None, "nothing waits for a timer"
        self.clock.now = due
        self.workflow.refresh_timers()
        self.workflow.do_engine_steps()
        return due

    def ready_user_tasks(self) -> list[Any]:
        tasks: list[Any] = self.workflow.get_tasks(state=TaskState.READY, manual=True)
        return tasks

    @property
    def completed(self) -> bool:
        return bool(self.workflow.completed)

    @property
    def data(self) -> dict[str, Any]:
        return dict(self.workflow.data)

    def cancelled(self) -> set[str]:
        return {
            t.task_spec.bpmn_id for t in self.workflow.get_tasks(state=TaskState.CANCELLED)
            if getattr(t.task_spec, "bpmn_id", None)
        }
