"""The ping/pong plugin's BPMN models and FHIR resources.

1. Each model loads with the engine's parser, binds exactly the plugin's activity classes and
   has the Java DSF ping/pong 1.0.1.0 model's structure: the same events (messages, timers,
   signals, errors) and the same flow graph once Java class names are mapped to ours.
2. Each FHIR resource states the same facts as the Java resource with its URL (codes, ValueSet
   compose, process authorizations, profile constraints, Task templates); the comparison is
   shown to notice a changed fact.
3. A real mailbox accepts every resource as the plugin's deployment uploads them, and the
   uploaded ActivityDefinitions authorise the messages as the Java ones do (remote ``ping`` and
   ``pong`` yes, remote ``startPing`` no).
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from lxml import etree

from dsf_core.bpe.extensions import BPMN_NS, bpmn, camunda
from dsf_core.bpe.model import ProcessModel
from dsf_core.bpe.parser import load_bpmn, replace_placeholders
from dsf_core.fhir import codes
from dsf_core.fhir.xml import parse_xml
from dsf_core.testing.mailbox import MailboxHarness

PLUGIN = Path(__file__).resolve().parents[1] / "src" / "dsf_plugin_ping_pong"
BPE = PLUGIN / "bpe"
FHIR = PLUGIN / "fhir"
JAVA = Path(__file__).resolve().parents[3].parent / "shared" / "reference" / "dsf-ping-pong-1.0.1.0"

VERSION = "1.0"
DATE = "2024-06-01"
PROCESS = "http://dsf.dev/bpe/Process/"
PROFILE = "http://dsf.dev/fhir/StructureDefinition/"
PING_SYSTEM = "http://dsf.dev/fhir/CodeSystem/ping"
JSON_HEADERS = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}

ACTIVITIES = "dsf_plugin_ping_pong.activities."
CLASSES = {
    "ping": {"SelectPingTargets", "SendPing", "LogPong", "LogNoResponse", "LogSendError", "SaveResults"},
    "pong": {"LogPing", "SelectPongTarget", "SendPong"},
    "ping-autostart": {"SetTargetAndConfigureTimer", "SendStartPing"},
}
PROCESSES = {"ping": "dsfdev_ping", "pong": "dsfdev_pong", "ping-autostart": "dsfdev_pingAutostart"}
START_MESSAGES = {"ping": ("startPing",), "pong": ("ping",), "ping-autostart": ("startPingAutostart", "stopPingAutostart")}
# The Java classes the same elements bind to (the listener is named differently there).
JAVA_CLASSES = {
    "dev.dsf.bpe.service.SelectPingTargets": "SelectPingTargets",
    "dev.dsf.bpe.message.SendPing": "SendPing",
    "dev.dsf.bpe.listener.SetCorrelationKeyListener": "SetCorrelationKey",
    "dev.dsf.bpe.service.LogPong": "LogPong",
    "dev.dsf.bpe.service.LogNoResponse": "LogNoResponse",
    "dev.dsf.bpe.service.LogSendError": "LogSendError",
    "dev.dsf.bpe.service.SaveResults": "SaveResults",
    "dev.dsf.bpe.service.LogPing": "LogPing",
    "dev.dsf.bpe.service.SelectPongTarget": "SelectPongTarget",
    "dev.dsf.bpe.message.SendPong": "SendPong",
    "dev.dsf.bpe.service.SetTargetAndConfigureTimer": "SetTargetAndConfigureTimer",
    "dev.dsf.bpe.message.SendStartPing": "SendStartPing",
}


def require_java() -> None:
    if not JAVA.exists():
        pytest.skip(f"Java ping/pong reference files not found at {JAVA}")


def ours(name: str) -> ProcessModel:
    return load_bpmn(BPE / f"{name}.bpmn", placeholders={"version": VERSION})


def java(name: str) -> ProcessModel:
    return load_bpmn(JAVA / "bpe" / f"{name}.bpmn", placeholders={"version": VERSION})


# ============================================================================ 1. BPMN models


@pytest.mark.parametrize("name", sorted(PROCESSES))
def test_model_loads_with_id_version_start_messages_and_classes(name: str) -> None:
    model = ours(name)
    assert (model.process_id, model.version, model.start_messages) == (PROCESSES[name], VERSION, START_MESSAGES[name])
    framework = {"dsf_core.api.SetCorrelationKey"} if name == "ping" else set()
    assert model.class_names() == {ACTIVITIES + c for c in CLASSES[name]} | framework


def test_the_plugin_has_exactly_these_models() -> None:
    assert sorted(p.stem for p in BPE.glob("*.bpmn")) == sorted(PROCESSES)


def test_message_fields_name_the_target_process_profile_and_message() -> None:
    sends = {
        spec.binding.class_name.removeprefix(ACTIVITIES): (spec.message_name, spec.binding.field_values({}))
        for name in PROCESSES
        for spec in ours(name).elements()
        if spec.binding.get_field("messageName") is not None
    }
    assert sends == {
        "SendPing": ("ping", {"instantiatesCanonical": PROCESS + "pong|1.0", "messageName": "ping",
                              "profile": PROFILE + "task-ping|1.0"}),
        "SendPong": ("pong", {"instantiatesCanonical": PROCESS + "ping|1.0", "messageName": "pong",
                              "profile": PROFILE + "task-pong|1.0"}),
        "SendStartPing": ("startPing", {"instantiatesCanonical": PROCESS + "ping|1.0", "messageName": "startPing",
                                        "profile": PROFILE + "task-start-ping|1.0"}),
    }


def test_fan_out_retries_and_correlation_as_in_java() -> None:
    require_java()
    for model, sub_process, branch_end, gateway in (
        (ours("ping"), "PingEachTarget", "TargetFinished", "AwaitPong"),
        (java("ping"), "SubProcess", "SubProcessEndEvent", "EventBasedGateway"),
    ):
        mi = model.element(sub_process)
        assert (mi.data_input.bpmn_id, mi.input_item.bpmn_id) == ("${targets.entries}", "target")
        assert (mi.binding.async_before, mi.binding.exclusive, mi.binding.retry_cycle) == (True, False, "R3/PT5S")
        end = model.element(branch_end).binding
        assert (end.async_after, end.retry_cycle) == (True, "R3/PT5S")
        [listener] = model.element(gateway).binding.execution_listeners
        assert listener.event == "start" and listener.class_name.endswith(("SetCorrelationKey", "SetCorrelationKeyListener"))


def events(model: ProcessModel) -> Iterable[tuple[str, Any]]:
    """(element kind, event definition) of every event; an event-based gateway owns the
    definitions of the catch events behind it, so they are listed under the gateway."""
    for spec in model.elements():
        definition = getattr(spec, "event_definition", None)
        if definition is None:
            continue
        for d in getattr(definition, "event_definitions", None) or [definition]:
            yield type(spec).__name__.removeprefix("Dsf"), d


def event_facts(model: ProcessModel) -> Counter[tuple[str, str, str | None]]:
    """(element kind, event kind, message / signal name, error code or timer text) of every event."""
    facts: Counter[tuple[str, str, str | None]] = Counter()
    for element, definition in events(model):
        kind = type(definition).__name__.removeprefix("Dsf").removesuffix("EventDefinition")
        value = {"Error": lambda d: d.code, "Timer": lambda d: d.expression}.get(kind, lambda d: d.name)(definition)
        facts[(element, kind, value)] += 1
    return facts


def test_event_facts_see_the_events_behind_a_gateway() -> None:
    assert event_facts(ours("ping")) == Counter({
        ("StartEvent", "Message", "startPing"): 1,
        ("IntermediateThrowEvent", "Message", "ping"): 1,
        ("EventBasedGateway", "Message", "pong"): 1,
        ("EventBasedGateway", "Timer", "PT20S"): 1,
        ("StartEvent", "None", None): 1,
        ("EndEvent", "None", None): 2,
        ("IntermediateCatchEvent", "None", None): 2,
    })


@pytest.mark.parametrize("name", sorted(PROCESSES))
def test_events_are_those_of_the_java_model(name: str) -> None:
    """Same start messages, thrown and caught messages, timers (PT20S, ${timerInterval}),
    signal names and error codes, on the same kinds of elements."""
    require_java()
    assert ours(name).start_messages == java(name).start_messages
    assert event_facts(ours(name)) == event_facts(java(name))


# -- the flow graph, compared by colour refinement (Weisfeiler-Lehman) ----------------------

_NODES = {"startEvent", "endEvent", "intermediateCatchEvent", "intermediateThrowEvent", "boundaryEvent",
          "serviceTask", "sendTask", "receiveTask", "userTask", "subProcess", "exclusiveGateway",
          "parallelGateway", "eventBasedGateway"}


def _local(tag: Any) -> str:
    return str(tag).rsplit("}", 1)[-1]


def _class(name: str | None) -> str | None:
    if name is None:
        return None
    return JAVA_CLASSES.get(name, name.removeprefix(ACTIVITIES).removeprefix("dsf_core.api."))


def _retry(node: Any) -> str | None:
    retry: str | None = node.findtext(f"{bpmn('extensionElements')}/{camunda('failedJobRetryTimeCycle')}")
    return retry


def _node_label(node: Any, messages: dict[str, str], signals: dict[str, str], errors: dict[str, str]) -> str:
    """What an element does, without its id, name or position."""
    facts: dict[str, Any] = {"kind": _local(node.tag), "class": _class(node.get(camunda("class")))}
    for key in ("asyncBefore", "asyncAfter", "exclusive", "formKey", "cancelActivity"):
        facts[key] = node.get(camunda(key)) or node.get(key)
    facts["retry"] = _retry(node)
    facts["listeners"] = sorted((x.get("event"), _class(x.get("class")))
                                for x in node.iter(camunda("executionListener"), camunda("taskListener")))
    facts["outputs"] = sorted((p.get("name"), p.text) for p in node.iter(camunda("outputParameter")))
    facts["inputs"] = sorted((p.get("name"), p.text) for p in node.iter(camunda("inputParameter")))
    for definition in node:
        kind = _local(definition.tag)
        if kind == "messageEventDefinition":
            fields = {f.get("name"): f.findtext(camunda("string")) for f in definition.iter(camunda("field"))}
            facts["message"] = messages.get(definition.get("messageRef", ""), fields.get("messageName"))
            facts["sender"] = (_class(definition.get(camunda("class"))), sorted(fields.items()))
        elif kind == "signalEventDefinition":
            facts["signal"] = signals[definition.get("signalRef")]
        elif kind == "errorEventDefinition":
            facts["error"] = errors.get(definition.get("errorRef", ""))
        elif kind == "timerEventDefinition":
            facts["timer"] = [(_local(t.tag), (t.text or "").strip()) for t in definition]
        elif kind == "multiInstanceLoopCharacteristics":
            facts["multiInstance"] = {a: definition.get(camunda(a)) for a in
                                      ("collection", "elementVariable", "asyncBefore", "asyncAfter", "exclusive")}
            facts["multiInstance"]["retry"] = _retry(definition)
    return json.dumps(facts, sort_keys=True)


def flow_graph(data: bytes) -> tuple[dict[str, str], list[tuple[str, str, str]]]:
    """Node id → label, and edges (source, kind, target): sequence flows with their condition
    or default mark, boundary events on their activity, sub-process nesting."""
    root = etree.fromstring(replace_placeholders(data, {"version": VERSION}, "model"))
    messages = {m.get("id"): m.get("name") for m in root.iter(bpmn("message"))}
    signals = {s.get("id"): s.get("name") for s in root.iter(bpmn("signal"))}
    errors = {e.get("id"): e.get("errorCode") for e in root.iter(bpmn("error"))}
    labels: dict[str, str] = {}
    edges: list[tuple[str, str, str]] = []
    for node in root.iter():
        if not isinstance(node.tag, str) or not node.tag.startswith(f"{{{BPMN_NS}}}"):
            continue
        kind = _local(node.tag)
        if kind in _NODES:
            labels[node.get("id")] = _node_label(node, messages, signals, errors)
            parent = node.getparent()
            if _local(parent.tag) == "subProcess":
                edges.append((parent.get("id"), "contains", node.get("id")))
            if kind == "boundaryEvent":
                edges.append((node.get("attachedToRef"), "boundary", node.get("id")))
        elif kind == "sequenceFlow":
            source = root.xpath("//*[@id=$id]", id=node.get("sourceRef"))[0]
            condition = (node.findtext(bpmn("conditionExpression")) or "").strip()
            edge = "default" if source.get("default") == node.get("id") else f"flow {condition}"
            edges.append((node.get("sourceRef"), edge, node.get("targetRef")))
    return labels, edges


def flow_signature(data: bytes) -> Counter[str]:
    """The multiset of node colours after colour refinement: equal for isomorphic flow graphs.
    Refinement can miss the difference between some symmetric graphs, but in these models
    nearly every element already has a label of its own, so any rewiring changes a colour
    (the mutation test below shows it for the changes that matter)."""
    labels, edges = flow_graph(data)
    for _ in range(len(labels)):
        labels = {
            node: hashlib.sha256(json.dumps([
                label,
                sorted((kind, labels[t]) for s, kind, t in edges if s == node),
                sorted((kind, labels[s]) for s, kind, t in edges if t == node),
            ]).encode()).hexdigest()
            for node, label in labels.items()
        }
    return Counter(labels.values())


@pytest.mark.parametrize("name", sorted(PROCESSES))
def test_flow_graph_is_that_of_the_java_model(name: str) -> None:
    """Same elements doing the same things, connected in the same order, with the same
    conditions, default flows, boundary events and sub-process nesting."""
    require_java()
    mine, theirs = (BPE / f"{name}.bpmn").read_bytes(), (JAVA / "bpe" / f"{name}.bpmn").read_bytes()
    mine_elements, theirs_elements = Counter(flow_graph(mine)[0].values()), Counter(flow_graph(theirs)[0].values())
    elements_only_here, elements_only_in_java = mine_elements - theirs_elements, theirs_elements - mine_elements
    assert not elements_only_here and not elements_only_in_java, (elements_only_here, elements_only_in_java)
    assert flow_signature(mine) == flow_signature(theirs)


@pytest.mark.parametrize(
    ("name", "old", "new"),
    [
        ("ping", b">PT20S<", b">PT30S<"),  # another timeout
        ("ping", b'targetRef="LogNoResponse"', b'targetRef="LogSendError"'),  # timeout logged as send error
        ("ping", b'default="Flow_SentToAwait"', b""),  # the gateway loses its default flow
        ("pong", b'errorCode="target_not_allowed"', b'errorCode="target_unknown"'),
        ("ping-autostart", b'sourceRef="StopSignalReceived" targetRef="StopBeforeSending"',
         b'sourceRef="StopSignalReceived" targetRef="StopAfterSending"'),  # stop skips a gateway
    ],
    ids=["timeout", "timeout-path", "default-flow", "error-code", "stop-path"],
)
def test_the_graph_comparison_notices_a_change(name: str, old: bytes, new: bytes) -> None:
    require_java()
    data = (BPE / f"{name}.bpmn").read_bytes()
    assert data.count(old) >= 1
    assert flow_signature(data.replace(old, new)) != flow_signature((JAVA / "bpe" / f"{name}.bpmn").read_bytes())


# ============================================================================ 2. FHIR resources


def our_resources() -> dict[Path, dict[str, Any]]:
    return {p: json.loads(p.read_text()) for p in sorted(FHIR.rglob("*.json"))}


def java_resources() -> list[dict[str, Any]]:
    return [parse_xml(p.read_bytes()) for p in sorted((JAVA / "fhir").rglob("*.xml"))]


def key(resource: dict[str, Any]) -> tuple[str, str]:
    """What identifies a resource across implementations: url, or task-identifier for drafts."""
    if resource["resourceType"] == "Task":
        [identifier] = [i["value"] for i in resource["identifier"] if i["system"] == codes.TASK_IDENTIFIER]
        return ("Task", identifier)
    return (resource["resourceType"], resource["url"])


_PROSE = frozenset({"title", "subtitle", "description", "publisher", "contact", "purpose", "usage", "copyright",
                    "short", "definition", "comment", "requirements", "human", "name", "text"})


def _without_prose(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_prose(v) for k, v in value.items() if k not in _PROSE}
    if isinstance(value, list):
        return [_without_prose(v) for v in value]
    return value


def _canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _authorizations(activity_definition: dict[str, Any]) -> frozenset[tuple[Any, ...]]:
    blocks = set()
    for block in activity_definition.get("extension", []):
        if block["url"] != codes.EXT_PROCESS_AUTHORIZATION:
            continue
        parts: dict[str, list[Any]] = {}
        for part in block["extension"]:
            value = part.get("valueString") or part.get("valueCanonical") or _canonical_json(part["valueCoding"])
            parts.setdefault(part["url"], []).append(value)
        blocks.add((tuple(parts.pop("message-name")), tuple(parts.pop("task-profile")),
                    frozenset(parts.pop("requester")), frozenset(parts.pop("recipient")), _canonical_json(parts)))
    return frozenset(blocks)


def _element_constraints(element: dict[str, Any]) -> dict[str, Any]:
    # The element's own extensions (explicit-type-name) are presentation, not constraints.
    return {k: v for k, v in _without_prose(element).items() if k != "extension"}


def facts(resource: dict[str, Any]) -> dict[str, Any]:
    """The facts of a resource that must be equal on the wire; prose is left out."""
    type_ = resource["resourceType"]
    common = {k: resource.get(k) for k in ("resourceType", "meta", "url", "version", "status", "date", "experimental")}
    if type_ == "CodeSystem":
        return {**common, **{k: resource.get(k) for k in ("caseSensitive", "hierarchyMeaning", "versionNeeded", "content")},
                "concepts": [(c["code"], c.get("display")) for c in resource["concept"]]}
    if type_ == "ValueSet":
        return {**common, "immutable": resource.get("immutable"), "compose": resource["compose"]}
    if type_ == "ActivityDefinition":
        other = [e for e in resource.get("extension", []) if e["url"] != codes.EXT_PROCESS_AUTHORIZATION]
        return {**common, "kind": resource["kind"], "authorizations": _authorizations(resource), "other": other}
    if type_ == "StructureDefinition":
        elements = resource["differential"]["element"]
        ids = [e["id"] for e in elements]
        return {**common, **{k: resource.get(k) for k in ("fhirVersion", "kind", "abstract", "context", "type",
                                                          "baseDefinition", "derivation")},
                "ids": sorted(ids), "duplicate ids": sorted(i for i, n in Counter(ids).items() if n > 1),
                "elements": {e["id"]: _element_constraints(e) for e in elements}}
    if type_ == "Task":
        return resource  # a template carries no prose: every element is a fact
    raise AssertionError(f"no comparison for {type_}")


def _diff(expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    out = []
    for k in sorted(set(expected) | set(actual)):
        if expected.get(k) != actual.get(k):
            out.append(f"{k}: Java {expected.get(k)!r} != ours {actual.get(k)!r}")
    return out


def test_every_java_resource_has_a_counterpart_and_no_more() -> None:
    require_java()
    assert sorted(key(r) for r in our_resources().values()) == sorted(key(r) for r in java_resources())


def _java_pairs() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    mine = {key(r): r for r in our_resources().values()}
    return [(f"{key(j)[0]} {key(j)[1]}", j, mine[key(j)]) for j in java_resources() if key(j) in mine]


def test_resources_state_the_java_facts() -> None:
    require_java()
    pairs = _java_pairs()
    assert len(pairs) == 17
    problems = {name: _diff(facts(j), facts(o)) for name, j, o in pairs}
    assert not {n: p for n, p in problems.items() if p}


def test_java_facts_are_complete_enough_to_catch_what_matters() -> None:
    """The ActivityDefinitions and profiles are not trivially equal: each has content compared."""
    require_java()
    for _, j, _ in _java_pairs():
        f = facts(j)
        if j["resourceType"] == "ActivityDefinition":
            assert f["authorizations"]
        if j["resourceType"] == "StructureDefinition":
            assert len(f["elements"]) >= 5


def _ours(type_: str, url: str) -> dict[str, Any]:
    return copy.deepcopy(next(r for r in our_resources().values() if key(r) == (type_, url)))


def _remote_role(ad: dict[str, Any]) -> None:
    ad["extension"][1]["extension"][2]["valueCoding"]["code"] = "REMOTE_ROLE"  # pong: was REMOTE_ALL


def _drop_practitioner_role(ad: dict[str, Any]) -> None:
    del ad["extension"][0]["extension"][3]["valueCoding"]["extension"]


def _rename_code(cs: dict[str, Any]) -> None:
    cs["concept"][2]["code"] = "pong-lost"


def _loosen(sd: dict[str, Any]) -> None:
    next(e for e in sd["differential"]["element"] if e["id"] == "Task.input")["max"] = "5"


def _other_binding(sd: dict[str, Any]) -> None:
    element = next(e for e in sd["differential"]["element"] if e["id"] == "Task.output:pong-status.value[x].code")
    element["binding"]["valueSet"] = "http://dsf.dev/fhir/ValueSet/ping-status|#{version}"


def _shorter_compose(vs: dict[str, Any]) -> None:
    vs["compose"]["include"][0]["concept"].pop()


def _other_template_input(task: dict[str, Any]) -> None:
    task["input"][2]["valueString"] = "PT1H"


def _description_only(ad: dict[str, Any]) -> None:
    ad["description"] = "Something else entirely."


MUTATIONS: dict[str, tuple[str, str, Callable[[dict[str, Any]], None], bool]] = {
    "pong accepted from REMOTE_ROLE instead of REMOTE_ALL": ("ActivityDefinition", PROCESS + "ping", _remote_role, True),
    "startPing practitioner without DSF_ADMIN": ("ActivityDefinition", PROCESS + "ping", _drop_practitioner_role, True),
    "ping-status code renamed": ("CodeSystem", "http://dsf.dev/fhir/CodeSystem/ping-status", _rename_code, True),
    "task-ping allows five inputs": ("StructureDefinition", PROFILE + "task-ping", _loosen, True),
    "pong-status bound to the wrong ValueSet": ("StructureDefinition", PROFILE + "task-ping", _other_binding, True),
    "pong-status ValueSet lost a code": ("ValueSet", "http://dsf.dev/fhir/ValueSet/pong-status", _shorter_compose, True),
    "autostart template interval": ("Task", PROCESS + "pingAutostart/#{version}/task-start-ping-autostart",
                                    _other_template_input, True),
    "only the description changed": ("ActivityDefinition", PROCESS + "ping", _description_only, False),
}


@pytest.mark.parametrize("case", list(MUTATIONS))
def test_the_comparison_notices_a_changed_fact(case: str) -> None:
    require_java()
    type_, url, change, noticed = MUTATIONS[case]
    java_resource = next(r for r in java_resources() if key(r) == (type_, url))
    resource = _ours(type_, url)
    assert facts(resource) == facts(java_resource)
    change(resource)
    assert (facts(resource) != facts(java_resource)) is noticed


# -- the plugin's resources fit its models --------------------------------------------------


def test_activity_definitions_accept_the_messages_the_models_receive() -> None:
    """Every message a process is started or woken by is authorised by its ActivityDefinition,
    and every message a model sends names a profile and process authorised for that message."""
    ads = {r["url"]: r for r in our_resources().values() if r["resourceType"] == "ActivityDefinition"}
    accepted = {url: {(b[0][0], b[1][0]) for b in _authorizations(ad)} for url, ad in ads.items()}
    for name, process_id in PROCESSES.items():
        model = ours(name)
        url = PROCESS + process_id.removeprefix("dsfdev_")
        received = {d.name for element, d in events(model) if type(d).__name__ == "DsfMessageEventDefinition"
                    and element in ("StartEvent", "IntermediateCatchEvent", "EventBasedGateway", "ReceiveTask")}
        assert {m for m, _ in accepted[url]} == received, name
    for name in PROCESSES:
        for spec in ours(name).elements():
            fields = spec.binding.field_values({})
            if "messageName" in fields:
                target = fields["instantiatesCanonical"].removesuffix("|" + VERSION)
                profile = fields["profile"].replace("|" + VERSION, "|#{version}")
                assert (fields["messageName"], profile) in accepted[target]


# ============================================================================ 3. a real mailbox


_PLACEHOLDER = re.compile(r"#\{([^}]*)\}")


def deployed(resource: dict[str, Any], organization: str) -> dict[str, Any]:
    """The resource as the deployment uploads it: placeholders filled, metadata status active."""
    values = {"version": VERSION, "date": DATE, "organization": organization}

    def fill(match: re.Match[str]) -> str:
        return values[match.group(1)]  # an unknown placeholder fails the test with KeyError

    out: dict[str, Any] = json.loads(_PLACEHOLDER.sub(fill, json.dumps(resource)))
    if out["resourceType"] != "Task":
        assert out["status"] == "unknown"  # the deployment decides
        out["status"] = "active"
    return out


def upload_bundle(resources: Iterable[dict[str, Any]], organization: str) -> dict[str, Any]:
    """One transaction with a conditional PUT per resource: url|version, or the draft Task's identifier."""
    entries = []
    for resource in resources:
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

    async def post(self, who: str, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        async with self.http[who].post(self.mb.url(path), json=body, headers=JSON_HEADERS) as response:
            return response.status, await response.json(content_type=None)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def node(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Node]:
    async with MailboxHarness(tmp_path_factory.mktemp("ping-pong-plugin"), remotes={"remote.test": ["DIC"]}) as mb:
        sessions = {who: mb.client(who) for who in ("local.test", "remote.test")}
        try:
            yield Node(mb, sessions)
        finally:
            for session in sessions.values():
                await session.close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def uploaded(node: Node) -> list[dict[str, Any]]:
    status, response = await node.post("local.test", "", upload_bundle(our_resources().values(), node.mb.local))
    assert status == 200, response
    return response["entry"]  # type: ignore[no-any-return]


async def test_mailbox_accepts_every_resource(uploaded: list[dict[str, Any]]) -> None:
    assert [e["response"]["status"] for e in uploaded] == ["201 Created"] * len(our_resources())
    created = {(e["resource"]["resourceType"], e["resource"]["status"]) for e in uploaded}
    assert created == {("ActivityDefinition", "active"), ("CodeSystem", "active"), ("ValueSet", "active"),
                       ("StructureDefinition", "active"), ("Task", "draft")}


async def test_uploading_again_updates_in_place(node: Node, uploaded: list[dict[str, Any]]) -> None:
    status, response = await node.post("local.test", "", upload_bundle(our_resources().values(), node.mb.local))
    assert status == 200, response
    assert [e["response"]["status"] for e in response["entry"]] == ["200 OK"] * len(uploaded)
    assert [e["resource"]["id"] for e in response["entry"]] == [e["resource"]["id"] for e in uploaded]


def _org(identifier: str) -> dict[str, Any]:
    return {"type": "Organization", "identifier": {"system": codes.ORGANIZATION_IDENTIFIER, "value": identifier}}


def _input(system: str, code: str, **value: Any) -> dict[str, Any]:
    return {"type": {"coding": [{"system": system, "code": code}]}, **value}


def message(requester: str, process: str, message_name: str, profile: str, *extra: dict[str, Any]) -> dict[str, Any]:
    """A requested Task as a DSF sender posts it."""
    return {
        "resourceType": "Task",
        "meta": {"profile": [f"{PROFILE}{profile}|{VERSION}"]},
        "instantiatesCanonical": f"{PROCESS}{process}|{VERSION}",
        "status": "requested",
        "intent": "order",
        "authoredOn": "2024-06-01T10:00:00+02:00",
        "requester": _org(requester),
        "restriction": {"recipient": [_org("local.test")]},
        "input": [_input(codes.BPMN_MESSAGE, "message-name", valueString=message_name), *extra],
    }


def keys() -> list[dict[str, Any]]:
    return [_input(codes.BPMN_MESSAGE, "business-key", valueString="0f6b1c0e-7d8e-4a53-9a8e-3c2d1b0a9f01"),
            _input(codes.BPMN_MESSAGE, "correlation-key", valueString="0f6b1c0e-7d8e-4a53-9a8e-3c2d1b0a9f02")]


def ping(requester: str) -> dict[str, Any]:
    """The ping as SendPing sends it: task-ping with its four inputs."""
    endpoint = _input(PING_SYSTEM, "endpoint-identifier", valueReference={
        "type": "Endpoint", "identifier": {"system": codes.ENDPOINT_IDENTIFIER, "value": f"{requester}-endpoint"}})
    return message(requester, "pong", "ping", "task-ping", *keys(), endpoint)


def pong(requester: str) -> dict[str, Any]:
    return message(requester, "ping", "pong", "task-pong", *keys())


def start_ping(requester: str) -> dict[str, Any]:
    return message(requester, "ping", "startPing", "task-start-ping")


def start_autostart(requester: str) -> dict[str, Any]:
    return message(requester, "pingAutostart", "startPingAutostart", "task-start-ping-autostart",
                   _input(PING_SYSTEM, "timer-interval", valueString="PT1H"))


def stop_autostart(requester: str) -> dict[str, Any]:
    return message(requester, "pingAutostart", "stopPingAutostart", "task-stop-ping-autostart")


# (who posts, the Task, expected status) — the decisions the Java ActivityDefinitions make
# (tests/compat/test_ping_pong_authorization.py checks the same with the Java files).
AUTHORIZATION: dict[str, tuple[str, dict[str, Any], int]] = {
    "remote ping to pong": ("remote.test", ping("remote.test"), 201),
    "local ping to pong": ("local.test", ping("local.test"), 201),
    "remote pong to ping": ("remote.test", pong("remote.test"), 201),
    "local startPing": ("local.test", start_ping("local.test"), 201),
    "remote startPing": ("remote.test", start_ping("remote.test"), 403),
    "local startPingAutostart": ("local.test", start_autostart("local.test"), 201),
    "remote startPingAutostart": ("remote.test", start_autostart("remote.test"), 403),
    "local stopPingAutostart": ("local.test", stop_autostart("local.test"), 201),
    "remote stopPingAutostart": ("remote.test", stop_autostart("remote.test"), 403),
    "remote ping with the pong profile": ("remote.test", {**ping("remote.test"),
                                                          "meta": {"profile": [PROFILE + "task-pong|1.0"]}}, 403),
    "remote pong sent to the pong process": ("remote.test", {**pong("remote.test"),
                                                             "instantiatesCanonical": PROCESS + "pong|1.0"}, 403),
    "remote ping to another version": ("remote.test", {**ping("remote.test"),
                                                       "instantiatesCanonical": PROCESS + "pong|1.1"}, 403),
}


@pytest.mark.parametrize("case", list(AUTHORIZATION))
async def test_activity_definitions_authorize_like_java(node: Node, uploaded: list[dict[str, Any]], case: str) -> None:
    who, task, expected = AUTHORIZATION[case]
    status, body = await node.post(who, "Task", task)
    assert status == expected, body
    if expected == 403:
        assert body["resourceType"] == "OperationOutcome" and body["issue"][0]["code"] == "forbidden"
    else:
        assert body["status"] == "requested" and body["requester"] == task["requester"]


@pytest.mark.parametrize("template", sorted(p.stem for p in (FHIR / "Task").glob("*.json")))
async def test_draft_templates_start_their_process_when_sent(node: Node, uploaded: list[dict[str, Any]],
                                                             template: str) -> None:
    """What the UI does with a template: drop the identifier, set requested, post it locally."""
    task = deployed(json.loads((FHIR / "Task" / f"{template}.json").read_text()), node.mb.local)
    del task["identifier"]
    task["status"] = "requested"
    status, body = await node.post("local.test", "Task", task)
    assert status == 201, body
    status, body = await node.post("remote.test", "Task", {**task, "requester": _org("remote.test")})
    assert status == 403, body
