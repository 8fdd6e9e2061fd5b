"""Tests of the FHIR XML <-> JSON converter (dsf_core.fhir.xml).

Real files only: the Java DSF 2.1.0 conformance resources and examples and the ping/pong
plugin's FHIR resources from ``../shared/reference`` (a sibling of the repository root),
plus hand-written DSF-shaped resources.  fhir.resources (R4B) is the oracle: every parsed
dict must validate with it and match what its own XML reader produces.

Known differences from fhir.resources, compared semantically in ``_assert_equivalent``:

* fhir.resources drops the XML ``id`` attribute of elements and primitives (e.g. every
  ``ElementDefinition.id`` in a StructureDefinition); we keep it, as FHIR requires;
* fhir.resources turns XML comments into ``fhir_comments`` (leaving ``_x: {}`` behind);
  we drop comments;
* fhir.resources leaves unused namespace declarations of the envelope (``xmlns:xsi``) in
  the Narrative ``div`` string; we remove them;
* fhir.resources normalises dateTime/instant (``.000+00:00`` -> ``Z``) and reads decimals
  as float; we keep the lexical text and read decimals as ``decimal.Decimal``.
"""

from __future__ import annotations

import copy
import datetime
import decimal
import json
import random
from pathlib import Path
from typing import Any

import orjson
import pytest
from fhir.resources.R4B import get_fhir_model_class
from lxml import etree

from dsf_core.fhir.xml import FhirXmlError, json_default, parse_xml, to_xml

REPO_ROOT = Path(__file__).resolve().parents[2]
REFERENCE = REPO_ROOT.parent / "shared" / "reference"
FHIR = "{http://hl7.org/fhir}"

needs_reference = pytest.mark.skipif(
    not REFERENCE.is_dir(), reason=f"reference files not found at {REFERENCE}"
)


def _reference_xml_files() -> list[Path]:
    if not REFERENCE.is_dir():
        return []
    files = sorted((REFERENCE / "dsf-2.1.0-conformance").rglob("*.xml"))
    files += [
        REFERENCE / "dsf-2.1.0-examples" / "3dic-ttp-allow-list-bundle.xml",
        REFERENCE / "dsf-2.1.0-examples" / "initial-bundle-template.xml",
    ]
    files += sorted((REFERENCE / "dsf-ping-pong-1.0.1.0" / "fhir").rglob("*.xml"))
    return files  # rglob("*.xml") never matches the "*.xml.ignore" files


REFERENCE_XML = _reference_xml_files()


def _ref_id(path: Path) -> str:
    return str(path.relative_to(REFERENCE))


def _substitute(data: bytes) -> bytes:
    """Fill the ping/pong plugin's deployment placeholders that sit in typed fields."""
    return data.replace(b"#{version}", b"1.0").replace(b"#{date}", b"2024-01-01")


def _fhir_json(model: Any) -> dict[str, Any]:
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


# --------------------------------------------------------------------------------------
# Semantic comparison with fhir.resources
# --------------------------------------------------------------------------------------


def _drop_comments(value: Any) -> Any:
    """fhir.resources' XML comments -> nothing (and the ``_x: {}`` they leave)."""
    if isinstance(value, dict):
        cleaned = {k: _drop_comments(v) for k, v in value.items() if k != "fhir_comments"}
        return {k: v for k, v in cleaned.items() if v != {}}
    if isinstance(value, list):
        return [_drop_comments(v) for v in value]
    return value


def _drop_element_ids(value: Any) -> Any:
    """Our dict without element ``id`` attributes, which fhir.resources does not read."""
    if isinstance(value, dict):
        is_resource = "resourceType" in value
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key == "id" and not is_resource:
                continue
            item = _drop_element_ids(item)
            if key.startswith("_") and isinstance(item, list):
                item = [None if x == {} else x for x in item]
                if all(x is None for x in item):
                    continue
            if item == {}:
                continue
            out[key] = item
        return out
    if isinstance(value, list):
        return [_drop_element_ids(v) for v in value]
    return value


def _canonical_xhtml(div: str) -> bytes:
    element = etree.fromstring(div.encode())
    etree.cleanup_namespaces(element)
    return etree.tostring(element, method="c14n")


def _as_datetime(text: str) -> datetime.datetime | None:
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _assert_equivalent(ours: Any, theirs: Any, path: str = "") -> None:
    if isinstance(ours, dict):
        assert isinstance(theirs, dict), path
        assert set(ours) == set(theirs), f"{path}: {sorted(set(ours) ^ set(theirs))}"
        for key in ours:
            _assert_equivalent(ours[key], theirs[key], f"{path}.{key}")
    elif isinstance(ours, list):
        assert isinstance(theirs, list) and len(ours) == len(theirs), path
        for i, (a, b) in enumerate(zip(ours, theirs)):
            _assert_equivalent(a, b, f"{path}[{i}]")
    elif isinstance(ours, decimal.Decimal):
        assert isinstance(theirs, (int, float)) and not isinstance(theirs, bool), path
        assert ours == decimal.Decimal(repr(theirs)), path
    elif path.endswith(".div"):
        assert _canonical_xhtml(ours) == _canonical_xhtml(theirs), path
    elif isinstance(ours, str) and isinstance(theirs, str) and ours != theirs:
        # fhir.resources rewrites dateTime/instant values; compare the instants.
        ours_dt, theirs_dt = _as_datetime(ours), _as_datetime(theirs)
        assert ours_dt is not None and ours_dt == theirs_dt, f"{path}: {ours!r} != {theirs!r}"
    else:
        assert type(ours) is type(theirs) and ours == theirs, f"{path}: {ours!r} != {theirs!r}"


