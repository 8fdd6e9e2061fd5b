"""MII data transfer across real networks: a DIC sends project data sets encrypted to a DMS.

Nodes, mailboxes and both sites' FHIR data stores are real servers over TLS on loopback. The
receipt timeout is a setting, short where a test waits for it to run out.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import time
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from dsf_plugin_data_transfer import PLUGIN
from dsf_plugin_data_transfer.keys import PRIVATE_KEY, public_key_bundle

from dsf_core.api.fhir_xml import parse_xml, to_xml
from dsf_core.cli.main import main
from dsf_core.client import FhirClient, FhirClientError
from dsf_core.network import OrgSpec
from dsf_core.testing.data_store import DataStoreServer
from dsf_core.testing.network import Network

MII = "medizininformatik-initiative.de"
SEND = f"http://{MII}/bpe/Process/dataSend|1.0"
START_PROFILE = f"http://{MII}/fhir/StructureDefinition/task-data-send-start|1.0"
DATA_TRANSFER = f"http://{MII}/fhir/CodeSystem/data-transfer"
PROJECT = f"http://{MII}/sid/project-identifier"
ORGANIZATION = "http://dsf.dev/sid/organization-identifier"
TIMEOUT = "DE_MEDIZININFORMATIK_INITIATIVE_DATA_TRANSFER_RECEIPT_TIMEOUT"
CRYPTOGRAPHY_KEY = f"http://{MII}/fhir/CodeSystem/cryptography|public-key"
DIC, DMS = "dic.test", "dms.test"


def zip_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("result.csv", "id,age\n" + "".join(f"{i},{i % 90}\n" for i in range(2000)))
        archive.writestr("README.txt", "synthetic")
    return buffer.getvalue()


CSV = "\ufeffid,diagnosis,age\n".encode() + b"".join(f"{i},I10,{20 + i % 60}\n".encode() for i in range(500))
FHIR_BUNDLE = json.dumps({"resourceType": "Bundle", "type": "collection", "entry": [
    {"resource": {"resourceType": "Patient", "id": f"p{i}", "gender": "female"}} for i in range(20)]}).encode()
MEASURE_REPORT = {"resourceType": "MeasureReport", "status": "complete", "type": "summary",
                  "measure": "http://example.org/fhir/Measure/cohort", "period": {"start": "2026-01-01", "end": "2026-12-31"},
                  "group": [{"population": [{"count": 2}], "measureScore": {"value": 0.75}}]}
ATTACHMENTS = {
    "P-CSV": ("text/csv", CSV),
    "P-ZIP": ("application/zip", zip_bytes()),
    "P-BUNDLE": ("application/fhir+json", FHIR_BUNDLE),
}


@pytest.fixture(scope="module")
def dms_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[rsa.RSAPrivateKey, Path]:
    """The DMS key pair as an operator makes it: ``dsf keys create``."""
    directory = tmp_path_factory.mktemp("dms-key")
    assert main(["keys", "create", str(directory)]) == 0
    path = directory / "dms.key"
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key, path


# -- the scheme, written independently (§2.5) ------------------------------------------------------


def reference_encrypt(public_key: rsa.RSAPublicKey, plaintext: bytes, aad: str) -> bytes:
    aes_key, iv = AESGCM.generate_key(bit_length=256), os.urandom(12)
    return public_key.encrypt(aes_key, padding.PKCS1v15()) + iv + AESGCM(aes_key).encrypt(iv, plaintext, aad.encode())


def reference_decrypt(private_key: rsa.RSAPrivateKey, blob: bytes, aad: str) -> bytes:
    aes_key = private_key.decrypt(blob[:512], padding.PKCS1v15())
    return AESGCM(aes_key).decrypt(blob[512:524], blob[524:], aad.encode())


# -- helpers ---------------------------------------------------------------------------------------


def start_inputs(dms: str, project: str) -> list[dict[str, Any]]:
    return [
        {"type": {"coding": [{"system": DATA_TRANSFER, "code": "dms-identifier"}]},
         "valueReference": {"type": "Organization", "identifier": {"system": ORGANIZATION, "value": dms}}},
        {"type": {"coding": [{"system": DATA_TRANSFER, "code": "project-identifier"}]},
         "valueIdentifier": {"system": PROJECT, "value": project}},
    ]


async def start(net: Network, project: str, dic: str = DIC, dms: str = DMS) -> dict[str, Any]:
    return await net.post_task(dic, net.start_task(dic, SEND, "dataSendStart", profile=START_PROFILE,
                                                   inputs=start_inputs(dms, project)))


async def offer(store: DataStoreServer, project: str, content_type: str, content: bytes) -> None:
    """What a DIC's extraction leaves in its FHIR store: the attachment and a DocumentReference to it."""
    client = store.client()
    binary = await client.create_binary(content, content_type=content_type)
    await client.create({
        "resourceType": "DocumentReference", "status": "current", "date": "2026-11-01T10:00:00+01:00",
        "masterIdentifier": {"system": PROJECT, "value": project},
        "content": [{"attachment": {"contentType": content_type, "url": f"Binary/{binary.id}"}}],
    })


