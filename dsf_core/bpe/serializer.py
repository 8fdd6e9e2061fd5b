"""SpiffWorkflow serializer converters for the DSF specs and event definitions.

SpiffWorkflow serializes a workflow (and, unless the engine strips it, its specs) through a
registry of converters keyed by class; a class without a converter fails with "not JSON
serializable". :data:`DSF_SERIALIZER_CONFIG` is SpiffWorkflow's default configuration plus
one converter per DSF class: the stock converter of the base class, extended by the
``binding`` (and the few DSF-only attributes such as ``form_key``, the timer ``kind`` or the
error variables). :func:`create_serializer` builds a ready serializer.

A deserialized workflow comes back with SpiffWorkflow's Python script engine: set
``workflow.script_engine = DsfScriptEngine(...)`` before running it.
"""

from __future__ import annotations

from copy import copy
from typing import Any

from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer  # type: ignore[import-untyped]
from SpiffWorkflow.bpmn.serializer.config import DEFAULT_CONFIG  # type: ignore[import-untyped]
from SpiffWorkflow.bpmn.serializer.default.event_definition import (  # type: ignore[import-untyped]
    ErrorEscalationEventDefinitionConverter,
    TimerConditionalEventDefinitionConverter,
)
from SpiffWorkflow.bpmn.serializer.default.task_spec import (  # type: ignore[import-untyped]
    BoundaryEventConverter,
    BpmnTaskSpecConverter,
    EventConverter,
    ExclusiveGatewayConverter,
    MultiInstanceTaskConverter,
    ParallelGatewayConverter,
    SubWorkflowConverter,
)
from SpiffWorkflow.bpmn.serializer.helpers import (  # type: ignore[import-untyped]
    BpmnDataSpecificationConverter,
    EventDefinitionConverter,
)

from dsf_core.bpe.bindings import Binding
from dsf_core.bpe.events import (
    DsfCycleTimerEventDefinition,
    DsfErrorEventDefinition,
    DsfMessageEventDefinition,
    DsfSignalEventDefinition,
    DsfTimerEventDefinition,
)
from dsf_core.bpe.specs import (
    CollectionExpression,
    DsfBoundaryEvent,
    DsfEndEvent,
    DsfEventBasedGateway,
    DsfExclusiveGateway,
    DsfIntermediateCatchEvent,
    DsfIntermediateThrowEvent,
    DsfParallelGateway,
    DsfParallelMultiInstanceTask,
    DsfReceiveTask,
    DsfSendTask,
    DsfSequentialMultiInstanceTask,
    DsfServiceTask,
    DsfStartEvent,
    DsfSubProcess,
    DsfUserTask,
    JuelCondition,
)

__all__ = ["DSF_SERIALIZER_CONFIG", "create_serializer"]


def _with_binding(base: type) -> type:
    """``base`` converter that also stores ``spec.binding``."""

    class WithBinding(base):  # type: ignore[misc]
        def to_dict(self, spec: Any) -> dict[str, Any]:
            dct: dict[str, Any] = super().to_dict(spec)
            dct["binding"] = spec.binding.to_dict()
            return dct

        def from_dict(self, dct: dict[str, Any]) -> Any:
            dct["binding"] = Binding.from_dict(dct.get("binding"))
            return super().from_dict(dct)

    WithBinding.__name__ = f"Dsf{base.__name__}"
    return WithBinding


class _UserTaskConverter(_with_binding(BpmnTaskSpecConverter)):  # type: ignore[misc]
    def to_dict(self, spec: Any) -> dict[str, Any]:
        dct: dict[str, Any] = super().to_dict(spec)
        dct["form_key"] = spec.form_key
        return dct


class _ExclusiveGatewayConverter(_with_binding(ExclusiveGatewayConverter)):  # type: ignore[misc]
    def bpmn_condition_from_dict(self, dct: dict[str, Any]) -> tuple[Any, str]:
        condition = dct["condition"]
        return (JuelCondition(condition) if condition is not None else None, dct["task_spec"])


class _TimerConverter(TimerConditionalEventDefinitionConverter):  # type: ignore[misc]
    def to_dict(self, event_definition: Any) -> dict[str, Any]:
        dct: dict[str, Any] = super().to_dict(event_definition)
        dct["kind"] = event_definition.kind
        return dct


class _ErrorConverter(ErrorEscalationEventDefinitionConverter):  # type: ignore[misc]
    def to_dict(self, event_definition: Any) -> dict[str, Any]:
        dct: dict[str, Any] = super().to_dict(event_definition)
        dct["code_variable"] = event_definition.code_variable
        dct["message_variable"] = event_definition.message_variable
        return dct


DSF_SERIALIZER_CONFIG: dict[type, type] = {
    **copy(DEFAULT_CONFIG),
    DsfStartEvent: _with_binding(EventConverter),
    DsfEndEvent: _with_binding(EventConverter),
    DsfIntermediateCatchEvent: _with_binding(EventConverter),
    DsfIntermediateThrowEvent: _with_binding(EventConverter),
    DsfBoundaryEvent: _with_binding(BoundaryEventConverter),
    DsfSendTask: _with_binding(EventConverter),
    DsfReceiveTask: _with_binding(EventConverter),
    DsfEventBasedGateway: _with_binding(EventConverter),
    DsfServiceTask: _with_binding(BpmnTaskSpecConverter),
    DsfUserTask: _UserTaskConverter,
    DsfSubProcess: _with_binding(SubWorkflowConverter),
    DsfExclusiveGateway: _ExclusiveGatewayConverter,
    DsfParallelGateway: _with_binding(ParallelGatewayConverter),
    DsfParallelMultiInstanceTask: _with_binding(MultiInstanceTaskConverter),
    DsfSequentialMultiInstanceTask: _with_binding(MultiInstanceTaskConverter),
    CollectionExpression: BpmnDataSpecificationConverter,
    DsfMessageEventDefinition: EventDefinitionConverter,
    DsfSignalEventDefinition: EventDefinitionConverter,
    DsfErrorEventDefinition: _ErrorConverter,
    DsfTimerEventDefinition: _TimerConverter,
    DsfCycleTimerEventDefinition: _TimerConverter,
}


def create_serializer() -> Any:
    """A ``BpmnWorkflowSerializer`` that knows every DSF class."""
    return BpmnWorkflowSerializer(BpmnWorkflowSerializer.configure(DSF_SERIALIZER_CONFIG))