# --------------------------------------------------------------------------------------
# Reference files
# --------------------------------------------------------------------------------------


@needs_reference
def test_reference_set_is_complete() -> None:
    names = {p.name for p in REFERENCE_XML}
    assert "dsf-task-2.1.0.xml" in names and "dsf-task-2.0.0.xml.ignore" not in names
    assert "3dic-ttp-allow-list-bundle.xml" in names
    assert "dsf-task-start-ping.xml" in names
    assert len(REFERENCE_XML) > 80


@needs_reference
@pytest.mark.parametrize("path", REFERENCE_XML, ids=_ref_id)
def test_reference_file_matches_fhir_resources(path: Path) -> None:
    data = _substitute(path.read_bytes())
    ours = parse_xml(data)
    model_class = get_fhir_model_class(ours["resourceType"])
    model_class.model_validate(ours)  # raises if the dict is not valid FHIR JSON
    theirs = _drop_comments(_fhir_json(model_class.model_validate_xml(data)))
    _assert_equivalent(_drop_element_ids(ours), theirs)


@needs_reference
@pytest.mark.parametrize("path", REFERENCE_XML, ids=_ref_id)
def test_reference_file_round_trips(path: Path) -> None:
    # Unsubstituted: the converter does not validate date formats, so placeholders pass.
    for data in (path.read_bytes(), _substitute(path.read_bytes())):
        resource = parse_xml(data)
        assert parse_xml(to_xml(resource)) == resource
        assert parse_xml(to_xml(resource, pretty=True)) == resource


@needs_reference
@pytest.mark.parametrize("path", REFERENCE_XML, ids=_ref_id)
def test_reference_file_output_is_read_by_fhir_resources(path: Path) -> None:
    """Our XML means to fhir.resources what the original file means."""
    data = _substitute(path.read_bytes())
    resource = parse_xml(data)
    model_class = get_fhir_model_class(resource["resourceType"])
    original = _drop_comments(_fhir_json(model_class.model_validate_xml(data)))
    ours = _fhir_json(model_class.model_validate_xml(to_xml(resource, pretty=True)))
    # fhir.resources puts the whitespace after </div> into the div string: compare the
    # div as XHTML
    _assert_equivalent(ours, original)


@needs_reference
def test_allow_list_bundle_content() -> None:
    bundle = parse_xml((REFERENCE / "dsf-2.1.0-examples" / "3dic-ttp-allow-list-bundle.xml").read_bytes())
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "transaction"
    organization = bundle["entry"][0]["resource"]
    assert organization["resourceType"] == "Organization"
    assert organization["active"] is True
    assert organization["extension"][0] == {
        "url": "http://dsf.dev/fhir/StructureDefinition/extension-certificate-thumbprint",
        "valueString": "${dev.dsf.fhir.server.organization.thumbprint}",
    }
    assert bundle["entry"][0]["request"] == {
        "method": "PUT",
        "url": "Organization?identifier=http://dsf.dev/sid/organization-identifier|"
        "${dev.dsf.fhir.server.organization.identifier.value}",
    }


@needs_reference
def test_structure_definition_keeps_element_ids() -> None:
    sd = parse_xml((REFERENCE / "dsf-2.1.0-conformance" / "StructureDefinition" / "dsf-task-2.1.0.xml").read_bytes())
    ids = [element["id"] for element in sd["differential"]["element"]]
    assert ids[0].startswith("Task")
    assert all(isinstance(element.get("min", 0), int) for element in sd["differential"]["element"])
    xml = to_xml(sd)
    assert f'<element id="{ids[0]}">'.encode() in xml


@needs_reference
def test_allow_list_json_round_trips() -> None:
    text = (REFERENCE / "dsf-2.1.0-examples" / "allow-list.json").read_text()
    resource = json.loads(text, parse_float=decimal.Decimal)
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    assert parse_xml(to_xml(resource)) == resource
    assert parse_xml(to_xml(resource, pretty=True)) == resource


# --------------------------------------------------------------------------------------
# Hand-written DSF-shaped resources
# --------------------------------------------------------------------------------------

ORG_ID = "http://dsf.dev/sid/organization-identifier"
BPMN_MESSAGE = "http://dsf.dev/fhir/CodeSystem/bpmn-message"