def statuses(task: dict[str, Any]) -> list[tuple[str, str | None]]:
    """(code, error text) of every data-set-status output."""
    out = []
    for output in task.get("output", []):
        if output["type"]["coding"][0] == {"system": DATA_TRANSFER, "code": "data-set-status"}:
            errors = [e["valueString"] for e in output.get("extension", [])]
            out.append((output["valueCoding"]["code"], errors[0] if errors else None))
    return out


def first_input(task: dict[str, Any], code: str) -> Any:
    return next(v for p in task["input"] if p["type"]["coding"][0]["code"] == code
                for k, v in p.items() if k.startswith("value"))


async def raw(client: FhirClient, ref: str) -> tuple[bytes, str]:
    async with client.open_binary(ref) as response:
        return await response.read(), response.headers["Content-Type"]


async def stored_data_set(store: DataStoreServer, project: str, author: str = DIC) -> tuple[dict[str, Any], bytes, str]:
    """The DocumentReference of the project authored by ``author`` in a store and the bytes it points to."""
    client = store.client()
    documents = [d async for d in client.search_all("DocumentReference", {"identifier": f"{PROJECT}|{project}"})
                 if d.get("author", [{}])[0].get("identifier", {}).get("value") == author]
    assert len(documents) == 1, documents
    content, content_type = await raw(client, documents[0]["content"][0]["attachment"]["url"])
    return documents[0], content, content_type


