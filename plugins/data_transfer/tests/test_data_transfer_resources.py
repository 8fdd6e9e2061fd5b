"""The data transfer plugin's BPMN models and FHIR resources, and the DMS key published at deployment.

1. The models load with the engine's parser, bind exactly the plugin's activities and send the
   Java plugin's messages with its profiles and process URLs.
2. The resources state the Java plugin's facts: codes, ValueSets, Task profiles, authorisations.
3. A real mailbox takes them as the deployment uploads them (twice: conditional updates), and its
   ActivityDefinitions authorise a DIC's dataSend at a DMS and nothing else.
4. A node running dataReceive with a key publishes its public-key Bundle, and replaces it when
   the key changes.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from dsf_plugin_data_transfer import PLUGIN, keys

from dsf_core.bpe.deployment import placeholders_for, plugin_resources, resource_upload_bundle
from dsf_core.bpe.parser import load_bpmn
from dsf_core.client import ClientFactory, FhirClientError
from dsf_core.fhir import codes
from dsf_core.network import OrgSpec, init_network
from dsf_core.node import Node
from dsf_core.settings import load_settings
from dsf_core.testing.mailbox import MailboxHarness

SRC = Path(__file__).resolve().parents[1] / "src" / "dsf_plugin_data_transfer"
MII = "http://medizininformatik-initiative.de"
SEND, RECEIVE = "medizininformatik-initiativede_dataSend", "medizininformatik-initiativede_dataReceive"
PARENT = "medizininformatik-initiative.de"


def resources() -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted((SRC / "fhir").rglob("*.json"))]


def by_url(url: str) -> dict[str, Any]:
    [found] = [r for r in resources() if r.get("url") == url.split("|")[0]]
    return found


# ============================================================================ 1. models

MODELS = {
    "send": (SEND, ("dataSendStart",), {"ReadData", "ValidateData", "CreateBundle", "ReadPublicKey", "EncryptAndStoreData",
                                        "SendData", "HandleErrorSend", "StoreReceipt", "DeleteData"}),
    "receive": (RECEIVE, ("dataSend",), {"DownloadData", "DecryptData", "ValidateData", "InsertData", "HandleErrorReceive",
                                         "DeleteTemporaryData", "SelectTargetDic", "SendReceipt"}),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_models_load_and_bind_the_plugins_activities(name: str) -> None:
    process_id, starts, classes = MODELS[name]
    model = load_bpmn(SRC / "bpe" / f"{name}.bpmn", placeholders={"version": "1.0"})
    assert (model.process_id, model.version, model.start_messages) == (process_id, "1.0", starts)
    assert model.class_names() == {f"dsf_plugin_data_transfer.{name}.{c}" for c in classes}
    assert sorted(PLUGIN.fhir_resources) == [RECEIVE, SEND]


@pytest.mark.parametrize(("name", "message", "profile", "process"), [
    ("send", "dataSend", "task-data-send", "dataReceive"),
    ("receive", "dataStatus", "task-data-status", "dataSend"),
])
def test_models_send_the_java_messages(name: str, message: str, profile: str, process: str) -> None:
    text = (SRC / "bpe" / f"{name}.bpmn").read_text()
    assert f"<camunda:string>{message}</camunda:string>" in text
    assert f"<camunda:string>{MII}/fhir/StructureDefinition/{profile}|#{{version}}</camunda:string>" in text
    assert f"<camunda:string>{MII}/bpe/Process/{process}|#{{version}}</camunda:string>" in text


def test_the_receipt_timer_is_a_setting() -> None:
    assert "<bpmn:timeDuration xsi:type=\"bpmn:tFormalExpression\">${receiptTimeout}</bpmn:timeDuration>" in (
        SRC / "bpe" / "send.bpmn").read_text()


# ============================================================================ 2. facts


def test_resources_are_versioned_tagged_and_listed() -> None:
    listed = {path for paths in PLUGIN.fhir_resources.values() for path in paths}
    assert listed == {str(p.relative_to(SRC)) for p in (SRC / "fhir").rglob("*.json")}
    for resource in resources():
        text = json.dumps(resource)
        assert set(re.findall(r"#\{([^}]*)\}", text)) <= {"version", "date", "organization"}
        if resource["resourceType"] == "Task":
            assert resource["status"] == "draft"
            continue
        assert resource["status"] == "unknown" and resource["date"] == "#{date}"
        assert resource["meta"]["tag"] == [{"system": codes.READ_ACCESS_TAG, "code": "ALL"}]
        assert resource["resourceType"] == "NamingSystem" or resource["version"] == "#{version}"


def test_code_systems_and_value_sets() -> None:
    statuses = ["not-allowed", "not-reachable", "receipt-missing", "receipt-ok", "receipt-error", "receive-ok", "receive-error"]
    assert [c["code"] for c in by_url(f"{MII}/fhir/CodeSystem/data-set-status")["concept"]] == statuses
    assert [c["code"] for c in by_url(f"{MII}/fhir/CodeSystem/data-transfer")["concept"]] == [
        "dms-identifier", "project-identifier", "data-set-reference", "document-reference-location", "data-set-status"]
    assert [c["code"] for c in by_url(f"{MII}/fhir/CodeSystem/cryptography")["concept"]] == ["public-key"]
    for value_set, expected in (("data-set-status-send", statuses[:5]), ("data-set-status-receive", statuses[5:])):
        [include] = by_url(f"{MII}/fhir/ValueSet/{value_set}")["compose"]["include"]
        assert include["system"] == f"{MII}/fhir/CodeSystem/data-set-status"
        assert [c["code"] for c in include["concept"]] == expected
    [naming_system] = [r for r in resources() if r["resourceType"] == "NamingSystem"]
    assert naming_system["uniqueId"] == [{"type": "other", "value": f"{MII}/sid/project-identifier"}]


def _elements(url: str) -> dict[str, dict[str, Any]]:
    return {e["id"]: e for e in by_url(url)["differential"]["element"]}


@pytest.mark.parametrize(("profile", "process", "message", "inputs", "slices"), [
    ("task-data-send-start", "dataSend", "dataSendStart", ("3", "4"), {"dms-identifier": (1, "1"), "project-identifier": (1, "1")}),
    ("task-data-send", "dataReceive", "dataSend", ("3", "4"), {"project-identifier": (1, "1"), "data-set-reference": (1, "1")}),
    ("task-data-status", "dataSend", "dataStatus", ("3", "3"), {"data-set-status": (1, None)}),
])
def test_task_profiles(profile: str, process: str, message: str, inputs: tuple[str, str], slices: dict[str, Any]) -> None:
    elements = _elements(f"{MII}/fhir/StructureDefinition/{profile}")
    assert elements["Task.instantiatesCanonical"]["fixedCanonical"] == f"{MII}/bpe/Process/{process}|#{{version}}"
    assert elements["Task.input:message-name.value[x]"]["fixedString"] == message
    assert (str(elements["Task.input"]["min"]), elements["Task.input"]["max"]) == inputs
    assert elements["Task.input:correlation-key"]["max"] == "0"
    for name, (low, high) in slices.items():
        assert (elements[f"Task.input:{name}"].get("min"), elements[f"Task.input:{name}"].get("max")) == (low, high)
        assert elements[f"Task.input:{name}.type.coding.code"]["fixedCode"] == name
    status = "Task.input:data-set-status" if profile == "task-data-status" else "Task.output:data-set-status"
    extension = elements[f"{status}.extension:extension-data-set-status-error"]
    assert extension["type"][0]["profile"][0].startswith(f"{MII}/fhir/StructureDefinition/extension-data-set-status-error")
    value_set = {"task-data-send": "receive"}.get(profile, "send")
    assert elements[f"{status}.value[x].code"]["binding"]["valueSet"] == f"{MII}/fhir/ValueSet/data-set-status-{value_set}|#{{version}}"


def _authorizations(url: str) -> dict[str, dict[str, list[tuple[str, str | None]]]]:
    """message name → requester/recipient → (code, role) of an ActivityDefinition."""
    out: dict[str, dict[str, list[tuple[str, str | None]]]] = {}
    for block in by_url(url)["extension"]:
        parts = block["extension"]
        message = next(p["valueString"] for p in parts if p["url"] == "message-name")
        entry = out.setdefault(message, {"requester": [], "recipient": [], "profile": []})
        for part in parts:
            if part["url"] == "task-profile":
                entry["profile"].append((part["valueCanonical"], None))
            elif part["url"] in ("requester", "recipient"):
                coding = part["valueCoding"]
                role_parts = coding["extension"][0]["extension"]
                parent = next(p["valueIdentifier"]["value"] for p in role_parts if p["url"] == "parent-organization")
                assert parent == PARENT
                role = next(p["valueCoding"]["code"] for p in role_parts if p["url"] == "organization-role")
                entry[part["url"]].append((coding["code"], role))
    return out


def test_activity_definitions_authorise_as_the_java_plugin() -> None:
    send = _authorizations(f"{MII}/bpe/Process/dataSend")
    assert send["dataSendStart"] == {"requester": [("LOCAL_ROLE", "DIC"), ("LOCAL_ROLE_PRACTITIONER", "DIC")],
                                     "recipient": [("LOCAL_ROLE", "DIC")],
                                     "profile": [(f"{MII}/fhir/StructureDefinition/task-data-send-start|#{{version}}", None)]}
    assert send["dataStatus"] == {"requester": [("LOCAL_ROLE", "DMS"), ("REMOTE_ROLE", "DMS")], "recipient": [("LOCAL_ROLE", "DIC")],
                                  "profile": [(f"{MII}/fhir/StructureDefinition/task-data-status|#{{version}}", None)]}
    receive = _authorizations(f"{MII}/bpe/Process/dataReceive")
    assert receive == {"dataSend": {"requester": [("LOCAL_ROLE", "DIC"), ("REMOTE_ROLE", "DIC")], "recipient": [("LOCAL_ROLE", "DMS")],
                                    "profile": [(f"{MII}/fhir/StructureDefinition/task-data-send|#{{version}}", None)]}}


def test_the_start_task_template() -> None:
    [task] = [r for r in resources() if r["resourceType"] == "Task"]
    assert task["identifier"] == [{"system": codes.TASK_IDENTIFIER, "value": f"{MII}/bpe/Process/dataSend/#{{version}}/dataSendStart"}]
    assert task["meta"]["profile"] == [f"{MII}/fhir/StructureDefinition/task-data-send-start|#{{version}}"]
    assert [p["type"]["coding"][0]["code"] for p in task["input"]] == ["message-name", "dms-identifier", "project-identifier"]


# ============================================================================ 3. a real mailbox


def _task(requester: str, recipient: str, message: str, profile: str, process: str) -> dict[str, Any]:
    def org(identifier: str) -> dict[str, Any]:
        return {"type": "Organization", "identifier": {"system": codes.ORGANIZATION_IDENTIFIER, "value": identifier}}
    return {"resourceType": "Task", "meta": {"profile": [f"{MII}/fhir/StructureDefinition/{profile}|1.0"]},
            "instantiatesCanonical": f"{MII}/bpe/Process/{process}|1.0", "status": "requested", "intent": "order",
            "authoredOn": "2026-11-23T10:00:00Z", "requester": org(requester), "restriction": {"recipient": [org(recipient)]},
            "input": [{"type": {"coding": [{"system": codes.BPMN_MESSAGE, "code": "message-name"}]}, "valueString": message},
                      {"type": {"coding": [{"system": codes.BPMN_MESSAGE, "code": "business-key"}]}, "valueString": str(uuid.uuid4())}]}


async def test_a_dms_mailbox_takes_the_resources_and_authorises_dic_data_only(tmp_path: Path) -> None:
    async with MailboxHarness(tmp_path, local="dms.test", local_roles=["DMS"], parent=PARENT,
                              remotes={"dic.test": ["DIC"], "hrp.test": ["HRP"]}) as mb:
        placeholders = placeholders_for(PLUGIN, "dms.test", {})
        uploaded = [r for process in (SEND, RECEIVE) for r in plugin_resources(PLUGIN, process, placeholders, status="active")]
        unique = list({(r["resourceType"], r.get("url") or r.get("name") or json.dumps(r.get("identifier"))): r
                       for r in uploaded}.values())
        async with ClientFactory(mb.ssl_context("dms.test")) as local, ClientFactory(mb.ssl_context("dic.test")) as dic, \
                ClientFactory(mb.ssl_context("hrp.test")) as hrp:
            for _ in range(2):  # the second start updates what the first created
                reply = await local.client(mb.base_url).transaction(resource_upload_bundle(unique))
                assert all(e["response"]["status"].startswith(("200", "201")) for e in reply["entry"]), reply
            data_send = ("dataSend", "task-data-send", "dataReceive")
            assert (await dic.client(mb.base_url).create(_task("dic.test", "dms.test", *data_send))).status == 201
            for client, task in ((hrp, _task("hrp.test", "dms.test", *data_send)),
                                 (dic, _task("dic.test", "dms.test", "dataSendStart", "task-data-send-start", "dataSend"))):
                with pytest.raises(FhirClientError) as refused:
                    await client.client(mb.base_url).create(task)
                assert refused.value.status == 403


# ============================================================================ 4. the DMS key at deployment


def _pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


async def _published(tmp_path: Path, environ: dict[str, str], excluded: Sequence[str] = ()) -> list[dict[str, Any]]:
    layout_dir = tmp_path / "net"
    if not (layout_dir / "network.toml").exists():
        init_network(layout_dir, parent=PARENT, organizations=[OrgSpec("dms.test", ("DMS",))])
    from dsf_core.network import load_network

    config = load_network(layout_dir).organizations[0].config
    node = Node(load_settings(config, environ={"DSF_ENGINE_EXCLUDED_PROCESSES": ",".join(excluded)}),
                plugins=[PLUGIN], environ=environ)
    await node.start()
    try:
        assert node.engine is not None
        found = await node.engine.api.fhir.local().search("Bundle", {"identifier": keys.PUBLIC_KEY_IDENTIFIER})
        return [e["resource"] for e in found.get("entry", [])]
    finally:
        await node.stop()


async def test_the_dms_publishes_its_key_and_replaces_it_when_it_changes(tmp_path: Path) -> None:
    first, second = (rsa.generate_private_key(public_exponent=65537, key_size=4096) for _ in range(2))
    assert await _published(tmp_path, {keys.PRIVATE_KEY: _pem(first)}, excluded=[RECEIVE]) == []  # no dataReceive, no key
    [bundle] = await _published(tmp_path, {keys.PRIVATE_KEY: _pem(first)})
    assert keys.public_key_hash(keys.public_key_from_bundle(bundle)) == keys.public_key_hash(first.public_key())
    [same] = await _published(tmp_path, {keys.PRIVATE_KEY: _pem(first)})
    assert same["meta"]["versionId"] == bundle["meta"]["versionId"] == "1"
    [replaced] = await _published(tmp_path, {keys.PRIVATE_KEY: _pem(second)})
    assert replaced["id"] == bundle["id"] and replaced["meta"]["versionId"] == "2"
    assert keys.public_key_hash(keys.public_key_from_bundle(replaced)) == keys.public_key_hash(second.public_key())
    assert await _published(tmp_path, {}) == [replaced]  # a node without a key leaves it alone
