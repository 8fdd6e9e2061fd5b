"""Task validation element by element: unchanged elements are not validated twice, nothing invalid passes."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from dsf_core.errors import InvalidRequest
from dsf_core.fhir import validation
from dsf_core.fhir.validation import validate_structure


def task(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "resourceType": "Task",
        "meta": {"profile": ["http://dsf.dev/fhir/StructureDefinition/task-start-ping|1.0"]},
        "instantiatesCanonical": "http://dsf.dev/bpe/Process/ping|1.0",
        "status": "requested",
        "intent": "order",
        "authoredOn": "2026-11-23T10:00:00Z",
        "requester": {"type": "Organization", "identifier": {"system": "http://dsf.dev/sid/organization-identifier", "value": "a.test"}},
        "input": [{"type": {"coding": [{"system": "http://dsf.dev/fhir/CodeSystem/bpmn-message", "code": "message-name"}]},
                   "valueString": "startPing"}],
    }
    base.update(changes)
    return base


def test_a_changed_element_is_validated_even_when_the_rest_is_known() -> None:
    validate_structure(task())
    bad_output = [{"type": {"coding": [{"code": "x"}]}, "valueString": "a", "valueBoolean": True}]
    with pytest.raises(InvalidRequest, match="output"):
        validate_structure(task(status="completed", output=bad_output))
    with pytest.raises(InvalidRequest, match="authoredOn"):
        validate_structure(task(authoredOn="yesterday"))
    with pytest.raises(InvalidRequest):
        validate_structure(task(unknownElement=1))


def test_required_elements_are_checked_every_time() -> None:
    validate_structure(task())
    missing = task()
    del missing["status"]
    with pytest.raises(InvalidRequest, match="status"):
        validate_structure(missing)


def test_known_elements_are_not_validated_again(monkeypatch: pytest.MonkeyPatch) -> None:
    validation._VALID_ELEMENTS.clear()
    first = task(authoredOn="2026-11-23T10:00:01Z")
    validate_structure(first)
    seen: list[set[str]] = []
    original = validation._validate

    def spy(model: Any, resource: dict[str, Any], resource_type: str) -> None:
        seen.append(set(resource) - {"resourceType"})
        original(model, resource, resource_type)

    monkeypatch.setattr(validation, "_validate", spy)
    updated = copy.deepcopy(first)
    updated["status"] = "in-progress"
    validate_structure(updated)
    assert seen == [{"status", "intent"}]
    validate_structure(copy.deepcopy(updated))
    assert len(seen) == 1  # everything known: no model built at all
