"""The hello world plugin's BPMN models and FHIR resources.

1. Both models load with the engine's parser and bind exactly the plugin's activity classes;
   the user task's form is the plugin's Questionnaire.
2. The resources fit together and fit the models (messages, profiles, codes, the Task
   templates against their profiles), and the Questionnaire meets the DSF 2.x Questionnaire
   profile (the mandatory items business-key and user-task-id, with their fixed texts).
3. A real mailbox accepts every resource as the plugin's deployment uploads them, and the
   uploaded ActivityDefinitions let the local organisation start both processes and no
   remote organisation.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from dsf_core.bpe.model import ProcessModel
from dsf_core.bpe.parser import load_bpmn
from dsf_core.fhir import codes
from dsf_core.fhir.xml import parse_xml
from dsf_core.testing.mailbox import MailboxHarness

PLUGIN = Path(__file__).resolve().parents[1] / "src" / "dsf_plugin_hello_world"
BPE = PLUGIN / "bpe"
FHIR = PLUGIN / "fhir"
QUESTIONNAIRE_PROFILE = (Path(__file__).resolve().parents[3].parent / "shared" / "reference"
                         / "dsf-2.1.0-conformance" / "StructureDefinition" / "dsf-questionnaire-2.0.0.xml")

VERSION = "1.0"
DATE = "2024-06-01"
PROCESS = "http://dsf.dev/bpe/Process/"
PROFILE = "http://dsf.dev/fhir/StructureDefinition/"
CODE_SYSTEM = "http://dsf.dev/fhir/CodeSystem/hello-world"
QUESTIONNAIRE = "http://dsf.dev/fhir/Questionnaire/hello-user"
JSON_HEADERS = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}

ACTIVITIES = "dsf_plugin_hello_world.activities."
MODELS = {
    "hello-world": ("dsfdev_helloWorld", ("helloWorld",), {ACTIVITIES + "HelloWorld"}),
    "hello-user": ("dsfdev_helloUser", ("helloUser",), {ACTIVITIES + "LogUserTaskResponse"}),
}


def model(name: str) -> ProcessModel:
    return load_bpmn(BPE / f"{name}.bpmn", placeholders={"version": VERSION})


def resources() -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(FHIR.rglob("*.json"))]


def of_type(type_: str) -> list[dict[str, Any]]:
    return [r for r in resources() if r["resourceType"] == type_]


def by_url(type_: str, url: str) -> dict[str, Any]:
    [found] = [r for r in of_type(type_) if r["url"] == url.split("|")[0]]
    return found


# ============================================================================ 1. BPMN models


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_loads_with_id_version_start_message_and_classes(name: str) -> None:
    process_id, starts, classes = MODELS[name]
    loaded = model(name)
    assert (loaded.process_id, loaded.version, loaded.start_messages) == (process_id, VERSION, starts)
    assert loaded.class_names() == classes


def test_the_plugin_has_exactly_these_models() -> None:
    assert sorted(p.stem for p in BPE.glob("*.bpmn")) == sorted(MODELS)


def test_hello_world_is_start_service_end() -> None:
    kinds = [(type(s).__name__, s.bpmn_id) for s in model("hello-world").elements()]
    assert kinds == [("DsfStartEvent", "HelloWorldReceived"), ("DsfServiceTask", "HelloWorld"),
                     ("DsfEndEvent", "HelloWorldDone")]


def test_hello_user_asks_with_the_plugins_questionnaire_then_logs() -> None:
    kinds = [(type(s).__name__, s.bpmn_id) for s in model("hello-user").elements()]
    assert kinds == [("DsfStartEvent", "HelloUserReceived"), ("DsfUserTask", "AskUser"),
                     ("DsfServiceTask", "LogUserTaskResponse"), ("DsfEndEvent", "HelloUserDone")]
    form = model("hello-user").element("AskUser").form_key
    assert form == f"{QUESTIONNAIRE}|{VERSION}"
    assert by_url("Questionnaire", form)["version"] == "#{version}"


# ============================================================================ 2. resources


def test_placeholders_and_managed_status() -> None:
    for resource in resources():
        text = json.dumps(resource)
        assert set(re.findall(r"#\{([^}]*)\}", text)) <= {"version", "date", "organization"}, resource.get("url")
        expected = "draft" if resource["resourceType"] == "Task" else "unknown"
        assert resource["status"] == expected
        if resource["resourceType"] != "Task":
            assert resource["version"] == "#{version}" and resource["date"] == "#{date}"
            assert resource["meta"]["tag"] == [{"system": codes.READ_ACCESS_TAG, "code": "ALL"}]


def _blocks(activity_definition: dict[str, Any]) -> list[dict[str, list[Any]]]:
    blocks = []
    for block in activity_definition["extension"]:
        assert block["url"] == codes.EXT_PROCESS_AUTHORIZATION
        parts: dict[str, list[Any]] = {}
        for part in block["extension"]:
            parts.setdefault(part["url"], []).append(
                part.get("valueString") or part.get("valueCanonical") or part["valueCoding"])
        blocks.append(parts)
    return blocks


@pytest.mark.parametrize("name", sorted(MODELS))
def test_activity_definition_authorises_local_starts_of_the_model(name: str) -> None:
    """As the Java hello world: LOCAL_ALL or a local DSF_ADMIN practitioner may start it, at the local organisation."""
    process_id, [start], _ = MODELS[name]
    ad = by_url("ActivityDefinition", PROCESS + process_id.removeprefix("dsfdev_"))
    assert ad["kind"] == "Task"
    [block] = _blocks(ad)
    profile = f"{PROFILE}task-{name}|#{{version}}"
    assert block["message-name"] == [start]
    assert block["task-profile"] == [profile]
    assert block["requester"] == [
        {"system": codes.PROCESS_AUTHORIZATION, "code": "LOCAL_ALL"},
        {"extension": [{"url": codes.EXT_PA_PRACTITIONER,
                        "valueCoding": {"system": codes.PRACTITIONER_ROLE, "code": "DSF_ADMIN"}}],
         "system": codes.PROCESS_AUTHORIZATION, "code": "LOCAL_ALL_PRACTITIONER"},
    ]
    assert block["recipient"] == [{"system": codes.PROCESS_AUTHORIZATION, "code": "LOCAL_ALL"}]
    by_url("StructureDefinition", profile)  # the profile is the plugin's own


def _elements(profile: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["id"]: e for e in profile["differential"]["element"]}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_task_profile_fixes_process_and_message(name: str) -> None:
    process_id, [start], _ = MODELS[name]
    profile = by_url("StructureDefinition", f"{PROFILE}task-{name}")
    assert (profile["type"], profile["baseDefinition"], profile["derivation"]) == (
        "Task", PROFILE + "task-base", "constraint")
    elements = _elements(profile)
    assert elements["Task.instantiatesCanonical"]["fixedCanonical"] == (
        f"{PROCESS}{process_id.removeprefix('dsfdev_')}|#{{version}}")
    assert elements["Task.input:message-name.value[x]"]["fixedString"] == start
    assert elements["Task.input:correlation-key"]["max"] == "0"


def _slices(profile: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Example-input slice name → {min, max, code, type} from the profile's differential."""
    elements = _elements(profile)
    out: dict[str, dict[str, Any]] = {}
    for element in elements.values():
        name = element.get("sliceName")
        if element["path"] != "Task.input" or name is None or name in ("message-name", "correlation-key"):
            continue
        out[name] = {
            "min": element["min"], "max": element["max"],
            "system": elements[f"Task.input:{name}.type.coding.system"]["fixedUri"],
            "code": elements[f"Task.input:{name}.type.coding.code"]["fixedCode"],
            "type": [t["code"] for t in elements[f"Task.input:{name}.value[x]"]["type"]],
            "binding": elements[f"Task.input:{name}.type"]["binding"]["valueSet"],
        }
    return out


