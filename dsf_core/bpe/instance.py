"""One running process instance in memory, and what its activities see of it.

:class:`Instance` holds the SpiffWorkflow workflow, the instance's FHIR Tasks and the
activities its last engine step started. :class:`InstanceHost` is the
:class:`~dsf_core.bpe.scripting.ActivityHost` of the instance's script engine: when a spec
reaches a service task or a message send it does not run the activity (that is I/O) but
records a :class:`Pending` activity and leaves the SpiffWorkflow task STARTED; the engine
runs the pending activities concurrently, then completes each task or takes its error
path. Listeners run at once: they are synchronous and do no I/O.

:class:`TaskVariables` is the plugin API's :class:`~dsf_core.api.Variables` over one
SpiffWorkflow task's data.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from SpiffWorkflow.bpmn.specs.event_definitions.multiple import MultipleEventDefinition  # type: ignore[import-untyped]
from SpiffWorkflow.bpmn.specs.event_definitions.item_aware_event import SignalEventDefinition  # type: ignore[import-untyped]
from SpiffWorkflow.util.task import TaskState  # type: ignore[import-untyped]

from dsf_core.api.targets import Target, Targets
from dsf_core.bpe.bindings import Listener
from dsf_core.bpe.specs import DsfServiceTask

if TYPE_CHECKING:
    from dsf_core.api.services import ProcessPluginApi
    from dsf_core.bpe.deployment import DeployedProcess

__all__ = ["LATEST_TASK", "Instance", "InstanceHost", "Pending", "TaskVariables"]

SpiffTask = Any

#: Task data key holding the id of the Task that last reached this branch.
LATEST_TASK = "_dsfLatestTask"


@dataclass
class Pending:
    """An activity a step started; the engine runs it and then completes ``task``."""

    task: SpiffTask
    spec: Any
    kind: str  # "service" | "send"
    class_name: str
    fields: Mapping[str, Any]


@dataclass(eq=False)
class Instance:
    id: str
    process: DeployedProcess
    workflow: Any
    business_key: str
    tasks: dict[str, dict[str, Any]]
    start_task_id: str | None
    status: str = "running"
    revision: int = 0
    new: bool = True
    pending: list[Pending] = field(default_factory=list)
    handled: list[str] = field(default_factory=list)  # Task ids to record as handled with the next save
    dirty_tasks: set[str] = field(default_factory=set)  # Tasks whose status must be written to the mailbox
    unwritten: set[str] = field(default_factory=set)  # accepted Tasks the mailbox may still have `requested`
    # QuestionnaireResponses to write (set ``amended``) after the next save, by id
    dirty_responses: dict[str, dict[str, Any]] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def take_pending(self) -> list[Pending]:
        pending, self.pending = self.pending, []
        return pending

    def waits(self) -> set[tuple[str, str]]:
        """``(kind, name)`` of every signal a WAITING task of the instance catches."""
        out: set[tuple[str, str]] = set()
        for task in self.workflow.get_tasks(state=TaskState.WAITING):
            definition = getattr(task.task_spec, "event_definition", None)
            definitions = definition.event_definitions if isinstance(definition, MultipleEventDefinition) else [definition]
            out.update(("signal", d.name) for d in definitions if isinstance(d, SignalEventDefinition) and d.name)
        return out


class InstanceHost:
    """The activity host of one instance (see the module docstring)."""

    def __init__(self, instance_ref: Callable[[], Instance], api: ProcessPluginApi) -> None:
        self._instance = instance_ref
        self._api = api

    def execute_service_task(self, task: SpiffTask, spec: Any) -> bool | None:
        self._record(task, spec, "service")
        return None  # STARTED: the engine completes the task when the activity finished

    def send_message(self, task: SpiffTask, spec: Any) -> bool | None:
        self._record(task, spec, "send")
        return None

    def _record(self, task: SpiffTask, spec: Any, kind: str) -> None:
        fields = spec.binding.field_values(task.data)
        self._instance().pending.append(Pending(task, spec, kind, spec.binding.class_name, fields))
        return None

    def run_listener(self, task: SpiffTask, spec: Any, listener: Listener) -> None:
        instance = self._instance()
        cls = instance.process.classes[listener.class_name]
        fields = {f.name: f.resolve(task.data) for f in listener.fields}
        cls(fields).notify(self._api, TaskVariables(instance, task, self._api))


def activity_kind(spec: Any) -> str:
    return "service" if isinstance(spec, DsfServiceTask) else "send"


def _json_native(name: str, value: Any) -> None:
    try:
        orjson.dumps(value)
    except TypeError as exc:
        raise ValueError(f"variable {name!r}: {exc} (process variables must be JSON values)") from None


class TaskVariables:
    """:class:`dsf_core.api.Variables` over the data of one SpiffWorkflow task."""

    def __init__(self, instance: Instance, task: SpiffTask, api: ProcessPluginApi, *, writer: Any = None) -> None:
        self._instance = instance
        self._task = task
        self._api = api
        self._writer = writer

    @property
    def business_key(self) -> str:
        return self._instance.business_key

    @property
    def activity_id(self) -> str:
        """The BPMN element id of the activity (or listener's element) these variables belong to."""
        return str(self._task.task_spec.bpmn_id)

    @property
    def correlation_key(self) -> str | None:
        value = self._task.data.get("correlationKey")
        return value if isinstance(value, str) else None

    @property
    def start_task(self) -> dict[str, Any]:
        instance = self._instance
        if instance.start_task_id is None or instance.start_task_id not in instance.tasks:
            raise LookupError("this instance was not started by a Task")
        return instance.tasks[instance.start_task_id]

    @property
    def latest_task(self) -> dict[str, Any]:
        latest = self._task.data.get(LATEST_TASK)
        if isinstance(latest, str) and latest in self._instance.tasks:
            return self._instance.tasks[latest]
        return self.start_task

    @property
    def tasks(self) -> list[dict[str, Any]]:
        return list(self._instance.tasks.values())

    def get(self, name: str, default: Any = None) -> Any:
        return self._task.data.get(name, default)

    def has(self, name: str) -> bool:
        return name in self._task.data

    def set(self, name: str, value: Any) -> None:
        _json_native(name, value)
        self._task.data[name] = value

    def remove(self, name: str) -> None:
        self._task.data.pop(name, None)

    @property
    def target(self) -> Target | None:
        value = self._task.data.get("target")
        return Target.from_variable(value) if isinstance(value, Mapping) else None

    def set_target(self, target: Target) -> None:
        self._task.data["target"] = target.to_variable()

    @property
    def targets(self) -> Targets:
        value = self._task.data.get("targets")
        return Targets.from_variable(value) if isinstance(value, Mapping) else Targets()

    def set_targets(self, targets: Targets) -> None:
        self._task.data["targets"] = targets.to_variable()

    async def update_task(self, task: dict[str, Any]) -> None:
        task_id = task.get("id")
        if not isinstance(task_id, str) or task_id not in self._instance.tasks:
            raise LookupError("update_task takes one of the instance's Tasks (variables.tasks)")
        self._instance.tasks[task_id] = task
        if self._writer is not None:
            await self._writer(task)