DSF_TASK: dict[str, Any] = {
    "resourceType": "Task",
    "id": "0f3c2a7e-8d1b-4c3a-9b7e-1d2c3b4a5f60",
    "meta": {
        "versionId": "2",
        "lastUpdated": "2024-01-01T10:00:00.000+01:00",
        "profile": ["http://dsf.dev/fhir/StructureDefinition/task-ping|1.0"],
    },
    "identifier": [{"system": "http://dsf.dev/sid/task-identifier", "value": "ping-1"}],
    "instantiatesCanonical": "http://dsf.dev/bpe/Process/pong|1.0",
    "status": "requested",
    "_status": {
        "extension": [{"url": "http://example.org/fhir/StructureDefinition/note", "valueString": "why"}]
    },
    "intent": "order",
    "authoredOn": "2024-01-01T10:00:00+01:00",
    "requester": {"type": "Organization", "identifier": {"system": ORG_ID, "value": "dic1.dsf.test"}},
    "restriction": {
        "recipient": [{"type": "Organization", "identifier": {"system": ORG_ID, "value": "dic2.dsf.test"}}]
    },
    "input": [
        {"type": {"coding": [{"system": BPMN_MESSAGE, "code": "message-name"}]}, "valueString": "pingMessage"},
        {
            "type": {"coding": [{"system": BPMN_MESSAGE, "code": "business-key"}]},
            "valueString": "3e3f9a0c-1b0a-4b83-9a3c-1d6f4b9e2c11",
        },
        {
            "type": {"coding": [{"system": "http://dsf.dev/fhir/CodeSystem/ping", "code": "endpoint"}]},
            "valueReference": {
                "type": "Endpoint",
                "identifier": {"system": "http://dsf.dev/sid/endpoint-identifier", "value": "dic1.dsf.test"},
            },
        },
        {
            "type": {"coding": [{"system": "http://dsf.dev/fhir/CodeSystem/ping", "code": "ping-status"}]},
            "valueCoding": {"system": "http://dsf.dev/fhir/CodeSystem/ping-status", "code": "pending"},
        },
        {"type": {"text": "download-size"}, "valueDecimal": decimal.Decimal("1.50")},
        {"type": {"text": "count"}, "valueInteger": 5},
        {"type": {"text": "flag"}, "valueBoolean": False},
    ],
    "output": [
        {
            "type": {"coding": [{"system": "http://dsf.dev/fhir/CodeSystem/ping", "code": "pong-status"}]},
            "valueCoding": {
                "extension": [
                    {
                        "url": "http://dsf.dev/fhir/StructureDefinition/extension-ping-status",
                        "extension": [
                            {"url": "correlation-key", "valueString": "a1b2"},
                            {"url": "download-speed", "valueQuantity": {"value": decimal.Decimal("12.340"), "unit": "Mbps"}},
                        ],
                    }
                ],
                "system": "http://dsf.dev/fhir/CodeSystem/ping-status",
                "code": "completed",
            },
        }
    ],
}

ORGANIZATION: dict[str, Any] = {
    "resourceType": "Organization",
    "id": "org-1",
    "meta": {"tag": [{"system": "http://dsf.dev/fhir/CodeSystem/read-access-tag", "code": "ALL"}]},
    "extension": [
        {
            "url": "http://dsf.dev/fhir/StructureDefinition/extension-certificate-thumbprint",
            "valueString": "3c24fa1c" + "0" * 120,
        }
    ],
    "identifier": [{"system": ORG_ID, "value": "dic1.dsf.test"}],
    "active": True,
    "name": "DIC 1 \u00e9\u00df\u2713",
    "endpoint": [{"reference": "Endpoint/ep-1"}],
}

ENDPOINT: dict[str, Any] = {
    "resourceType": "Endpoint",
    "id": "ep-1",
    "identifier": [{"system": "http://dsf.dev/sid/endpoint-identifier", "value": "dic1.dsf.test"}],
    "status": "active",
    "connectionType": {"system": "http://terminology.hl7.org/CodeSystem/endpoint-connection-type", "code": "hl7-fhir-rest"},
    "managingOrganization": {"reference": "Organization/org-1"},
    "payloadType": [{"coding": [{"system": "http://hl7.org/fhir/resource-types", "code": "Task"}]}],
    "payloadMimeType": ["application/fhir+json", "application/fhir+xml"],
    "address": "https://dic1.dsf.test/fhir",
}

SEARCHSET: dict[str, Any] = {
    "resourceType": "Bundle",
    "id": "search-1",
    "type": "searchset",
    "total": 2,
    "link": [{"relation": "self", "url": "https://dic1.dsf.test/fhir/Organization?_count=2"}],
    "entry": [
        {
            "fullUrl": "https://dic1.dsf.test/fhir/Organization/org-1",
            "resource": ORGANIZATION,
            "search": {"mode": "match", "score": decimal.Decimal("1.0")},
        },
        {
            "fullUrl": "https://dic1.dsf.test/fhir/Endpoint/ep-1",
            "resource": ENDPOINT,
            "search": {"mode": "include"},
        },
    ],
}

PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "id": "p1",
    "text": {
        "status": "generated",
        "div": '<div xmlns="http://www.w3.org/1999/xhtml"><p>Jane <b>Doe</b> &amp; co &lt;3</p><br/></div>',
    },
    "contained": [{"resourceType": "Organization", "id": "o1", "name": "Contained org"}],
    "active": True,
    "_active": {"id": "active-1"},
    "name": [
        {
            "id": "n1",
            "family": "Doe",
            "given": ["Jane", None, "Ann"],
            "_given": [
                None,
                {"extension": [{"url": "http://example.org/fhir/StructureDefinition/initial", "valueString": "M"}]},
                {"id": "g3"},
            ],
        }
    ],
    "birthDate": "1970-01-01",
    "_birthDate": {
        "extension": [
            {"url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime", "valueDateTime": "1970-01-01T08:30:00+01:00"}
        ]
    },
    "address": [{"line": ["Line \"one\"\nsecond <line> & more", "\ttabbed"]}],
    "multipleBirthInteger": 2,
    "managingOrganization": {"reference": "#o1"},
}

BINARY: dict[str, Any] = {
    "resourceType": "Binary",
    "id": "b1",
    "contentType": "application/pdf",
    "securityContext": {"reference": "Organization/org-1"},
    "data": "JVBERi0xLjQKJcOkw7zDtsOfCjIgMCBvYmoKPDwvTGVuZ3RoIDMgMCBSL0ZpbHRlci9GbGF0ZURlY29kZT4+",
}

TRANSACTION_RESPONSE: dict[str, Any] = {
    "resourceType": "Bundle",
    "type": "transaction-response",
    "entry": [
        {
            "response": {
                "status": "400 Bad Request",
                "outcome": {
                    "resourceType": "OperationOutcome",
                    "issue": [{"severity": "error", "code": "invalid", "diagnostics": "bad <input>"}],
                },
            }
        },
        {"response": {"status": "201 Created", "location": "Task/1/_history/1", "etag": 'W/"1"'}},
    ],
}

PARAMETERS: dict[str, Any] = {
    "resourceType": "Parameters",
    "parameter": [
        {"name": "resource", "resource": {"resourceType": "Task", "status": "draft", "intent": "order"}},
        {"name": "count", "valuePositiveInt": 10},
        {"name": "offset", "valueUnsignedInt": 0},
        {"name": "group", "part": [{"name": "inner", "valueCode": "x"}, {"name": "when", "valueInstant": "2024-01-01T00:00:00.000Z"}]},
    ],
}

OBSERVATION: dict[str, Any] = {
    "resourceType": "Observation",
    "status": "final",
    "code": {"text": "precision"},
    "valueQuantity": {"value": decimal.Decimal("0.0000001"), "unit": "g"},
    "referenceRange": [
        {"low": {"value": decimal.Decimal("-1.500")}, "high": {"value": decimal.Decimal("1E+3")}}
    ],
    "component": [{"code": {"text": "int"}, "valueInteger": -2147483648}],
}

HAND_WRITTEN = {
    "task": DSF_TASK,
    "organization": ORGANIZATION,
    "endpoint": ENDPOINT,
    "searchset": SEARCHSET,
    "patient": PATIENT,
    "binary": BINARY,
    "transaction-response": TRANSACTION_RESPONSE,
    "parameters": PARAMETERS,
    "observation": OBSERVATION,
}


@pytest.mark.parametrize("name", HAND_WRITTEN)
def test_hand_written_resource_is_valid_and_round_trips(name: str) -> None:
    resource = HAND_WRITTEN[name]
    get_fhir_model_class(resource["resourceType"]).model_validate(copy.deepcopy(resource))
    for pretty in (False, True):
        xml = to_xml(resource, pretty=pretty)
        assert xml.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
        assert parse_xml(xml) == resource
        assert parse_xml(xml.decode()) == resource  # str input


@pytest.mark.parametrize("name", HAND_WRITTEN)
def test_hand_written_resource_read_by_fhir_resources(name: str) -> None:
    """fhir.resources reads our XML as the same resource (modulo the ids it drops)."""
    resource = HAND_WRITTEN[name]
    model_class = get_fhir_model_class(resource["resourceType"])
    from_xml = _fhir_json(model_class.model_validate_xml(to_xml(resource)))
    from_json = _fhir_json(model_class.model_validate(_drop_element_ids(copy.deepcopy(resource))))
    assert from_xml == from_json


def test_json_through_orjson_round_trips() -> None:
    """Decimals survive orjson via json_default; orjson.loads gives floats, also accepted."""
    text = orjson.dumps(DSF_TASK, default=json_default)
    assert b'"valueDecimal":1.50' in text and b'"value":12.340' in text
    assert json.loads(text, parse_float=decimal.Decimal) == DSF_TASK
    as_floats = orjson.loads(text)
    xml = to_xml(as_floats)
    assert b'<valueDecimal value="1.5"/>' in xml
    assert parse_xml(xml)["input"][4]["valueDecimal"] == decimal.Decimal("1.5")


