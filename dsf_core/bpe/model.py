"""A loaded BPMN process and the error a model that cannot be loaded raises.

:class:`ProcessModel` is what :func:`dsf_core.bpe.parser.load_bpmn` returns for one file:
the SpiffWorkflow specs (``spec`` plus ``subprocess_specs`` for embedded sub-processes,
both needed by ``BpmnWorkflow``) and the facts deployment and dispatch need without
walking the specs — the process id and version, and the message and signal names that
start it.

:class:`ModelError` is the one error of loading. It always names the file, and the element
id and line when the problem is in one element, so a plugin author can find it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ModelError", "ProcessModel"]


class ModelError(Exception):
    """A BPMN file cannot be deployed: malformed, outside the DSF subset, or inconsistent."""

    def __init__(self, file: str, reason: str, *, element_id: str | None = None, line: int | None = None) -> None:
        where = file
        if element_id:
            where += f": element {element_id!r}"
        if line:
            where += f" (line {line})"
        super().__init__(f"{where}: {reason}")
        self.file = file
        self.reason = reason
        self.element_id = element_id
        self.line = line


@dataclass(frozen=True, eq=False)
class ProcessModel:
    """One deployable process: ``process_id`` (``<org>_<name>``), ``version`` (versionTag)."""

    process_id: str
    version: str
    name: str | None
    file: str
    spec: Any  # SpiffWorkflow BpmnProcessSpec
    subprocess_specs: Mapping[str, Any]
    start_messages: tuple[str, ...]
    start_signals: tuple[str, ...] = ()
    extensions: Mapping[str, str] = field(default_factory=dict)

    def elements(self) -> Iterator[Any]:
        """Every task spec drawn in the model (process and embedded sub-processes)."""
        for spec in (self.spec, *self.subprocess_specs.values()):
            for task_spec in spec.task_specs.values():
                if getattr(task_spec, "bpmn_id", None) is not None:
                    yield task_spec

    def element(self, bpmn_id: str) -> Any:
        """The task spec of element ``bpmn_id``.

        A multi-instance activity is two specs with this id: the multi-instance task (named
        ``bpmn_id``, returned here) and the per-instance spec it names in ``task_spec``.
        """
        found = [s for s in self.elements() if s.bpmn_id == bpmn_id]
        if not found:
            raise KeyError(bpmn_id)
        return next((s for s in found if s.name == bpmn_id), found[0])

    def class_names(self) -> frozenset[str]:
        """Every ``camunda:class`` the model binds (activities and listeners)."""
        names: set[str] = set()
        for spec in self.elements():
            binding = getattr(spec, "binding", None)
            if binding is None:
                continue
            if binding.class_name:
                names.add(binding.class_name)
            names.update(x.class_name for x in binding.execution_listeners)
            names.update(x.class_name for x in binding.task_listeners)
        return frozenset(names)