def test_hello_world_inputs_are_the_code_systems_codes() -> None:
    [code_system] = of_type("CodeSystem")
    [value_set] = of_type("ValueSet")
    assert code_system["url"] == CODE_SYSTEM
    assert value_set["compose"] == {"include": [{"system": CODE_SYSTEM, "version": "#{version}"}]}
    slices = _slices(by_url("StructureDefinition", PROFILE + "task-hello-world"))
    assert sorted(slices) == sorted(c["code"] for c in code_system["concept"])
    for name, rule in slices.items():
        assert (rule["system"], rule["code"]) == (CODE_SYSTEM, name)
        assert rule["binding"] == f"{value_set['url']}|#{{version}}"
    assert (slices["string-example"]["min"], slices["string-example"]["max"]) == (1, "*")


_COMPLEX = frozenset({"Coding", "CodeableConcept", "Identifier", "Reference", "Quantity", "Period", "Attachment"})


def _value_type(parameter: dict[str, Any]) -> str:
    """The FHIR type of a parameter's value[x]: ``valueDateTime`` → ``dateTime``, ``valueCoding`` → ``Coding``."""
    [key] = [k for k in parameter if k.startswith("value")]
    type_ = key.removeprefix("value")
    return type_ if type_ in _COMPLEX else type_[0].lower() + type_[1:]