def test_patient_xml_shape() -> None:
    xml = to_xml(PATIENT)
    root = etree.fromstring(xml)
    assert root.tag == FHIR + "Patient"
    assert root.find(FHIR + "id").get("value") == "p1"  # Resource.id is an element
    name = root.find(FHIR + "name")
    assert name.get("id") == "n1"  # Element.id is an attribute
    given = name.findall(FHIR + "given")
    assert [g.get("value") for g in given] == ["Jane", None, "Ann"]
    assert given[1][0].tag == FHIR + "extension"
    assert given[1][0].get("url") == "http://example.org/fhir/StructureDefinition/initial"
    assert given[2].get("id") == "g3"
    assert root.find(FHIR + "active").attrib == {"id": "active-1", "value": "true"}
    div = root.find(FHIR + "text").find("{http://www.w3.org/1999/xhtml}div")
    assert div is not None and div.find("{http://www.w3.org/1999/xhtml}p").text == "Jane "
    contained = root.find(FHIR + "contained")
    assert [child.tag for child in contained] == [FHIR + "Organization"]
    lines = root.find(FHIR + "address").findall(FHIR + "line")
    assert [line.get("value") for line in lines] == PATIENT["address"][0]["line"]


def test_nested_resource_wrappers() -> None:
    root = etree.fromstring(to_xml(TRANSACTION_RESPONSE))
    outcome = root.find(f"{FHIR}entry/{FHIR}response/{FHIR}outcome")
    assert [child.tag for child in outcome] == [FHIR + "OperationOutcome"]
    root = etree.fromstring(to_xml(PARAMETERS))
    wrapper = root.find(f"{FHIR}parameter/{FHIR}resource")
    assert [child.tag for child in wrapper] == [FHIR + "Task"]
    root = etree.fromstring(to_xml(SEARCHSET))
    assert [child.tag for child in root.find(f"{FHIR}entry/{FHIR}resource")] == [FHIR + "Organization"]


def test_div_without_namespace_and_with_foreign_declarations() -> None:
    lenient = {"resourceType": "Patient", "text": {"status": "generated", "div": "<div><p>x</p></div>"}}
    parsed = parse_xml(to_xml(lenient))
    assert parsed["text"]["div"] == '<div xmlns="http://www.w3.org/1999/xhtml"><p>x</p></div>'
    xml = (
        b'<Patient xmlns="http://hl7.org/fhir" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
        b' xsi:schemaLocation="http://hl7.org/fhir patient.xsd"><text><status value="generated"/>'
        b'<div xmlns="http://www.w3.org/1999/xhtml">\n  <p>a</p>\n</div></text></Patient>'
    )
    assert parse_xml(xml)["text"]["div"] == '<div xmlns="http://www.w3.org/1999/xhtml">\n  <p>a</p>\n</div>'


# --------------------------------------------------------------------------------------
# Element order
# --------------------------------------------------------------------------------------


def _shuffled(value: Any, rng: random.Random) -> Any:
    if isinstance(value, dict):
        items = [(k, _shuffled(v, rng)) for k, v in value.items()]
        rng.shuffle(items)
        return dict(items)
    if isinstance(value, list):
        return [_shuffled(v, rng) for v in value]
    return value


def _local(tag: str) -> str:
    return etree.QName(tag).localname


def test_children_are_written_in_definition_order() -> None:
    sequence = get_fhir_model_class("Task").elements_sequence()
    rng = random.Random(4711)
    for _ in range(20):
        shuffled = _shuffled(DSF_TASK, rng)
        xml = to_xml(shuffled)
        root = etree.fromstring(xml)
        names = [_local(child.tag) for child in root]
        assert names == sorted(names, key=sequence.index)
        assert names[:6] == ["id", "meta", "identifier", "instantiatesCanonical", "status", "intent"]
        # extension comes first inside elements, whatever the JSON key order
        coding = root.find(f"{FHIR}output/{FHIR}valueCoding")
        assert [_local(c.tag) for c in coding] == ["extension", "system", "code"]
        ping_status = coding.find(FHIR + "extension")
        assert [c.get("url") for c in ping_status] == ["correlation-key", "download-speed"]
        assert [_local(c.tag) for c in root.find(f"{FHIR}input")] == ["type", "valueString"]
        assert parse_xml(xml) == DSF_TASK


def test_extension_first_in_backbone_element() -> None:
    task = {
        "resourceType": "Task",
        "status": "draft",
        "intent": "order",
        "input": [
            {
                "valueString": "v",
                "type": {"text": "t"},
                "extension": [{"url": "http://example.org/e", "valueBoolean": True}],
                "id": "i1",
            }
        ],
    }
    element = etree.fromstring(to_xml(task)).find(FHIR + "input")
    assert element.get("id") == "i1"
    assert [_local(c.tag) for c in element] == ["extension", "type", "valueString"]


# --------------------------------------------------------------------------------------
# JSON types
# --------------------------------------------------------------------------------------


def _task_with_input(value_xml: str) -> bytes:
    return (
        '<Task xmlns="http://hl7.org/fhir"><status value="draft"/><intent value="order"/>'
        f"<input><type><text value=\"t\"/></type>{value_xml}</input></Task>"
    ).encode()


