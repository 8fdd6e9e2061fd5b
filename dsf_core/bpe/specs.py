"""SpiffWorkflow task specs for the DSF element subset.

Every BPMN element of a DSF model becomes one of the classes below: SpiffWorkflow's own
spec class with :class:`DsfElement` mixed in front. The mixin carries the element's
:class:`~dsf_core.bpe.bindings.Binding` (``spec.binding``) and gives every element the
Camunda behaviour SpiffWorkflow lacks:

* ``start`` execution listeners run once when the element is entered — for a catch
  event or an event-based gateway that is when it starts *waiting*, which is what DSF's
  ``SetCorrelationKeyListener`` relies on; ``end`` listeners run when it completes;
* ``camunda:inputParameter`` values are set before the element runs and removed (the
  shadowed value restored) when it completes; ``camunda:outputParameter`` values are
  evaluated then and set — a flat stand-in for Camunda's local variable scope.

What runs a binding is the engine's :class:`~dsf_core.bpe.scripting.ActivityHost`
(``workflow.script_engine.host``): a service task calls ``execute_service_task``; a send
task, a message intermediate throw event and a message end event call ``send_message``
(never SpiffWorkflow's in-workflow message throw). A host raising
:class:`~dsf_core.bpe.scripting.BpmnErrorRaised` takes the error boundary path:
:func:`throw_bpmn_error` delivers the error to the boundary event attached to this very
activity (or to an enclosing sub-process), not to whichever error boundary happens to be
waiting, and fails loudly when nothing catches it.

Multi-instance activities follow Camunda: the ``camunda:collection`` is an expression,
each instance sees its ``camunda:elementVariable`` and ``loopCounter``, and neither leaks
into (nor is overwritten by) the enclosing data when instances merge back.
"""

from __future__ import annotations

from copy import deepcopy
from typing import Any, Final

from SpiffWorkflow.bpmn.exceptions import WorkflowDataException, WorkflowTaskException  # type: ignore[import-untyped]
from SpiffWorkflow.bpmn.specs.bpmn_task_spec import _BpmnCondition  # type: ignore[import-untyped]
from SpiffWorkflow.bpmn.specs.control import BoundaryEventSplit  # type: ignore[import-untyped]
from SpiffWorkflow.bpmn.specs.data_spec import TaskDataReference  # type: ignore[import-untyped]
from SpiffWorkflow.bpmn.specs.defaults import (  # type: ignore[import-untyped]
    BoundaryEvent,
    EndEvent,
    EventBasedGateway,
    ExclusiveGateway,
    IntermediateCatchEvent,
    IntermediateThrowEvent,
    ParallelGateway,
    ParallelMultiInstanceTask,
    ReceiveTask,
    SendTask,
    SequentialMultiInstanceTask,
    ServiceTask,
    StartEvent,
    SubWorkflowTask,
    UserTask,
)
from SpiffWorkflow.bpmn.specs.mixins.multiinstance_task import MultiInstanceTask  # type: ignore[import-untyped]
from SpiffWorkflow.bpmn.util import BpmnEvent  # type: ignore[import-untyped]
from SpiffWorkflow.util.task import TaskState  # type: ignore[import-untyped]

from dsf_core.bpe.bindings import Binding
from dsf_core.bpe.events import DsfErrorEventDefinition, DsfMessageEventDefinition
from dsf_core.bpe.scripting import BpmnErrorRaised, host_of

__all__ = [
    "CollectionExpression",
    "DsfBoundaryEvent",
    "DsfElement",
    "DsfEndEvent",
    "DsfEventBasedGateway",
    "DsfExclusiveGateway",
    "DsfIntermediateCatchEvent",
    "DsfIntermediateThrowEvent",
    "DsfParallelGateway",
    "DsfParallelMultiInstanceTask",
    "DsfReceiveTask",
    "DsfSendTask",
    "DsfSequentialMultiInstanceTask",
    "DsfServiceTask",
    "DsfStartEvent",
    "DsfSubProcess",
    "DsfUserTask",
    "JuelCondition",
    "UnhandledBpmnError",
    "throw_bpmn_error",
]

