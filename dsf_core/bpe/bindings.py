"""What a BPMN element binds to, as read from its Camunda extensions.

SpiffWorkflow's Camunda parser drops ``camunda:class``, ``camunda:field``, listeners,
input/output parameters and the async/retry flags (reference/python-stack.md §1.1).
The DSF parser reads them into one frozen :class:`Binding` per element, which every DSF
task spec carries as ``spec.binding``; the engine executes it, this package only keeps
it faithfully and serializes it with the spec.

* ``class_name`` — ``camunda:class`` of a service task, a send task, or the message
  event definition of a throw/end event: the activity the engine runs;
* ``fields`` — ``camunda:field`` injections; a ``camunda:string`` (or ``stringValue``) is
  a fixed text even when it contains ``${``, a ``camunda:expression`` (or ``expression``)
  is evaluated on every run — Camunda's distinction;
* ``execution_listeners`` (``start``/``end``) and ``task_listeners`` (user tasks:
  ``create`` and ``complete``; a DSF user task is answered through a QuestionnaireResponse, so
  Camunda's ``assignment``, ``delete`` and ``update`` never happen and are refused at deployment), each a class with
  its own fields;
* ``inputs``/``outputs`` — ``camunda:inputOutput`` parameters with a text value;
* ``async_before``/``async_after``/``exclusive``/``retry_cycle`` — Camunda job flags:
  the engine persists at those points and retries with the ``failedJobRetryTimeCycle``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dsf_core.bpe.expressions import compile_expression

__all__ = ["Binding", "FieldInjection", "Listener", "Parameter"]


@dataclass(frozen=True, slots=True)
class FieldInjection:
    """One ``camunda:field``: a fixed string or an expression evaluated at each run."""

    name: str
    value: str
    is_expression: bool = False

    def resolve(self, variables: Mapping[str, Any]) -> Any:
        if self.is_expression:
            return compile_expression(self.value).evaluate(variables)
        return self.value

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "is_expression": self.is_expression}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FieldInjection:
        return cls(data["name"], data["value"], bool(data["is_expression"]))


@dataclass(frozen=True, slots=True)
class Listener:
    """A ``camunda:executionListener`` or ``camunda:taskListener`` given by class."""

    event: str
    class_name: str
    fields: tuple[FieldInjection, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"event": self.event, "class_name": self.class_name, "fields": [f.to_dict() for f in self.fields]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Listener:
        return cls(data["event"], data["class_name"], tuple(FieldInjection.from_dict(f) for f in data["fields"]))


@dataclass(frozen=True, slots=True)
class Parameter:
    """A ``camunda:inputParameter``/``outputParameter``; ``None`` text means ``null``."""

    name: str
    value: str | None

    def evaluate(self, variables: Mapping[str, Any]) -> Any:
        if self.value is None:
            return None
        return compile_expression(self.value).evaluate(variables)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Parameter:
        return cls(data["name"], data["value"])


@dataclass(frozen=True, slots=True)
class Binding:
    """Everything of one element the engine must execute besides the BPMN semantics."""

    class_name: str | None = None
    fields: tuple[FieldInjection, ...] = ()
    execution_listeners: tuple[Listener, ...] = ()
    task_listeners: tuple[Listener, ...] = ()
    inputs: tuple[Parameter, ...] = ()
    outputs: tuple[Parameter, ...] = ()
    async_before: bool = False
    async_after: bool = False
    exclusive: bool = True
    retry_cycle: str | None = None

    def get_field(self, name: str) -> FieldInjection | None:
        return next((f for f in self.fields if f.name == name), None)

    def field_values(self, variables: Mapping[str, Any]) -> dict[str, Any]:
        """Field name → value, expressions evaluated against ``variables``."""
        return {f.name: f.resolve(variables) for f in self.fields}

    def listeners(self, event: str) -> tuple[Listener, ...]:
        return tuple(listener for listener in self.execution_listeners if listener.event == event)

    @property
    def is_empty(self) -> bool:
        return self == _EMPTY

    def to_dict(self) -> dict[str, Any]:
        return {
            "class_name": self.class_name,
            "fields": [f.to_dict() for f in self.fields],
            "execution_listeners": [x.to_dict() for x in self.execution_listeners],
            "task_listeners": [x.to_dict() for x in self.task_listeners],
            "inputs": [p.to_dict() for p in self.inputs],
            "outputs": [p.to_dict() for p in self.outputs],
            "async_before": self.async_before,
            "async_after": self.async_after,
            "exclusive": self.exclusive,
            "retry_cycle": self.retry_cycle,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Binding:
        if not data:
            return _EMPTY
        return cls(
            class_name=data["class_name"],
            fields=tuple(FieldInjection.from_dict(f) for f in data["fields"]),
            execution_listeners=tuple(Listener.from_dict(x) for x in data["execution_listeners"]),
            task_listeners=tuple(Listener.from_dict(x) for x in data["task_listeners"]),
            inputs=tuple(Parameter.from_dict(p) for p in data["inputs"]),
            outputs=tuple(Parameter.from_dict(p) for p in data["outputs"]),
            async_before=bool(data["async_before"]),
            async_after=bool(data["async_after"]),
            exclusive=bool(data["exclusive"]),
            retry_cycle=data["retry_cycle"],
        )


_EMPTY = Binding()