def test_primitive_json_types() -> None:
    assert parse_xml(b'<Patient xmlns="http://hl7.org/fhir"><active value="true"/></Patient>')["active"] is True
    assert parse_xml(b'<Patient xmlns="http://hl7.org/fhir"><active value="false"/></Patient>')["active"] is False
    value = parse_xml(_task_with_input('<valueInteger value="5"/>'))["input"][0]["valueInteger"]
    assert value == 5 and type(value) is int
    assert parse_xml(_task_with_input('<valueUnsignedInt value="0"/>'))["input"][0]["valueUnsignedInt"] == 0
    assert parse_xml(_task_with_input('<valuePositiveInt value="7"/>'))["input"][0]["valuePositiveInt"] == 7
    assert parse_xml(_task_with_input('<valueDate value="2024-01"/>'))["input"][0]["valueDate"] == "2024-01"
    assert parse_xml(_task_with_input('<valueInstant value="2024-01-01T00:00:00.000+00:00"/>'))["input"][0][
        "valueInstant"
    ] == "2024-01-01T00:00:00.000+00:00"


@pytest.mark.parametrize("lexical", ["1.50", "0.0000001", "-0.0", "100", "1E+2", "12345678901234567890.123456789"])
def test_decimals_keep_their_digits(lexical: str) -> None:
    parsed = parse_xml(_task_with_input(f'<valueDecimal value="{lexical}"/>'))
    value = parsed["input"][0]["valueDecimal"]
    assert isinstance(value, decimal.Decimal) and value == decimal.Decimal(lexical)
    assert f'<valueDecimal value="{lexical}"/>'.encode() in to_xml(parsed)
    assert orjson.dumps(value, default=json_default) == lexical.encode()


@pytest.mark.parametrize(
    ("value_xml", "message"),
    [
        ('<valueBoolean value="True"/>', "invalid boolean"),
        ('<valueInteger value="5.0"/>', "invalid integer"),
        ('<valueInteger value="2147483648"/>', "out of range"),
        ('<valuePositiveInt value="0"/>', "invalid positiveInt"),
        ('<valueUnsignedInt value="-1"/>', "invalid unsignedInt"),
        ('<valueDecimal value="1."/>', "invalid decimal"),
        ('<valueDecimal value="NaN"/>', "invalid decimal"),
    ],
)
def test_invalid_primitive_lexical_forms(value_xml: str, message: str) -> None:
    with pytest.raises(FhirXmlError, match=message) as info:
        parse_xml(_task_with_input(value_xml))
    assert info.value.path.startswith("Task.input.value")
    assert info.value.line == 1


@pytest.mark.parametrize(
    ("resource", "message"),
    [
        ({"resourceType": "Patient", "active": "true"}, "expected a JSON boolean"),
        ({"resourceType": "Patient", "multipleBirthInteger": True}, "expected a JSON integer"),
        ({"resourceType": "Patient", "birthDate": 1970}, "expected a JSON string"),
        ({"resourceType": "Observation", "status": "final", "code": {}, "valueQuantity": {"value": "1.5"}}, "expected a JSON number"),
        ({"resourceType": "Observation", "status": "final", "code": {}, "valueQuantity": {"value": float("nan")}}, "not a finite"),
    ],
)
def test_to_xml_rejects_wrong_json_types(resource: dict[str, Any], message: str) -> None:
    with pytest.raises(FhirXmlError, match=message):
        to_xml(resource)


# --------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------


def test_malformed_xml() -> None:
    with pytest.raises(FhirXmlError, match="malformed XML") as info:
        parse_xml(b'<Patient xmlns="http://hl7.org/fhir">\n<active value="true">\n</Patient>')
    assert info.value.line == 3
    with pytest.raises(FhirXmlError, match="malformed XML"):
        parse_xml(b"")
    with pytest.raises(FhirXmlError, match="malformed XML"):
        parse_xml(b"not xml at all")


def test_wrong_namespace() -> None:
    with pytest.raises(FhirXmlError, match="not in the FHIR namespace"):
        parse_xml(b'<Patient><active value="true"/></Patient>')
    with pytest.raises(FhirXmlError, match="not in the FHIR namespace"):
        parse_xml(b'<Patient xmlns="http://hl7.org/fhir/R5"/>')
    with pytest.raises(FhirXmlError, match="not in the FHIR namespace") as info:
        parse_xml(b'<Patient xmlns="http://hl7.org/fhir"><x:active xmlns:x="urn:x" value="true"/></Patient>')
    assert info.value.path == "Patient.active"
    with pytest.raises(FhirXmlError, match="XHTML namespace"):
        parse_xml(b'<Patient xmlns="http://hl7.org/fhir"><text><status value="generated"/><div/></text></Patient>')


