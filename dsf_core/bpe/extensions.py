"""Reading Camunda extension attributes and elements of one BPMN element into a Binding.

Only reading happens here; whether an extension is allowed at all was decided before by
:mod:`dsf_core.bpe.subset`, so these functions may assume well-formed input (a field has
a name, a listener has a class).
"""

from __future__ import annotations

from typing import Any, Final

from dsf_core.bpe.bindings import Binding, FieldInjection, Listener, Parameter

__all__ = ["BPMN_NS", "CAMUNDA_NS", "bpmn", "camunda", "read_binding", "read_fields"]

BPMN_NS: Final = "http://www.omg.org/spec/BPMN/20100524/MODEL"
CAMUNDA_NS: Final = "http://camunda.org/schema/1.0/bpmn"

Element = Any  # lxml.etree._Element (lxml ships no stubs we use)


def bpmn(local: str) -> str:
    return f"{{{BPMN_NS}}}{local}"


def camunda(local: str) -> str:
    return f"{{{CAMUNDA_NS}}}{local}"


def extension_children(node: Element, local: str) -> list[Element]:
    """The ``camunda:<local>`` children of ``node``'s ``bpmn:extensionElements``."""
    found: list[Element] = []
    for ext in node.findall(bpmn("extensionElements")):
        found.extend(ext.findall(camunda(local)))
    return found


def _flag(node: Element, name: str, default: bool = False) -> bool:
    value = node.get(camunda(name))
    return default if value is None else value.strip().lower() == "true"


def read_field(node: Element) -> FieldInjection:
    """A ``camunda:field``; a string is kept exactly, an expression without surrounding
    whitespace (which would otherwise turn ``${n}`` into the text ``" 3 "``)."""
    name = node.get("name", "")
    if node.get("stringValue") is not None:
        return FieldInjection(name, node.get("stringValue"))
    if node.get("expression") is not None:
        return FieldInjection(name, node.get("expression").strip(), is_expression=True)
    string = node.find(camunda("string"))
    if string is not None:
        return FieldInjection(name, string.text or "")
    expression = node.findtext(camunda("expression")) or ""
    return FieldInjection(name, expression.strip(), is_expression=True)


def read_fields(node: Element) -> tuple[FieldInjection, ...]:
    """``camunda:field`` injections under ``node``'s extension elements (in model order)."""
    return tuple(read_field(f) for f in extension_children(node, "field"))


def _listener(node: Element) -> Listener:
    fields = tuple(read_field(f) for f in node.findall(camunda("field")))
    return Listener(node.get("event", ""), node.get("class", ""), fields)


def _parameters(node: Element, local: str) -> tuple[Parameter, ...]:
    params: list[Parameter] = []
    for io in extension_children(node, "inputOutput"):
        for p in io.findall(camunda(local)):
            text = p.text
            params.append(Parameter(p.get("name", ""), text if text is not None and text != "" else None))
    return tuple(params)


def read_retry_cycle(node: Element) -> str | None:
    """``camunda:failedJobRetryTimeCycle`` (e.g. ``R3/PT5S``), if drawn."""
    for cycle in extension_children(node, "failedJobRetryTimeCycle"):
        return (cycle.text or "").strip() or None
    return None


def read_binding(node: Element, *, activity: Element | None = None) -> Binding:
    """The binding of ``node``; ``activity`` is where ``camunda:class`` and its fields are
    drawn when that is not the node itself (the message event definition of a throw or
    end event)."""
    source = node if activity is None else activity
    return Binding(
        class_name=source.get(camunda("class")),
        fields=read_fields(source),
        execution_listeners=tuple(_listener(x) for x in extension_children(node, "executionListener")),
        task_listeners=tuple(_listener(x) for x in extension_children(node, "taskListener")),
        inputs=_parameters(node, "inputParameter"),
        outputs=_parameters(node, "outputParameter"),
        # camunda:async is the pre-7.3 spelling of asyncBefore.
        async_before=_flag(node, "asyncBefore") or _flag(node, "async"),
        async_after=_flag(node, "asyncAfter"),
        exclusive=_flag(node, "exclusive", default=True),
        retry_cycle=read_retry_cycle(node),
    )


def read_properties(node: Element) -> dict[str, str]:
    """``camunda:properties`` of ``node`` as a dict (SpiffWorkflow calls them extensions)."""
    props: dict[str, str] = {}
    for container in extension_children(node, "properties"):
        for prop in container.findall(camunda("property")):
            props[prop.get("name", "")] = prop.get("value", "")
    return props
