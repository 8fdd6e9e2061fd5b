"""Typed access to Task inputs and outputs (the Java DSF's ``TaskHelper``), on Task JSON.

Tasks stay plain FHIR JSON dicts in the plugin API: what the mailbox stores is what an
activity reads and writes. These functions find inputs by the ``system|code`` of their
type, add outputs, and build the logical references DSF uses everywhere.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from dsf_core.fhir.codes import BPMN_MESSAGE, ORGANIZATION_IDENTIFIER

__all__ = [
    "BPMN_MESSAGE",
    "ORGANIZATION_IDENTIFIER",
    "add_output",
    "error_output",
    "first_input",
    "identifier_value",
    "input_parameters",
    "input_string",
    "input_strings",
    "message_input",
    "organization_reference",
    "parameter",
    "requester_identifier",
]

_VALUE_PREFIX = "value"


def _has_type(parameter: Mapping[str, Any], system: str, code: str) -> bool:
    codings = parameter.get("type", {}).get("coding", [])
    return any(c.get("system") == system and c.get("code") == code for c in codings)


def _value(parameter: Mapping[str, Any]) -> Any:
    return next((v for k, v in parameter.items() if k.startswith(_VALUE_PREFIX)), None)


def input_parameters(task: Mapping[str, Any], system: str, code: str) -> Iterator[Mapping[str, Any]]:
    """Every input of ``task`` typed ``system|code``."""
    return (p for p in task.get("input", []) if _has_type(p, system, code))


def first_input(task: Mapping[str, Any], system: str, code: str) -> Any:
    """The value (``valueString``, ``valueReference``, …) of the first input typed ``system|code``, or ``None``."""
    return next((_value(p) for p in input_parameters(task, system, code)), None)


def input_string(task: Mapping[str, Any], system: str, code: str) -> str | None:
    value = first_input(task, system, code)
    return value if isinstance(value, str) else None


def input_strings(task: Mapping[str, Any], system: str, code: str) -> list[str]:
    return [v for v in (_value(p) for p in input_parameters(task, system, code)) if isinstance(v, str)]


def message_input(task: Mapping[str, Any], code: str) -> str | None:
    """``message-name``, ``business-key`` or ``correlation-key`` (CodeSystem bpmn-message)."""
    return input_string(task, BPMN_MESSAGE, code)


def parameter(system: str, code: str, value_type: str, value: Any, *, extension: list[Any] | None = None) -> dict[str, Any]:
    """An input/output parameter: ``parameter(SYS, "x", "String", "v")`` → ``{"type": …, "valueString": "v"}``."""
    result: dict[str, Any] = {"type": {"coding": [{"system": system, "code": code}]}, f"value{value_type}": value}
    if extension:
        result["extension"] = extension
    return result


def add_output(
    task: dict[str, Any], system: str, code: str, value_type: str, value: Any, *, extension: list[Any] | None = None
) -> dict[str, Any]:
    """Append an output to ``task`` (in memory; the engine writes the Task) and return it."""
    output = parameter(system, code, value_type, value, extension=extension)
    task.setdefault("output", []).append(output)
    return output


def error_output(message: str) -> dict[str, Any]:
    """The ``bpmn-message#error`` output the engine adds to a failed Task."""
    return parameter(BPMN_MESSAGE, "error", "String", message)


def organization_reference(identifier: str) -> dict[str, Any]:
    """A logical Organization reference by DSF organisation identifier."""
    return {"type": "Organization", "identifier": {"system": ORGANIZATION_IDENTIFIER, "value": identifier}}


def identifier_value(resource: Mapping[str, Any], system: str) -> str | None:
    """The value of ``resource``'s first identifier with ``system`` (e.g. an Organization's DSF identifier)."""
    for identifier in resource.get("identifier", []):
        if identifier.get("system") == system and isinstance(identifier.get("value"), str):
            return str(identifier["value"])
    return None


def requester_identifier(task: Mapping[str, Any]) -> str | None:
    """The organisation (or practitioner) identifier value of ``task.requester``."""
    value = task.get("requester", {}).get("identifier", {}).get("value")
    return value if isinstance(value, str) else None