def test_unknown_elements_name_their_path() -> None:
    xml = _task_with_input('<valueString value="a"/>').replace(
        b"</input></Task>", b'</input><input><type><text value="u"/></type><valueFoo value="x"/></input></Task>'
    )
    with pytest.raises(FhirXmlError, match="unknown element 'valueFoo' in TaskInput") as info:
        parse_xml(xml)
    assert info.value.path == "Task.input[1].valueFoo"
    assert "Task.input[1].valueFoo" in str(info.value)
    with pytest.raises(FhirXmlError, match="unknown resource type 'Foo'"):
        parse_xml(b'<Foo xmlns="http://hl7.org/fhir"/>')
    with pytest.raises(FhirXmlError, match="unknown resource type 'TaskInput'"):
        parse_xml(b'<TaskInput xmlns="http://hl7.org/fhir"/>')
    with pytest.raises(FhirXmlError, match="unknown resource type"):
        parse_xml(b'<Bundle xmlns="http://hl7.org/fhir"><entry><resource><Coding/></resource></entry></Bundle>')


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        (b'<Patient xmlns="http://hl7.org/fhir" id="x"/>', "unexpected attribute 'id'"),
        (b'<Patient xmlns="http://hl7.org/fhir"><active value="true" foo="1"/></Patient>', "unexpected attribute 'foo'"),
        (b'<Patient xmlns="http://hl7.org/fhir"><active>true</active></Patient>', "unexpected text content"),
        (b'<Patient xmlns="http://hl7.org/fhir">text<active value="true"/></Patient>', "unexpected text content"),
        (b'<Patient xmlns="http://hl7.org/fhir"><active/></Patient>', "neither a value nor extensions"),
        (b'<Patient xmlns="http://hl7.org/fhir"><active value="true"/><active value="true"/></Patient>', "repeated element"),
        (b'<Patient xmlns="http://hl7.org/fhir"><name><family value="a"/><family value="b"/></name></Patient>', "repeated element"),
        (b'<Patient xmlns="http://hl7.org/fhir"><active value="true"><foo/></active></Patient>', "only extension"),
        (b'<Patient xmlns="http://hl7.org/fhir"><maritalStatus/></Patient>', "has no content"),
        (b'<Patient xmlns="http://hl7.org/fhir"><name><id value="x"/></name></Patient>', "must be an XML attribute"),
        (b'<Patient xmlns="http://hl7.org/fhir"><contained/></Patient>', "exactly one resource"),
        (
            b'<Bundle xmlns="http://hl7.org/fhir"><entry><resource><Patient/><Patient/></resource></entry></Bundle>',
            "exactly one resource",
        ),
    ],
)
def test_structural_errors(xml: bytes, message: str) -> None:
    with pytest.raises(FhirXmlError, match=message):
        parse_xml(xml)


def test_foreign_namespace_attributes_are_ignored() -> None:
    xml = (
        b'<Patient xmlns="http://hl7.org/fhir" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
        b' xsi:schemaLocation="http://hl7.org/fhir fhir-all.xsd"><active value="true"/></Patient>'
    )
    assert parse_xml(xml) == {"resourceType": "Patient", "active": True}


def test_comments_and_processing_instructions_are_dropped(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text("TOP-SECRET-PI")
    xml = (
        f'<?xml version="1.0" encoding="UTF-8"?><?xml-stylesheet type="text/xsl" href="{secret_file.as_uri()}"?>'
        '<!-- header --><Patient xmlns="http://hl7.org/fhir"><?php system("id"); ?>'
        '<!-- inside --><active value="true"/></Patient>'
    ).encode()
    result = parse_xml(xml)
    assert result == {"resourceType": "Patient", "active": True}
    assert b"TOP-SECRET-PI" not in to_xml(result)


def test_xinclude_is_not_processed(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text("TOP-SECRET-XI")
    xml = (
        '<Patient xmlns="http://hl7.org/fhir" xmlns:xi="http://www.w3.org/2001/XInclude">'
        f'<xi:include href="{secret_file.as_uri()}" parse="text"/></Patient>'
    ).encode()
    with pytest.raises(FhirXmlError) as info:
        parse_xml(xml)
    assert "TOP-SECRET-XI" not in str(info.value)


BILLION_LAUGHS = (
    '<?xml version="1.0"?>\n<!DOCTYPE Patient [\n'
    '<!ENTITY lol "lol">\n'
    + "".join(
        f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10 if i > 1 else "&lol;" * 10}">\n' for i in range(1, 10)
    )
    + ']>\n<Patient xmlns="http://hl7.org/fhir"><gender value="&lol9;"/></Patient>'
)


@pytest.mark.parametrize("encoding", ["bytes-utf-8", "str", "bytes-utf-16"])
def test_billion_laughs_is_rejected(encoding: str) -> None:
    if encoding == "str":
        data: bytes | str = BILLION_LAUGHS
    elif encoding == "bytes-utf-8":
        data = BILLION_LAUGHS.encode()
    else:  # the byte pre-scan cannot see the DOCTYPE; the post-parse check must
        data = BILLION_LAUGHS.replace('version="1.0"', 'version="1.0" encoding="UTF-16"').encode("utf-16")
    # Rejected by our DOCTYPE check, or (UTF-16, where the byte pre-scan is blind) by
    # libxml2's entity amplification limit, which is still active without huge_tree.
    with pytest.raises(FhirXmlError, match="DOCTYPE|entity") as info:
        parse_xml(data)
    assert "lollollol" not in str(info.value)


@pytest.mark.parametrize(
    "doctype", ["<!DOCTYPE Patient>", '<!DOCTYPE Patient [<!ENTITY a "b">]>', "<!DOCTYPE Patient SYSTEM 'x.dtd'>"]
)
def test_any_doctype_is_rejected_even_when_the_byte_scan_is_blind(doctype: str) -> None:
    text = (
        f'<?xml version="1.0" encoding="UTF-16"?>{doctype}'
        '<Patient xmlns="http://hl7.org/fhir"><active value="true"/></Patient>'
    )
    with pytest.raises(FhirXmlError, match="DOCTYPE"):
        parse_xml(text.encode("utf-16"))
    with pytest.raises(FhirXmlError, match="DOCTYPE"):
        parse_xml(text.replace("UTF-16", "UTF-8"))


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16"])
@pytest.mark.parametrize("kind", ["internal-subset", "external-dtd", "parameter-entity"])
def test_external_entities_are_never_read(tmp_path: Path, encoding: str, kind: str) -> None:
    secret = "S3CR3T-" + "x" * 16
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text(secret)
    uri = secret_file.as_uri()
    (tmp_path / "evil.dtd").write_text(f'<!ENTITY xxe SYSTEM "{uri}">')
    doctype = {
        "internal-subset": f'<!DOCTYPE Patient [<!ENTITY xxe SYSTEM "{uri}">]>',
        "external-dtd": f'<!DOCTYPE Patient SYSTEM "{(tmp_path / "evil.dtd").as_uri()}">',
        "parameter-entity": f'<!DOCTYPE Patient [<!ENTITY % ext SYSTEM "{(tmp_path / "evil.dtd").as_uri()}"> %ext;]>',
    }[kind]
    text = (
        f'<?xml version="1.0" encoding="{encoding.upper()}"?>{doctype}'
        '<Patient xmlns="http://hl7.org/fhir"><gender value="&xxe;"/><name><family value="&xxe;"/></name></Patient>'
    )
    with pytest.raises(FhirXmlError) as info:
        parse_xml(text.encode(encoding))
    assert secret not in str(info.value)
    assert secret not in repr(info.value.args)


def test_to_xml_errors_name_their_path() -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": {"resourceType": "Task", "status": "draft", "intent": "order", "bogus": 1}}],
    }
    with pytest.raises(FhirXmlError, match="unknown property 'bogus'") as info:
        to_xml(bundle)
    assert info.value.path == "Bundle.entry[0].resource.Task.bogus"
    task = copy.deepcopy(DSF_TASK)
    task["input"][1]["type"]["coding"][0]["system"] = 5
    with pytest.raises(FhirXmlError, match="expected a JSON string") as info:
        to_xml(task)
    assert info.value.path == "Task.input[1].type.coding[0].system"
    patient = {"resourceType": "Patient", "_active": {"extension": [{"url": "u", "valueNope": 1}]}}
    with pytest.raises(FhirXmlError) as info:
        to_xml(patient)
    assert info.value.path == "Patient._active.extension[0].valueNope"