def template_violations(task: dict[str, Any], profile: dict[str, Any]) -> list[str]:
    """Where a Task template breaks the example-input slices of its profile."""
    problems = []
    slices = _slices(profile)
    counts = dict.fromkeys(slices, 0)
    for parameter in task["input"][1:]:
        [coding] = parameter["type"]["coding"]
        rule = slices.get(coding["code"])
        if rule is None or coding["system"] != rule["system"]:
            problems.append(f"input {coding['system']}|{coding['code']} has no slice")
            continue
        counts[coding["code"]] += 1
        if _value_type(parameter) not in rule["type"]:
            problems.append(f"input {coding['code']} is {_value_type(parameter)}, profile says {rule['type']}")
    for name, count in counts.items():
        maximum = slices[name]["max"]
        if count < slices[name]["min"] or (maximum != "*" and count > int(maximum)):
            problems.append(f"{count} × {name}, profile says {slices[name]['min']}..{maximum}")
    return problems


@pytest.mark.parametrize("name", sorted(MODELS))
def test_task_template_fits_its_profile_and_process(name: str) -> None:
    process_id, [start], _ = MODELS[name]
    process = process_id.removeprefix("dsfdev_")
    [task] = [t for t in of_type("Task") if t["instantiatesCanonical"] == f"{PROCESS}{process}|#{{version}}"]
    assert task["meta"]["profile"] == [f"{PROFILE}task-{name}|#{{version}}"]
    assert task["identifier"] == [{"system": codes.TASK_IDENTIFIER,
                                   "value": f"{PROCESS}{process}/#{{version}}/task-{name}"}]
    assert (task["intent"], task["authoredOn"]) == ("order", "#{date}")
    local = {"type": "Organization",
             "identifier": {"system": codes.ORGANIZATION_IDENTIFIER, "value": "#{organization}"}}
    assert task["requester"] == local and task["restriction"] == {"recipient": [local]}
    assert task["input"][0] == {"type": {"coding": [{"system": codes.BPMN_MESSAGE, "code": "message-name"}]},
                                "valueString": start}
    assert template_violations(task, by_url("StructureDefinition", f"{PROFILE}task-{name}")) == []


def test_the_hello_world_template_shows_every_input_type() -> None:
    [task] = [t for t in of_type("Task") if t["instantiatesCanonical"].startswith(PROCESS + "helloWorld|")]
    assert sorted(p["type"]["coding"][0]["code"] for p in task["input"][1:]) == sorted(
        _slices(by_url("StructureDefinition", PROFILE + "task-hello-world")))


