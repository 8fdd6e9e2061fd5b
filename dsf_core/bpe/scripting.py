"""The script engine the DSF specs run under: JUEL instead of Python, plus the host.

SpiffWorkflow evaluates every condition, multi-instance collection/cardinality and timer
value through ``workflow.script_engine.evaluate(task, text)`` and would ``eval`` it as
Python. :class:`DsfScriptEngine` evaluates the JUEL subset of
:mod:`dsf_core.bpe.expressions` against the task's data instead, refuses to run scripts,
and carries the two things the engine injects into a running workflow:

* ``host`` — the :class:`ActivityHost` that runs a ``camunda:class`` binding (service
  task, message send, listener); the specs call it, tests pass a stub;
* ``clock`` — "now" for timers, so the scheduler and the tests decide the time.

The script engine is the one per-workflow object SpiffWorkflow does not serialize, which
makes it the right place for both: a restored workflow gets them back by being
constructed with ``script_engine=...``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone, tzinfo
from typing import TYPE_CHECKING, Any, Protocol

from SpiffWorkflow.bpmn.exceptions import WorkflowTaskException  # type: ignore[import-untyped]
from SpiffWorkflow.bpmn.script_engine import PythonScriptEngine  # type: ignore[import-untyped]
from SpiffWorkflow.bpmn.script_engine.python_environment import (  # type: ignore[import-untyped]
    BasePythonScriptEngineEnvironment,
)

from dsf_core.bpe.expressions import Execution, ExpressionError, compile_expression

if TYPE_CHECKING:
    from dsf_core.bpe.bindings import Listener

__all__ = ["ActivityHost", "BpmnErrorRaised", "DsfScriptEngine", "HostMissing", "host_of", "local_tz_of", "now_of"]

# SpiffWorkflow's Task and TaskSpec are untyped; name them for readers.
SpiffTask = Any
SpiffSpec = Any


class BpmnErrorRaised(Exception):
    """Raised by a host to take the error boundary path (Java: ``BpmnError``/``ErrorBoundaryEvent``).

    The plugin API's own error type is translated into this by the engine; the specs turn
    it into a BPMN error event caught by the boundary event with a matching code.
    """

    def __init__(self, code: str, message: str | None = None) -> None:
        super().__init__(message or code)
        self.code = code
        self.message = message


class HostMissing(RuntimeError):
    """A spec needed the activity host but the workflow's script engine has none."""


class ActivityHost(Protocol):
    """What the engine provides to execute bindings. Return values follow SpiffWorkflow:
    ``True`` — done, the token moves on; ``None`` — started, the engine completes the task
    later (``task.complete()`` after its I/O finished)."""

    def execute_service_task(self, task: SpiffTask, spec: SpiffSpec) -> bool | None:
        """Run the ``camunda:class`` of a service task."""

    def send_message(self, task: SpiffTask, spec: SpiffSpec) -> bool | None:
        """Send the DSF message of a send task, message intermediate throw or message end event."""

    def run_listener(self, task: SpiffTask, spec: SpiffSpec, listener: Listener) -> None:
        """Run an execution listener (``start`` when the element is entered, ``end`` when it completes)."""


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


class _JuelEnvironment(BasePythonScriptEngineEnvironment):  # type: ignore[misc]
    """Also answers SpiffWorkflow code that calls ``script_engine.environment`` directly."""

    def evaluate(self, expression: str, context: dict[str, Any], external_context: Any = None) -> Any:
        return compile_expression(expression).evaluate(context)

    def execute(self, script: str, context: dict[str, Any], external_context: Any = None) -> bool:
        raise NotImplementedError("scripts are not part of the DSF BPMN subset")

    def call_service(self, context: dict[str, Any], **kwargs: Any) -> Any:
        raise NotImplementedError("service operators are not part of the DSF BPMN subset")


class DsfScriptEngine(PythonScriptEngine):  # type: ignore[misc]
    """Script engine for workflows built from :mod:`dsf_core.bpe.parser` specs."""

    def __init__(
        self,
        host: ActivityHost | None = None,
        *,
        clock: Callable[[], datetime] = _utc_now,
        local_tz: tzinfo | None = None,
        execution: Callable[[SpiffTask], object] | None = None,
    ) -> None:
        """``local_tz`` is the zone of naive ``timeDate`` values (``None``: the machine's);
        ``execution`` builds what ``execution`` means in an expression for a task
        (default: a view on the task's data)."""
        super().__init__(environment=_JuelEnvironment())
        self.host = host
        self.clock = clock
        self.local_tz = local_tz
        self._execution = execution

    def now(self) -> datetime:
        now = self.clock()
        if now.tzinfo is None:
            raise ValueError("the engine clock must return an aware datetime")
        return now

    def execution_for(self, task: SpiffTask) -> object:
        return self._execution(task) if self._execution is not None else Execution(task.data)

    def evaluate(self, task: SpiffTask, expression: str, external_context: Any = None) -> Any:
        try:
            return compile_expression(expression).evaluate(task.data, execution=self.execution_for(task))
        except ExpressionError as exc:
            raise WorkflowTaskException(str(exc), task=task, exception=exc) from exc

    def validate(self, expression: str) -> None:
        compile_expression(expression)

    def execute(self, task: SpiffTask, script: str, external_context: Any = None) -> bool:
        raise WorkflowTaskException("scripts are not part of the DSF BPMN subset", task=task)

    def call_service(self, task: SpiffTask, **kwargs: Any) -> Any:
        raise WorkflowTaskException("service operators are not part of the DSF BPMN subset", task=task)


def _engine_of(task: SpiffTask) -> DsfScriptEngine:
    engine = task.workflow.script_engine
    if not isinstance(engine, DsfScriptEngine):
        raise HostMissing(
            f"workflow {task.workflow.spec.name!r} runs DSF specs but its script engine is "
            f"{type(engine).__name__}; construct it with script_engine=DsfScriptEngine(...)"
        )
    return engine


def host_of(task: SpiffTask) -> ActivityHost:
    """The activity host of the workflow ``task`` belongs to."""
    host = _engine_of(task).host
    if host is None:
        raise HostMissing(f"element {task.task_spec.bpmn_id!r} needs an activity host, but none is configured")
    return host


def now_of(task: SpiffTask) -> datetime:
    """The engine's "now" for ``task`` (the injected clock)."""
    return _engine_of(task).now()


def local_tz_of(task: SpiffTask) -> tzinfo | None:
    return _engine_of(task).local_tz