@pytest.mark.parametrize(
    ("resource", "message"),
    [
        ({"resourceType": "Nope"}, "unknown resourceType"),
        ({"status": "draft"}, "no resourceType"),
        ({"resourceType": "Patient", "name": {"family": "x"}}, "expected a JSON array"),
        ({"resourceType": "Patient", "gender": ["male"]}, "does not repeat"),
        ({"resourceType": "Patient", "name": [{"given": ["a", "b"], "_given": [None]}]}, "differ in length"),
        ({"resourceType": "Patient", "name": [{"given": ["a", None]}]}, "neither a value nor extensions"),
        ({"resourceType": "Patient", "active": None}, "null"),
        ({"resourceType": "Patient", "_active": {"foo": 1}}, "unknown property 'foo'"),
        ({"resourceType": "Patient", "name": [{"family": "a\x00b"}]}, "cannot be represented in XML"),
        ({"resourceType": "Patient", "contained": [{"name": "x"}]}, "no resourceType"),
        ({"resourceType": "Patient", "text": {"status": "generated", "div": "<div><p>open</div>"}}, "not well-formed"),
        ({"resourceType": "Patient", "text": {"status": "generated", "div": "<p xmlns='http://www.w3.org/1999/xhtml'/>"}}, "XHTML <div>"),
        (
            {"resourceType": "Patient", "text": {"status": "generated", "div": '<!DOCTYPE div [<!ENTITY a "b">]><div>&a;</div>'}},
            "DOCTYPE",
        ),
        ({"resourceType": "Patient", "text": {"status": "generated", "div": "</div><script/><div>"}}, "not well-formed"),
    ],
)
def test_to_xml_rejects_invalid_json(resource: dict[str, Any], message: str) -> None:
    with pytest.raises(FhirXmlError, match=message):
        to_xml(resource)


def test_nesting_depth_is_bounded() -> None:
    def nested_xml(depth: int) -> str:
        return (
            '<Patient xmlns="http://hl7.org/fhir">'
            + '<extension url="u">' * depth
            + '<valueString value="x"/>'
            + "</extension>" * depth
            + "</Patient>"
        )

    assert parse_xml(nested_xml(200))["resourceType"] == "Patient"
    with pytest.raises(FhirXmlError, match="depth"):  # libxml2's limit without huge_tree
        parse_xml(nested_xml(5000))
    extension: dict[str, Any] = {"url": "u", "valueString": "x"}
    for _ in range(5000):
        extension = {"url": "u", "extension": [extension]}
    with pytest.raises(FhirXmlError, match="nested too deeply"):
        to_xml({"resourceType": "Patient", "extension": [extension]})


def test_fhir_xml_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        parse_xml(b"<")