SpiffTask = Any

_ENTERED: Final = "dsf_entered"
_SHADOWED: Final = "dsf_shadowed"
LOOP_COUNTER: Final = "loopCounter"


class UnhandledBpmnError(WorkflowTaskException):  # type: ignore[misc]
    """A BPMN error no boundary event catches: the engine fails the instance (as Camunda would)."""

    def __init__(self, task: SpiffTask, code: str, message: str | None) -> None:
        super().__init__(
            f"BPMN error {code!r} raised by {task.task_spec.bpmn_id!r} is not caught by any error boundary event"
            + (f": {message}" if message else ""),
            task=task,
        )
        self.code = code
        self.message = message


class DsfElement:
    """Mixin placed first in the bases of every DSF task spec (see the module docstring)."""

    binding: Binding

    def __init__(self, wf_spec: Any, bpmn_id: str, binding: Binding | None = None, **kwargs: Any) -> None:
        super().__init__(wf_spec, bpmn_id, **kwargs)  # type: ignore[call-arg]
        self.binding = binding if binding is not None else Binding()

    @property
    def message_name(self) -> str | None:
        """The BPMN message this element starts on, waits for or sends (``None`` if none)."""
        definition = getattr(self, "event_definition", None)
        return definition.name if isinstance(definition, DsfMessageEventDefinition) else None

    # -- hooks SpiffWorkflow calls ---------------------------------------------------

    def _update_hook(self, my_task: SpiffTask) -> Any:
        ready = super()._update_hook(my_task)  # type: ignore[misc]
        # _update_hook runs again on every timer refresh and join re-check: enter once.
        if not my_task.internal_data.get(_ENTERED) and my_task.state != TaskState.CANCELLED:
            my_task.internal_data[_ENTERED] = True
            for listener in self.binding.listeners("start"):
                host_of(my_task).run_listener(my_task, self, listener)
        return ready

    def _run_hook(self, my_task: SpiffTask) -> bool | None:
        self._enter_inputs(my_task)
        return self._execute_element(my_task)

    def _execute_element(self, my_task: SpiffTask) -> bool | None:
        """What the element does when it runs; SpiffWorkflow's behaviour unless overridden."""
        result: bool | None = super()._run_hook(my_task)  # type: ignore[misc]
        return result

    def _on_complete_hook(self, my_task: SpiffTask) -> None:
        self._leave_scope(my_task)
        for listener in self.binding.listeners("end"):
            host_of(my_task).run_listener(my_task, self, listener)
        super()._on_complete_hook(my_task)  # type: ignore[misc]

    # -- Camunda input/output parameters --------------------------------------------

    def _enter_inputs(self, my_task: SpiffTask) -> None:
        if not self.binding.inputs:
            return
        engine = my_task.workflow.script_engine
        values = {p.name: _evaluate_parameter(engine, my_task, p.value) for p in self.binding.inputs}
        shadowed = [[name, name in my_task.data, my_task.data.get(name)] for name in values]
        my_task.internal_data[_SHADOWED] = shadowed
        my_task.data.update(values)

    def _leave_scope(self, my_task: SpiffTask) -> None:
        engine = my_task.workflow.script_engine
        outputs = {p.name: _evaluate_parameter(engine, my_task, p.value) for p in self.binding.outputs}
        for name, existed, previous in my_task.internal_data.pop(_SHADOWED, []):
            if existed:
                my_task.data[name] = previous
            else:
                my_task.data.pop(name, None)
        my_task.data.update(outputs)


def _evaluate_parameter(engine: Any, my_task: SpiffTask, text: str | None) -> Any:
    return None if text is None else engine.evaluate(my_task, text)


# ------------------------------------------------------------------------- BPMN errors


