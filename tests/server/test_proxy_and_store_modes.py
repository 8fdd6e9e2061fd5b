"""Reverse-proxy mode (certificate from a trusted header), data-store mode auth, body size limit."""

from __future__ import annotations

import base64
from pathlib import Path
from urllib.parse import quote

from dsf_core.fhir import codes
from dsf_core.testing.mailbox import MailboxHarness

JSON = {"Accept": "application/fhir+json"}


def header_of(mb: MailboxHarness, identifier: str) -> str:
    return quote(mb.orgs[identifier].client.cert_path.read_text())


async def test_certificate_header_from_trusted_proxy_identifies(tmp_path: Path) -> None:
    async with MailboxHarness(tmp_path, trusted_proxies=["127.0.0.1/32"]) as mb:
        async with mb.client(None) as http:
            response = await http.get(mb.url("Task"), headers=JSON | {"X-ClientCert": header_of(mb, "remote.test")})
            assert response.status == 200
            unknown = await http.get(mb.url("Task"), headers=JSON | {"X-ClientCert": header_of(mb, "unknown.test")})
            assert unknown.status == 401
            missing = await http.get(mb.url("Task"), headers=JSON)
            assert missing.status == 401 and (await missing.json())["issue"][0]["code"] == "login"
            garbage = await http.get(mb.url("Task"), headers=JSON | {"X-ClientCert": "not a certificate"})
            assert garbage.status == 401


async def test_certificate_header_from_untrusted_address_is_ignored(tmp_path: Path) -> None:
    async with MailboxHarness(tmp_path, trusted_proxies=["10.0.0.0/8"]) as mb:
        async with mb.client(None) as http:
            response = await http.get(mb.url("Task"), headers=JSON | {"X-ClientCert": header_of(mb, "local.test")})
            assert response.status == 401


async def test_store_mode_basic_auth(tmp_path: Path) -> None:
    auth = {"store_auth": "basic", "store_username": "reader", "store_password": "pw"}
    async with MailboxHarness(tmp_path, mode="store", auth_overrides=auth) as mb:
        good = {"Authorization": "Basic " + base64.b64encode(b"reader:pw").decode()}
        bad = {"Authorization": "Basic " + base64.b64encode(b"reader:wrong").decode()}
        patient = {"resourceType": "Patient", "identifier": [{"system": "urn:p", "value": "1"}]}
        observation = {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "718-7"}]},
            "subject": {"reference": "Patient/x"},
        }
        async with mb.client(None) as http:
            assert (await http.post(mb.url("Patient"), json=patient, headers=JSON | bad)).status == 401
            created = await http.post(mb.url("Patient"), json=patient, headers=JSON | good)
            assert created.status == 201  # no read-access tag needed in store mode
            assert (await http.post(mb.url("Observation"), json=observation, headers=JSON | good)).status == 201
            found = await (await http.get(mb.url("Observation?code=http://loinc.org|718-7"), headers=JSON | good)).json()
            assert found["total"] == 1


async def test_store_mode_bearer_auth(tmp_path: Path) -> None:
    auth = {"store_auth": "bearer", "store_bearer_token": "tok"}
    async with MailboxHarness(tmp_path, mode="store", auth_overrides=auth) as mb:
        async with mb.client(None) as http:
            assert (await http.get(mb.url("Patient"), headers=JSON)).status == 401
            assert (await http.get(mb.url("Patient"), headers=JSON | {"Authorization": "Bearer tok"})).status == 200


async def test_request_body_limit_gives_413(tmp_path: Path) -> None:
    async with MailboxHarness(tmp_path, server_overrides={"max_body_bytes": 10_000}) as mb:
        big = {
            "resourceType": "CodeSystem",
            "meta": {"tag": [{"system": codes.READ_ACCESS_TAG, "code": "ALL"}]},
            "url": "http://x/cs",
            "version": "1",
            "status": "active",
            "content": "complete",
            "description": "x" * 20_000,
        }
        async with mb.client("local.test") as http:
            response = await http.post(mb.url("CodeSystem"), json=big, headers=JSON)
            assert response.status == 413
            assert (await response.json())["issue"][0]["code"] == "too-costly"


async def test_store_mode_update_as_create_loads_generated_data(tmp_path: Path) -> None:
    # A data store takes PUT Type/id for a new id (as Blaze and HAPI do): `dsf data generate` output loads over HTTP.
    from dsf_core.data import DatasetSpec, generate, transaction_bundle

    auth = {"store_auth": "bearer", "store_bearer_token": "tok"}
    headers = JSON | {"Authorization": "Bearer tok"}
    dataset = generate(DatasetSpec(patients=3, seed=5))
    async with MailboxHarness(tmp_path / "store", mode="store", auth_overrides=auth) as mb:
        async with mb.client(None) as http:
            patient = {"resourceType": "Patient", "id": "p-new", "gender": "female"}
            first = await http.put(mb.url("Patient/p-new"), json=patient, headers=headers)
            assert first.status == 201
            again = await http.put(mb.url("Patient/p-new"), json=patient, headers=headers)
            assert again.status == 200 and again.headers["ETag"] == 'W/"2"'
            missing = await http.put(mb.url("Patient/p-other"), json=patient | {"id": "p-other"},
                                     headers=headers | {"If-Match": 'W/"1"'})
            assert missing.status == 412
            bundle = transaction_bundle(dataset.resources())
            loaded = await http.post(mb.url(""), json=bundle, headers=headers)
            assert loaded.status == 200, await loaded.text()
            statuses = {e["response"]["status"] for e in (await loaded.json())["entry"]}
            assert statuses == {"201 Created"}
            total = await (await http.get(mb.url("Patient?_summary=count"), headers=headers)).json()
            assert total["total"] == 3 + 1
    async with MailboxHarness(tmp_path / "dsf") as mb, mb.client("local.test") as http:
        tagged = {"resourceType": "Patient", "id": "p-new", "meta": {"tag": [{"system": codes.READ_ACCESS_TAG, "code": "ALL"}]}}
        refused = await http.put(mb.url("Patient/p-new"), json=tagged, headers=JSON)
        assert refused.status == 405  # the DSF mailbox keeps refusing update as create
