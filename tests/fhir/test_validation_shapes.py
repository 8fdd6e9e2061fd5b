"""Task validation by shape: new UUIDs and timestamps need no model, invalid values never pass."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from dsf_core.errors import InvalidRequest
from dsf_core.fhir import validation
from dsf_core.fhir.validation import validate_structure
from tests.fhir.test_validation_incremental import task

BPMN = "http://dsf.dev/fhir/CodeSystem/bpmn-message"


def _input(code: str, **value: Any) -> dict[str, Any]:
    return {"type": {"coding": [{"system": BPMN, "code": code}]}, **value}


def ping(**changes: Any) -> dict[str, Any]:
    """A Task as a Java DSF ping process sends it: fresh business and correlation keys each time."""
    inputs = [
        _input("message-name", valueString="ping"),
        _input("business-key", valueString=str(uuid.uuid4())),
        _input("correlation-key", valueString=str(uuid.uuid4())),
    ]
    return task(authoredOn="2026-11-23T10:00:00.123Z", input=inputs) | changes


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    validation._VALID_ELEMENTS.clear()


@pytest.fixture
def models_built(monkeypatch: pytest.MonkeyPatch) -> list[set[str]]:
    seen: list[set[str]] = []
    original = validation._validate

    def spy(model: Any, resource: dict[str, Any], resource_type: str) -> None:
        seen.append(set(resource) - {"resourceType"})
        original(model, resource, resource_type)

    monkeypatch.setattr(validation, "_validate", spy)
    return seen


def test_new_keys_and_timestamps_build_no_model(models_built: list[set[str]]) -> None:
    validate_structure(ping())
    assert len(models_built) == 1
    validate_structure(ping(authoredOn="2026-11-24T11:12:13+01:00"))
    validate_structure(ping(authoredOn="2027-01-02"))
    assert len(models_built) == 1


def test_a_changed_code_or_structure_is_validated(models_built: list[set[str]]) -> None:
    validate_structure(ping())
    validate_structure(ping(status="in-progress"))
    assert models_built[-1] == {"status", "intent"}
    task = ping()
    task["input"].append(_input("extra", valueBoolean=True))
    validate_structure(task)
    assert models_built[-1] == {"input", "status", "intent"}


@pytest.mark.parametrize(
    "value",
    ["", "\x0b", 5, True, None, [], ["x"], {"value": "x"}],
    ids=["empty", "vertical-tab", "int", "bool", "null", "empty-list", "list", "object"],
)
def test_an_invalid_string_is_caught_after_a_valid_one(value: Any) -> None:
    validate_structure(ping())
    task = ping()
    task["input"][1]["valueString"] = value  # null: the input lacks its required value[x]
    with pytest.raises(InvalidRequest, match="input"):
        validate_structure(task)


@pytest.mark.parametrize("value", ["2026-02-30T10:00:00Z", "yesterday", "2026-11-23T10:00", [], ["2026-11-23"], {}])
def test_an_invalid_date_is_caught_after_a_valid_one(value: Any) -> None:
    validate_structure(ping())
    with pytest.raises(InvalidRequest, match="authoredOn"):
        validate_structure(ping(authoredOn=value))


def test_two_values_for_one_choice_element_are_caught_after_one() -> None:
    validate_structure(ping())
    task = ping()
    task["input"][1]["valueCode"] = "x"
    with pytest.raises(InvalidRequest, match="input"):
        validate_structure(task)


def test_models_with_their_own_validators_are_kept_literally(models_built: list[set[str]]) -> None:
    task = ping(authoredOn=None, _authoredOn={"extension": [{"url": "http://x.test/absent", "valueCode": "unknown"}]})
    validate_structure(task)
    with pytest.raises(InvalidRequest):
        validate_structure(ping(authoredOn=None, _authoredOn={}))
    assert validation._field_shapers(validation._model("FHIRPrimitiveExtension")) is None


def test_a_valid_shape_does_not_vouch_for_a_different_structure() -> None:
    validate_structure(ping())
    task = ping()
    task["input"][0]["valueString"] = {"nested": []}  # the literal of a stand-in must not look like one
    with pytest.raises(InvalidRequest):
        validate_structure(task)