async def until(condition: Callable[[], Awaitable[bool]], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def assert_gone(net: Network, reference: str) -> None:
    """The encrypted Binary is off the DIC's mailbox, its history too."""
    binary = reference.split("/_history/")[0]
    for url in (binary, f"{binary}/_history", reference):
        with pytest.raises(FhirClientError) as gone:
            await net.client(DIC).read_url(url)
        assert gone.value.status in (404, 410), url


@pytest_asyncio.fixture(loop_scope="session")
async def stores(tmp_path: Path) -> AsyncIterator[tuple[DataStoreServer, DataStoreServer]]:
    async with DataStoreServer(tmp_path / "dic-store", auth="basic") as dic, \
            DataStoreServer(tmp_path / "dms-store", auth="bearer") as dms:
        yield dic, dms


def network(tmp_path: Path, stores: tuple[DataStoreServer, DataStoreServer], key_path: Path, timeout: str,
            organizations: list[OrgSpec] | None = None, environ_extra: dict[str, str] | None = None,
            node_settings_extra: dict[str, dict[str, str]] | None = None) -> Network:
    """A DIC and a DMS (each running only its process), each with its data store; the DMS key in the environment."""
    dic_store, dms_store = stores
    return Network(
        tmp_path / "net", parent=MII, plugins=[PLUGIN],
        organizations=organizations or [OrgSpec(DIC, ("DIC",)), OrgSpec(DMS, ("DMS",))],
        data_stores={DIC: {"default": dic_store}, DMS: {"default": dms_store}},
        environ={f"{PRIVATE_KEY}_FILE": str(key_path), TIMEOUT: timeout, **(environ_extra or {})},
        node_settings={DIC: {"DSF_ENGINE_EXCLUDED_PROCESSES": "medizininformatik-initiativede_dataReceive"},
                       DMS: {"DSF_ENGINE_EXCLUDED_PROCESSES": "medizininformatik-initiativede_dataSend"},
                       **(node_settings_extra or {})},
    )


# -- tests -------------------------------------------------------------------------------------------


async def test_csv_zip_and_fhir_bundle_arrive_byte_identical(
    tmp_path: Path, stores: tuple[DataStoreServer, DataStoreServer], dms_key: tuple[rsa.RSAPrivateKey, Path],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("DEBUG")
    dic_store, dms_store = stores
    for project, (content_type, content) in ATTACHMENTS.items():
        await offer(dic_store, project, content_type, content)
    # an attachment that is a FHIR resource of the store (sent as FHIR XML, as the Java plugin does)
    report = await dic_store.client().create(MEASURE_REPORT)
    await dic_store.client().create({
        "resourceType": "DocumentReference", "status": "current",
        "masterIdentifier": {"system": PROJECT, "value": "P-REPORT"},
        "content": [{"attachment": {"contentType": "application/fhir+xml", "url": f"MeasureReport/{report.id}"}}]})
    projects = [*ATTACHMENTS, "P-REPORT"]
    async with network(tmp_path, stores, dms_key[1], "PT60S") as net:
        started = await asyncio.gather(*(start(net, project) for project in projects))
        done = [await net.wait_for_task(DIC, t["id"], timeout=60) for t in started]
        for task in done:
            assert (task["status"], statuses(task)) == ("completed", [("receipt-ok", None)]), task.get("output")
        received = await net.search(DMS, "Task", {"status": "completed"})
        assert len(received) == 4
        for task in received:
            assert task["requester"]["identifier"]["value"] == DIC
            assert statuses(task) == [("receive-ok", None)]
            location = first_output(task, "document-reference-location")
            assert location["reference"].startswith(dms_store.base_url + "/DocumentReference/")
            await assert_gone(net, first_input(task, "data-set-reference")["reference"])
        for project, (content_type, content) in ATTACHMENTS.items():
            document, arrived, arrived_type = await stored_data_set(dms_store, project)
            assert arrived == content and arrived_type.startswith(content_type)
            assert document["masterIdentifier"] == {"system": PROJECT, "value": project}
            assert document["content"][0]["attachment"]["contentType"] == content_type
            assert document["date"] == "2026-11-01T10:00:00+01:00"

        [document] = [d async for d in dms_store.client().search_all("DocumentReference", {"identifier": f"{PROJECT}|P-REPORT"})]
        arrived_report = await dms_store.client().read_url(dms_store.client().url(document["content"][0]["attachment"]["url"]))
        assert arrived_report["resourceType"] == "MeasureReport" and arrived_report["id"] != report.id
        assert {k: arrived_report[k] for k in MEASURE_REPORT} == MEASURE_REPORT

        # the private key is in no log line and no Task
        secret = [line for line in dms_key[1].read_text().splitlines() if "-----" not in line]
        tasks_text = json.dumps([await net.search(org, "Task", {}) for org in (DIC, DMS)])
        for text in (caplog.text, tasks_text):
            assert "PRIVATE KEY" not in text and not any(line in text for line in secret)

        # sending a project again updates its DocumentReference at the DMS
        before, _, _ = await stored_data_set(dms_store, "P-CSV")
        await offer(dic_store, "P-CSV", "text/csv", b"id,age\n1,2\n")  # the DIC's newest data set comes first
        again = await net.wait_for_task(DIC, (await start(net, "P-CSV"))["id"], timeout=60)
        assert statuses(again) == [("receipt-ok", None)]
        after, content, _ = await stored_data_set(dms_store, "P-CSV")
        assert after["id"] == before["id"] and after["meta"]["versionId"] == "2"
        assert content in (CSV, b"id,age\n1,2\n")


def first_output(task: dict[str, Any], code: str) -> Any:
    return next(v for p in task.get("output", []) if p["type"]["coding"][0]["code"] == code
                for k, v in p.items() if k.startswith("value"))


def data_send_task(original: dict[str, Any], reference: str) -> dict[str, Any]:
    """A dataSend Task as the DIC sends it, pointing at another Binary (same business key)."""
    inputs = [p for p in original["input"] if p["type"]["coding"][0]["code"] != "data-set-reference"]
    inputs.append({"type": {"coding": [{"system": DATA_TRANSFER, "code": "data-set-reference"}]},
                   "valueReference": {"type": "Binary", "reference": reference}})
    return {key: original[key] for key in ("meta", "instantiatesCanonical", "intent", "authoredOn", "requester", "restriction")} | {
        "resourceType": "Task", "status": "requested", "meta": {"profile": original["meta"]["profile"]}, "input": inputs}


async def test_tampered_wrong_aad_and_foreign_ciphertexts_reach_the_dms(
    tmp_path: Path, stores: tuple[DataStoreServer, DataStoreServer], dms_key: tuple[rsa.RSAPrivateKey, Path]
) -> None:
    """The DMS's engine is held back while the DIC's dataSend Tasks wait in its mailbox; each is swapped
    for one pointing at a ciphertext made here: tampered, for another sender (AAD), and one written with
    the scheme's own few lines (which must work). The DIC's own ciphertext is read with those lines too."""
    key, key_path = dms_key
    dic_store, dms_store = stores
    for project in ("P-TAMPERED", "P-AAD", "P-FOREIGN", "P-WRONG-KEY"):
        await offer(dic_store, project, "text/csv", CSV)
    work = tmp_path / "work"
    async with network(tmp_path, stores, key_path, "PT60S",
                       environ_extra={"DE_MEDIZININFORMATIK_INITIATIVE_DATA_TRANSFER_WORK_DIRECTORY": str(work)}) as net:
        await net.node(DMS).stop_engine()
        started = {p: await start(net, p) for p in ("P-TAMPERED", "P-AAD", "P-FOREIGN")}

        async def three_waiting() -> bool:
            return len(await net.search(DMS, "Task", {"status": "requested"})) == 3

        await until(three_waiting)
        [dms_org] = await net.search(DIC, "Organization", {"identifier": f"{ORGANIZATION}|{DMS}"})
        dic_client = net.client(DIC)
        originals = []
        for task in await net.search(DMS, "Task", {"status": "requested"}):
            project = first_input(task, "project-identifier")["value"]
            reference = first_input(task, "data-set-reference")["reference"]
            originals.append(reference)
            ours, _ = await raw(dic_client, reference)
            plaintext = reference_decrypt(key, ours, f"{DIC}|{DMS}")  # the DIC's ciphertext, read with the scheme's lines
            bundle = parse_xml(plaintext)
            assert bundle["entry"][0]["resource"]["masterIdentifier"]["value"] == project
            assert base64.b64decode(bundle["entry"][1]["resource"]["data"]) == CSV
            replacement = {
                "P-TAMPERED": ours[:len(ours) // 2] + bytes([ours[len(ours) // 2] ^ 1]) + ours[len(ours) // 2 + 1:],
                "P-AAD": reference_encrypt(key.public_key(), plaintext, f"other.test|{DMS}"),
                "P-FOREIGN": reference_encrypt(key.public_key(), to_xml(bundle), f"{DIC}|{DMS}"),
            }[project]
            created = await dic_client.create_binary(replacement, content_type="application/octet-stream",
                                                     security_context=f"Organization/{dms_org['id']}")
            await net.client(DIC, on=DMS).create(data_send_task(task, f"{dic_client.base_url}/Binary/{created.id}"))
            await net.client(DMS).update({**task, "status": "failed"})
        await net.node(DMS).start_engine()

        done = {p: await net.wait_for_task(DIC, t["id"], timeout=60) for p, t in started.items()}
        assert (done["P-FOREIGN"]["status"], statuses(done["P-FOREIGN"])) == ("completed", [("receipt-ok", None)])
        for project in ("P-TAMPERED", "P-AAD"):
            assert (done[project]["status"], statuses(done[project])) == ("failed", [("receipt-error", "Decrypt data-set failed")])
        at_dms = {first_input(t, "project-identifier")["value"]: t
                  for t in await net.search(DMS, "Task", {}) if first_input(t, "data-set-reference")["reference"] not in originals}
        assert statuses(at_dms["P-FOREIGN"]) == [("receive-ok", None)]
        for project in ("P-TAMPERED", "P-AAD"):
            assert (at_dms[project]["status"], statuses(at_dms[project])) == ("failed", [("receive-error", "Decrypt data-set failed")])
        _, arrived, _ = await stored_data_set(dms_store, "P-FOREIGN")
        assert arrived == CSV
        for reference in originals:
            await assert_gone(net, reference)
        assert list(work.iterdir()) == []  # nothing downloaded or decrypted stays behind

        # a DMS key bundle naming another key than the DMS decrypts with
        other = rsa.generate_private_key(public_exponent=65537, key_size=4096)
        [published] = await net.search(DMS, "Bundle", {"identifier": CRYPTOGRAPHY_KEY})
        await net.client(DMS).update({**public_key_bundle(other.public_key(), DMS, published_at()), "id": published["id"]})
        wrong = await net.wait_for_task(DIC, (await start(net, "P-WRONG-KEY"))["id"], timeout=60)
        assert (wrong["status"], statuses(wrong)) == ("failed", [("receipt-error", "Decrypt data-set failed")])


def published_at() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


async def test_refused_unreachable_and_silent_dms(
    tmp_path: Path, stores: tuple[DataStoreServer, DataStoreServer], dms_key: tuple[rsa.RSAPrivateKey, Path]
) -> None:
    key, key_path = dms_key
    dic_store, _ = stores
    for project in ("P-REFUSED", "P-SILENT", "P-DOWN"):
        await offer(dic_store, project, "text/csv", CSV)
    refusing = "refusing.test"
    async with network(tmp_path, stores, key_path, "PT2S",
                       organizations=[OrgSpec(DIC, ("DIC",)), OrgSpec(DMS, ("DMS",)), OrgSpec(refusing, ("DMS",))],
                       node_settings_extra={refusing: {"DSF_ENGINE_EXCLUDED_PROCESSES": "medizininformatik-initiativede_dataReceive,"
                                                                                         "medizininformatik-initiativede_dataSend"}}) as net:
        # a DMS that published its key but whose ActivityDefinition does not take dataSend (it runs no dataReceive)
        await net.client(refusing).create(public_key_bundle(key.public_key(), refusing, published_at()))
        refused = await net.wait_for_task(DIC, (await start(net, "P-REFUSED", dms=refusing))["id"])
        assert (refused["status"], statuses(refused)) == ("failed", [("not-allowed", "Send data-set failed")])

        await net.node(DMS).stop_engine()  # the DMS's mailbox takes the Task, nobody answers
        silent = await net.wait_for_task(DIC, (await start(net, "P-SILENT"))["id"])
        assert (silent["status"], statuses(silent)) == ("failed", [("receipt-missing", None)])
        [waiting] = await net.search(DMS, "Task", {"status": "requested"})
        await assert_gone(net, first_input(waiting, "data-set-reference")["reference"])

        await net.stop_node(DMS)
        down = await net.wait_for_task(DIC, (await start(net, "P-DOWN"))["id"])
        assert (down["status"], statuses(down)) == ("failed", [("not-reachable", "Send data-set failed")])
        assert await net.search(DIC, "Binary", {}) == []  # every encrypted data set deleted


async def test_one_organisation_as_dic_and_dms(
    tmp_path: Path, stores: tuple[DataStoreServer, DataStoreServer], dms_key: tuple[rsa.RSAPrivateKey, Path]
) -> None:
    both = "both.test"
    dic_store, _ = stores
    await offer(dic_store, "P-SELF", "application/zip", ATTACHMENTS["P-ZIP"][1])
    async with Network(tmp_path / "net", parent=MII, plugins=[PLUGIN], organizations=[OrgSpec(both, ("DIC", "DMS"))],
                       data_stores={both: {"default": dic_store}},
                       environ={f"{PRIVATE_KEY}_FILE": str(dms_key[1]), TIMEOUT: "PT60S"}) as net:
        done = await net.wait_for_task(both, (await start(net, "P-SELF", dic=both, dms=both))["id"], timeout=60)
        assert (done["status"], statuses(done)) == ("completed", [("receipt-ok", None)])
        _, arrived, _ = await stored_data_set(dic_store, "P-SELF", author=both)
        assert arrived == ATTACHMENTS["P-ZIP"][1]