def throw_bpmn_error(task: SpiffTask, code: str, message: str | None = None) -> None:
    """Deliver a BPMN error raised by ``task`` to the error boundary event that handles it.

    The engine calls this too when an activity that completes asynchronously fails with a
    BPMN error. Raises :class:`UnhandledBpmnError` when no boundary event catches ``code``.
    """
    event = BpmnEvent(DsfErrorEventDefinition(code, code), payload={"code": code, "message": message})
    catcher = _error_catcher(task, event)
    if catcher is None:
        raise UnhandledBpmnError(task, code, message)
    catcher.task_spec.catch(catcher, event)
    catcher.task_spec._update(catcher)


def _error_catcher(task: SpiffTask, event: Any) -> SpiffTask | None:
    # Walk from the failing activity outwards: its own boundary events first, then those of
    # each enclosing (multi-instance) sub-process. SpiffWorkflow's event manager would hand
    # the error to any waiting error boundary in the same workflow, even on a parallel path.
    current = task
    while current is not None:
        parent = current.parent
        if parent is not None and isinstance(parent.task_spec, MultiInstanceTask):
            current, parent = parent, parent.parent
        if parent is not None and isinstance(parent.task_spec, BoundaryEventSplit):
            for sibling in parent.children:
                if (
                    sibling is not current
                    and isinstance(sibling.task_spec, BoundaryEvent)
                    and sibling.task_spec.catches(sibling, event)
                ):
                    return sibling
        workflow = current.workflow
        if workflow is workflow.top_workflow:
            return None
        current = workflow.top_workflow.get_task_from_id(workflow.parent_task_id)
    return None


def _run_activity(task: SpiffTask, spec: Any, call: Any) -> bool | None:
    try:
        result: bool | None = call(task, spec)
    except BpmnErrorRaised as error:
        throw_bpmn_error(task, error.code, error.message)
        # The boundary event is READY now; when it runs, SpiffWorkflow's boundary join
        # cancels this task, so it waits (STARTED) until then.
        return None
    return result


# ------------------------------------------------------------------------- activities


class DsfServiceTask(DsfElement, ServiceTask):  # type: ignore[misc]
    """``bpmn:serviceTask`` with ``camunda:class``: the host runs the activity."""

    def _execute_element(self, my_task: SpiffTask) -> bool | None:
        return _run_activity(my_task, self, host_of(my_task).execute_service_task)


class DsfSendTask(DsfElement, SendTask):  # type: ignore[misc]
    """``bpmn:sendTask`` with ``camunda:class``; ``event_definition.name`` is the message name."""

    def _execute_element(self, my_task: SpiffTask) -> bool | None:
        return _run_activity(my_task, self, host_of(my_task).send_message)


class DsfReceiveTask(DsfElement, ReceiveTask):  # type: ignore[misc]
    pass


class DsfUserTask(DsfElement, UserTask):  # type: ignore[misc]
    """``bpmn:userTask``; ``form_key`` is the Questionnaire URL (``camunda:formKey``).

    SpiffWorkflow leaves a user task READY (``manual``); the engine completes it when the
    QuestionnaireResponse comes back, and runs ``binding.task_listeners`` itself.
    """

    def __init__(self, wf_spec: Any, bpmn_id: str, form_key: str | None = None, **kwargs: Any) -> None:
        super().__init__(wf_spec, bpmn_id, **kwargs)
        self.form_key = form_key


class DsfSubProcess(DsfElement, SubWorkflowTask):  # type: ignore[misc]
    """An embedded ``bpmn:subProcess``: its variables are the enclosing process's."""


# ------------------------------------------------------------------------- events


class DsfStartEvent(DsfElement, StartEvent):  # type: ignore[misc]
    pass


class DsfEndEvent(DsfElement, EndEvent):  # type: ignore[misc]
    def _execute_element(self, my_task: SpiffTask) -> bool | None:
        if isinstance(self.event_definition, DsfMessageEventDefinition):
            return _run_activity(my_task, self, host_of(my_task).send_message)
        return super()._execute_element(my_task)


class DsfIntermediateThrowEvent(DsfElement, IntermediateThrowEvent):  # type: ignore[misc]
    def _execute_element(self, my_task: SpiffTask) -> bool | None:
        if isinstance(self.event_definition, DsfMessageEventDefinition):
            return _run_activity(my_task, self, host_of(my_task).send_message)
        return super()._execute_element(my_task)