def test_template_check_notices_a_wrong_input() -> None:
    [task] = [t for t in of_type("Task") if t["instantiatesCanonical"].startswith(PROCESS + "helloWorld|")]
    profile = by_url("StructureDefinition", PROFILE + "task-hello-world")
    task["input"][2] = {**task["input"][2], "valueString": "42"}
    del task["input"][2]["valueInteger"]
    task["input"].append(dict(task["input"][3]))
    del task["input"][1]
    assert template_violations(task, profile) == [
        "input integer-example is string, profile says ['integer']",
        "0 × string-example, profile says 1..*",
        "2 × decimal-example, profile says 0..1",
    ]


# -- the Questionnaire against the DSF Questionnaire profile ---------------------------------

_FIELD = re.compile(r"^Questionnaire\.item:(?P<slice>[^.]+)\.(?P<field>[a-zA-Z]+)$")


def questionnaire_violations(questionnaire: dict[str, Any], profile: dict[str, Any]) -> list[str]:
    """Where the items break the profile's item slices (by linkId; other items in @default):
    fixed values, forbidden (max 0) and required (min 1) fields, slice cardinalities and the
    'required-exists' rule."""
    rules: dict[str, dict[str, dict[str, Any]]] = {}
    cardinality: dict[str, tuple[int, str]] = {}
    for element in profile["differential"]["element"]:
        if element["path"] == "Questionnaire.item" and "sliceName" in element:
            cardinality[element["sliceName"]] = (element.get("min", 0), element.get("max", "*"))
        match = _FIELD.match(element["id"])
        if match:
            rules.setdefault(match["slice"], {})[match["field"]] = element
    problems = []
    seen = dict.fromkeys(cardinality, 0)
    for item in questionnaire["item"]:
        slice_ = item["linkId"] if item["linkId"] in rules else "@default"
        seen[slice_] += 1
        for field, element in rules.get(slice_, {}).items():
            fixed = {k: v for k, v in element.items() if k.startswith("fixed")}
            for value in fixed.values():
                if item.get(field) != value:
                    problems.append(f"{item['linkId']}.{field} is {item.get(field)!r}, profile fixes {value!r}")
            if element.get("max") == "0" and field in item:
                problems.append(f"{item['linkId']}.{field} is not allowed")
            if element.get("min", 0) >= 1 and field not in item:
                problems.append(f"{item['linkId']}.{field} is required")
        if item["type"] != "display" and "required" not in item:
            problems.append(f"{item['linkId']} needs 'required'")
    for slice_, (low, high) in cardinality.items():
        if seen[slice_] < low or (high != "*" and seen[slice_] > int(high)):
            problems.append(f"{seen[slice_]} items in slice {slice_}, profile says {low}..{high}")
    return problems


@pytest.fixture(scope="module")
def questionnaire_profile() -> dict[str, Any]:
    if not QUESTIONNAIRE_PROFILE.exists():
        pytest.skip(f"DSF conformance resources not found at {QUESTIONNAIRE_PROFILE}")
    return parse_xml(QUESTIONNAIRE_PROFILE.read_bytes())


def test_questionnaire_meets_the_dsf_profile(questionnaire_profile: dict[str, Any]) -> None:
    questionnaire = by_url("Questionnaire", QUESTIONNAIRE)
    assert [i["linkId"] for i in questionnaire["item"][:2]] == ["business-key", "user-task-id"]
    assert len({i["linkId"] for i in questionnaire["item"]}) == len(questionnaire["item"])
    assert questionnaire_violations(questionnaire, questionnaire_profile) == []


def test_questionnaire_check_notices_a_wrong_mandatory_item(questionnaire_profile: dict[str, Any]) -> None:
    questionnaire = by_url("Questionnaire", QUESTIONNAIRE)
    questionnaire["item"][1]["text"] = "Which user task is this?"
    questionnaire["item"] = [i for i in questionnaire["item"] if i["linkId"] != "business-key"]
    questionnaire["item"].append({"linkId": "extra", "type": "string", "text": "?", "prefix": "1."})
    assert questionnaire_violations(questionnaire, questionnaire_profile) == [
        "user-task-id.text is 'Which user task is this?', profile fixes 'The user-task-id of the process execution'",
        "extra.prefix is not allowed",
        "extra needs 'required'",
    ]


