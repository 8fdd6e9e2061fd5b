"""Uniqueness under concurrent writers: 20 clients race for the same resource, exactly one wins."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from dsf_core.fhir import codes
from dsf_core.testing.mailbox import MailboxHarness

JSON = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
ALL = [{"system": codes.READ_ACCESS_TAG, "code": "ALL"}]


async def _race(mb: MailboxHarness, requests: list[tuple[str, str, dict[str, Any], dict[str, str]]]) -> list[int]:
    clients = [mb.client("local.test") for _ in requests]
    try:
        gate = asyncio.Event()

        async def one(i: int) -> int:
            method, path, body, headers = requests[i]
            await gate.wait()
            response = await clients[i].request(method, mb.url(path), json=body, headers=JSON | headers)
            await response.read()
            return response.status

        # warm up every connection so the TLS handshakes do not serialise the race
        for c in clients:
            await (await c.get(mb.url("metadata"))).read()
        tasks = [asyncio.ensure_future(one(i)) for i in range(len(requests))]
        gate.set()
        return list(await asyncio.gather(*tasks))
    finally:
        for c in clients:
            await c.close()


async def _count(mb: MailboxHarness, query: str) -> int:
    async with mb.client("local.test") as http:
        response = await http.get(mb.url(query), headers=JSON)
        return int((await response.json())["total"])


async def test_conditional_create_from_20_clients_leaves_one(tmp_path: Path, database_url: str) -> None:
    async with MailboxHarness(tmp_path, database_url=database_url) as mb:
        patient = {"resourceType": "Patient", "meta": {"tag": ALL}, "identifier": [{"system": "urn:test", "value": "p-1"}]}
        statuses = await _race(mb, [("POST", "Patient", patient, {"If-None-Exist": "identifier=urn:test|p-1"})] * 20)
        assert statuses.count(201) == 1
        assert set(statuses) <= {200, 201}
        assert await _count(mb, "Patient?identifier=urn:test|p-1") == 1


async def test_unique_url_version_from_20_clients_leaves_one(tmp_path: Path, database_url: str) -> None:
    async with MailboxHarness(tmp_path, database_url=database_url) as mb:
        cs = {
            "resourceType": "CodeSystem",
            "meta": {"tag": ALL},
            "url": "http://test.org/fhir/CodeSystem/race",
            "version": "1.0",
            "status": "active",
            "content": "complete",
        }
        statuses = await _race(mb, [("POST", "CodeSystem", cs, {})] * 20)
        assert statuses.count(201) == 1
        assert statuses.count(403) == 19
        assert await _count(mb, "CodeSystem?url=http://test.org/fhir/CodeSystem/race") == 1


async def test_unique_organization_identifier_from_20_clients_leaves_one(tmp_path: Path, database_url: str) -> None:
    async with MailboxHarness(tmp_path, database_url=database_url) as mb:
        org = {
            "resourceType": "Organization",
            "meta": {"tag": ALL},
            "identifier": [{"system": codes.ORGANIZATION_IDENTIFIER, "value": "race.test"}],
            "active": True,
        }
        statuses = await _race(mb, [("POST", "Organization", org, {})] * 20)
        assert statuses.count(201) == 1
        assert await _count(mb, f"Organization?identifier={codes.ORGANIZATION_IDENTIFIER}|race.test") == 1


async def test_concurrent_updates_of_one_resource_keep_a_linear_history(tmp_path: Path, database_url: str) -> None:
    async with MailboxHarness(tmp_path, database_url=database_url) as mb:
        async with mb.client("local.test") as http:
            created = await (await http.post(mb.url("Patient"), json={"resourceType": "Patient", "meta": {"tag": ALL}}, headers=JSON)).json()
        pid = created["id"]
        body = {"resourceType": "Patient", "id": pid, "meta": {"tag": ALL}, "active": True}
        statuses = await _race(mb, [("PUT", f"Patient/{pid}", body, {})] * 20)
        assert statuses == [200] * 20
        async with mb.client("local.test") as http:
            history = await (await http.get(mb.url(f"Patient/{pid}/_history?_count=100"), headers=JSON)).json()
        versions = sorted(int(e["resource"]["meta"]["versionId"]) for e in history["entry"])
        assert versions == list(range(1, 22))


async def test_measure_and_library_need_no_url_version_and_are_not_unique(tmp_path: Path) -> None:
    # As the Java DSF: Library, Measure and Questionnaire have no unique criteria (the FDPG posts
    # feasibility Measures and Libraries without version, the Library url a urn:uuid).
    async with MailboxHarness(tmp_path) as mb:
        library = {"resourceType": "Library", "meta": {"tag": ALL}, "url": "urn:uuid:9b6e5b4a-0b4c-4c36-9c0a-3c1c1d0e5f11",
                   "status": "active", "type": {"coding": [{"code": "logic-library"}]}}
        measure = {"resourceType": "Measure", "meta": {"tag": ALL}, "status": "active"}
        statuses = await _race(mb, [("POST", "Library", library, {}), ("POST", "Library", library, {}),
                                    ("POST", "Measure", measure, {})])
        assert statuses == [201, 201, 201]