class DsfIntermediateCatchEvent(DsfElement, IntermediateCatchEvent):  # type: ignore[misc]
    pass


class DsfBoundaryEvent(DsfElement, BoundaryEvent):  # type: ignore[misc]
    pass


# ------------------------------------------------------------------------- gateways


class JuelCondition(_BpmnCondition):  # type: ignore[misc]
    """A sequence-flow condition; like Camunda it must yield a boolean (or ``'true'``/``'false'``)."""

    def _matches(self, task: SpiffTask) -> bool:
        value = task.workflow.script_engine.evaluate(task, self.args[0])
        if isinstance(value, bool):
            return value
        if value is None:
            return False
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise WorkflowTaskException(
            f"condition {self.args[0]!r} gave {value!r}, not a boolean", task=task
        )


class DsfExclusiveGateway(DsfElement, ExclusiveGateway):  # type: ignore[misc]
    def connect_outgoing_if(self, condition: str | None, taskspec: Any) -> None:
        if condition is None:
            self.connect(taskspec)
        else:
            self.connect_if(JuelCondition(condition), taskspec)


class DsfParallelGateway(DsfElement, ParallelGateway):  # type: ignore[misc]
    pass


class DsfEventBasedGateway(DsfElement, EventBasedGateway):  # type: ignore[misc]
    pass


# ------------------------------------------------------------------------- multi-instance


class CollectionExpression(TaskDataReference):  # type: ignore[misc]
    """The ``camunda:collection`` of a multi-instance activity, evaluated for each run.

    ``bpmn_id`` holds the expression text (a bare variable name is stored as ``${name}``).
    """

    def get(self, my_task: SpiffTask) -> Any:
        value = my_task.workflow.script_engine.evaluate(my_task, self.bpmn_id)
        if value is None:
            raise WorkflowDataException(f"multi-instance collection {self.bpmn_id} is null", my_task)
        return value

    def exists(self, my_task: SpiffTask) -> bool:
        return True

    def set(self, my_task: SpiffTask, value: Any) -> None:
        raise WorkflowDataException(f"multi-instance collection {self.bpmn_id} cannot be assigned", my_task)


class _MultiInstance(DsfElement):
    """Camunda instance-local variables on top of SpiffWorkflow's multi-instance tasks."""

    input_item: Any
    task_spec: str

    def _local_names(self) -> tuple[str, ...]:
        element = (self.input_item.bpmn_id,) if self.input_item is not None else ()
        return (*element, LOOP_COUNTER)

    def create_child(self, my_task: SpiffTask, item: Any, key_or_index: Any = None) -> None:
        task_spec = my_task.workflow.spec.task_specs[self.task_spec]
        if not task_spec.completed_event.is_connected(self.merge_child):
            task_spec.completed_event.connect(self.merge_child)
        # An enclosing variable of the same name must neither block the instance (as
        # SpiffWorkflow would) nor overwrite the item when the child inherits data.
        hidden = {name: my_task.data.pop(name) for name in self._local_names() if name in my_task.data}
        try:
            child = my_task._add_child(task_spec, TaskState.WAITING)
            child.triggered = True
            if self.input_item is not None:
                self.input_item.set(child, deepcopy(item))
            child.data[LOOP_COUNTER] = len(list(self._instances(my_task))) - 1  # type: ignore[attr-defined]
            if key_or_index is not None:
                child.internal_data["key_or_index"] = key_or_index
            else:
                child.internal_data["item"] = item
            child.task_spec._update(child)
        finally:
            my_task.data.update(hidden)

    def merge_child(self, workflow: Any, child: SpiffTask) -> None:
        for name in self._local_names():
            child.data.pop(name, None)
        super().merge_child(workflow, child)  # type: ignore[misc]


class DsfParallelMultiInstanceTask(_MultiInstance, ParallelMultiInstanceTask):  # type: ignore[misc]
    pass


class DsfSequentialMultiInstanceTask(_MultiInstance, SequentialMultiInstanceTask):  # type: ignore[misc]
    pass
