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
ATTACHMENTS = {
    "P-CSV": ("text/csv", CSV),
    "P-ZIP": ("application/zip", zip_bytes()),
    "P-BUNDLE": ("application/fhir+json", FHIR_BUNDLE),
}


@pytest.fixture(scope="module")
def dms_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[rsa.RSAPrivateKey, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=4096)
    path = tmp_path_factory.mktemp("dms-key") / "dms.key"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)
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
            organizations: list[OrgSpec] | None = None, **kwargs: Any) -> Network:
    dic_store, dms_store = stores
    return Network(
        tmp_path / "net", parent=MII, plugins=[PLUGIN],
        organizations=organizations or [OrgSpec(DIC, ("DIC",)), OrgSpec(DMS, ("DMS",))],
        data_stores={DIC: {"default": dic_store}, DMS: {"default": dms_store}},
        environ={f"{PRIVATE_KEY}_FILE": str(key_path), TIMEOUT: timeout},
        node_settings={DIC: {"DSF_ENGINE_EXCLUDED_PROCESSES": "medizininformatik-initiativede_dataReceive"},
                       DMS: {"DSF_ENGINE_EXCLUDED_PROCESSES": "medizininformatik-initiativede_dataSend"}},
        **kwargs,
    )


# -- tests -------------------------------------------------------------------------------------------


async def test_csv_zip_and_fhir_bundle_arrive_byte_identical(
    tmp_path: Path, stores: tuple[DataStoreServer, DataStoreServer], dms_key: tuple[rsa.RSAPrivateKey, Path]
) -> None:
    dic_store, dms_store = stores
    for project, (content_type, content) in ATTACHMENTS.items():
        await offer(dic_store, project, content_type, content)
    async with network(tmp_path, stores, dms_key[1], "PT60S") as net:
        started = await asyncio.gather(*(start(net, project) for project in ATTACHMENTS))
        done = [await net.wait_for_task(DIC, t["id"], timeout=60) for t in started]
        for task in done:
            assert (task["status"], statuses(task)) == ("completed", [("receipt-ok", None)]), task.get("output")
        received = await net.search(DMS, "Task", {"status": "completed"})
        assert len(received) == 3
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