# ============================================================================ 3. a real mailbox


_PLACEHOLDER = re.compile(r"#\{([^}]*)\}")


def deployed(resource: dict[str, Any], organization: str) -> dict[str, Any]:
    """The resource as the deployment uploads it: placeholders filled, metadata status active."""
    values = {"version": VERSION, "date": DATE, "organization": organization}
    out: dict[str, Any] = json.loads(_PLACEHOLDER.sub(lambda m: values[m.group(1)], json.dumps(resource)))
    if out["resourceType"] != "Task":
        out["status"] = "active"
    return out


def upload_bundle(items: Iterable[dict[str, Any]], organization: str) -> dict[str, Any]:
    """One transaction with a conditional PUT per resource: url|version, or the draft Task's identifier."""
    entries = []
    for resource in items:
        r = deployed(resource, organization)
        if r["resourceType"] == "Task":
            [identifier] = r["identifier"]
            query = f"identifier={identifier['system']}|{identifier['value']}"
        else:
            query = f"url={r['url']}&version={r['version']}"
        entries.append({"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}?{query}"}})
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


class Node:
    def __init__(self, mb: MailboxHarness, http: dict[str, aiohttp.ClientSession]) -> None:
        self.mb = mb
        self.http = http

    async def request(self, who: str, method: str, path: str, body: dict[str, Any] | None = None,
                      **params: str) -> tuple[int, dict[str, Any]]:
        async with self.http[who].request(method, self.mb.url(path), json=body, params=params,
                                          headers=JSON_HEADERS) as response:
            return response.status, await response.json(content_type=None)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def node(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Node]:
    async with MailboxHarness(tmp_path_factory.mktemp("hello-world-plugin"), remotes={"remote.test": ["DIC"]}) as mb:
        sessions = {who: mb.client(who) for who in ("local.test", "remote.test")}
        try:
            status, response = await Node(mb, sessions).request(
                "local.test", "POST", "", upload_bundle(resources(), mb.local))
            assert status == 200, response
            assert [e["response"]["status"] for e in response["entry"]] == ["201 Created"] * len(resources())
            yield Node(mb, sessions)
        finally:
            for session in sessions.values():
                await session.close()


async def test_uploaded_resources_are_found_by_url_and_version(node: Node) -> None:
    for resource in resources():
        if resource["resourceType"] == "Task":
            continue
        status, bundle = await node.request("remote.test", "GET", resource["resourceType"],
                                            url=resource["url"], version=VERSION)  # tagged ALL: remotes read them
        assert status == 200 and bundle["total"] == 1, (resource["url"], bundle)
        assert bundle["entry"][0]["resource"]["status"] == "active"
    status, bundle = await node.request("local.test", "GET", "Task", status="draft")
    assert status == 200 and bundle["total"] == len(of_type("Task"))


def _requested(template: dict[str, Any], node: Node, requester: str) -> dict[str, Any]:
    """A template as the UI sends it: without identifier, status requested, from ``requester``."""
    task = deployed(template, node.mb.local)
    del task["identifier"]
    task["status"] = "requested"
    task["requester"]["identifier"]["value"] = requester
    return task


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize(("requester", "expected"), [("local.test", 201), ("remote.test", 403)])
async def test_only_the_local_organisation_may_start_a_process(node: Node, name: str, requester: str,
                                                                expected: int) -> None:
    process = MODELS[name][0].removeprefix("dsfdev_")
    [template] = [t for t in of_type("Task") if t["instantiatesCanonical"].startswith(f"{PROCESS}{process}|")]
    status, body = await node.request(requester, "POST", "Task", _requested(template, node, requester))
    assert status == expected, body
    if expected == 403:
        assert body["issue"][0]["code"] == "forbidden"
        assert "not authorized" in body["issue"][0]["diagnostics"]
