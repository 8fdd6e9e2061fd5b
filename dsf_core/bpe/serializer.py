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

import json
from copy import copy
from typing import Any
from uuid import UUID

import orjson

from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer  # type: ignore[import-untyped]
from SpiffWorkflow.bpmn.serializer.config import DEFAULT_CONFIG  # type: ignore[import-untyped]
from SpiffWorkflow.bpmn.serializer.default.event_definition import (  # type: ignore[import-untyped]
    ErrorEscalationEventDefinitionConverter,
    TimerConditionalEventDefinitionConverter,
)
from SpiffWorkflow.bpmn.serializer.default.workflow import (  # type: ignore[import-untyped]
    BpmnWorkflowConverter,
    WorkflowConverter,
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

from SpiffWorkflow.bpmn.workflow import BpmnWorkflow  # type: ignore[import-untyped]

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


class _SpecFreeWorkflowConverter(BpmnWorkflowConverter):  # type: ignore[misc]
    """Serializes a workflow without its specs: the engine stores each spec once per process version."""

    def to_dict(self, workflow: Any) -> dict[str, Any]:
        dct: dict[str, Any] = WorkflowConverter.to_dict(self, workflow)
        dct["subprocesses"] = self.mapping_to_dict(workflow.subprocesses)
        dct["bpmn_events"] = self.registry.convert(workflow.bpmn_events)
        return dct

    def from_dict(self, dct: dict[str, Any], spec: Any = None, subprocess_specs: Any = None) -> Any:
        if spec is None:
            return super().from_dict(dct)
        workflow = self.target_class(spec, subprocess_specs or {}, deserializing=True)
        workflow.tasks = self.mapping_from_dict(dct["tasks"], UUID, workflow=workflow)
        workflow.task_tree = workflow.tasks.get(UUID(dct["root"]))
        self.set_default_attributes(workflow, dct)
        self.subprocesses_from_dict(dct["subprocesses"], workflow)
        workflow.bpmn_events = self.registry.restore(dct.pop("bpmn_events", []))
        return workflow


class InstanceSerializer:
    """Instance state without specs (``state_*``) and specs on their own (``spec_*``).

    A restored instance shares the spec objects it is given; specs are immutable, so one
    deserialized spec per process version serves every instance.
    """

    def __init__(self) -> None:
        config = dict(DSF_SERIALIZER_CONFIG)
        config[BpmnWorkflow] = _SpecFreeWorkflowConverter
        self._serializer = BpmnWorkflowSerializer(BpmnWorkflowSerializer.configure(config))
        self._full = create_serializer()
        self._default = self._serializer._encoder_cls().default

    def state_to_json(self, workflow: Any) -> str:
        registry = self._serializer.registry
        registry._encoder_mode = True
        try:
            dct = self._serializer.to_dict(workflow)
            dct[self._serializer.VERSION_KEY] = self._serializer.VERSION
            # orjson is ~10x faster than json on large states (a fan-out to 30 targets: 480 KB);
            # SpiffWorkflow's encoder still converts what JSON lacks (datetimes, timedeltas, its
            # own objects). UUIDs orjson writes as plain strings; SpiffWorkflow keeps task ids
            # as strings already and process variables must be JSON values.
            return orjson.dumps(dct, default=self._default, option=orjson.OPT_PASSTHROUGH_DATETIME).decode()
        finally:
            registry._encoder_mode = False

    def state_from_json(self, text: str | bytes, spec: Any, subprocess_specs: Any) -> Any:
        dct = json.loads(text, cls=self._serializer.json_decoder_cls)
        self._serializer.migrate(dct)
        return self._serializer.from_dict(dct, spec=spec, subprocess_specs=subprocess_specs)

    def specs_to_json(self, spec: Any, subprocess_specs: Any) -> str:
        registry = self._full.registry
        dct = {
            "spec": registry.convert(spec),
            "subprocess_specs": {name: registry.convert(s) for name, s in subprocess_specs.items()},
        }
        return json.dumps(dct, separators=(",", ":"))

    def specs_from_json(self, text: str | bytes) -> tuple[Any, dict[str, Any]]:
        dct = json.loads(text)
        registry = self._full.registry
        spec = registry.restore(dct["spec"])
        return spec, {name: registry.restore(s) for name, s in dct["subprocess_specs"].items()}
