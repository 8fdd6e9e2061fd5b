"""Batch and transaction Bundles: urn:uuid resolution, conditional references, all-or-nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dsf_core.fhir import codes
from dsf_core.testing.mailbox import MailboxHarness

JSON = {"Accept": "application/fhir+json"}
ALL = [{"system": codes.READ_ACCESS_TAG, "code": "ALL"}]


def org(identifier: str, endpoint_ref: str | None = None) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Organization",
        "meta": {"tag": ALL},
        "identifier": [{"system": codes.ORGANIZATION_IDENTIFIER, "value": identifier}],
        "active": True,
    }
    if endpoint_ref:
        resource["endpoint"] = [{"reference": endpoint_ref}]
    return resource


def endpoint(identifier: str, org_ref: str) -> dict[str, Any]:
    return {
        "resourceType": "Endpoint",
        "meta": {"tag": ALL},
        "identifier": [{"system": codes.ENDPOINT_IDENTIFIER, "value": identifier}],
        "status": "active",
        "connectionType": {"system": codes.ENDPOINT_CONNECTION_TYPE, "code": "hl7-fhir-rest"},
        "managingOrganization": {"reference": org_ref},
        "payloadType": [{"text": "Task"}],
        "address": f"https://{identifier}/fhir",
    }


async def post(mb: MailboxHarness, bundle: dict[str, Any]) -> tuple[int, Any]:
    async with mb.client("local.test") as http:
        response = await http.post(mb.url(), json=bundle, headers=JSON)
        return response.status, await response.json()


async def count(mb: MailboxHarness, query: str) -> int:
    async with mb.client("local.test") as http:
        return int((await (await http.get(mb.url(query), headers=JSON)).json())["total"])


async def test_transaction_resolves_urn_uuids_in_any_order(tmp_path: Path, database_url: str) -> None:
    async with MailboxHarness(tmp_path, database_url=database_url) as mb:
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "fullUrl": "urn:uuid:11111111-1111-1111-1111-111111111111",
                    "resource": org("new.test", "urn:uuid:22222222-2222-2222-2222-222222222222"),
                    "request": {"method": "POST", "url": "Organization"},
                },
                {
                    "fullUrl": "urn:uuid:22222222-2222-2222-2222-222222222222",
                    "resource": endpoint("new.test", "urn:uuid:11111111-1111-1111-1111-111111111111"),
                    "request": {"method": "POST", "url": "Endpoint"},
                },
            ],
        }
        status, response = await post(mb, bundle)
        assert status == 200, response
        assert response["type"] == "transaction-response"
        assert [e["response"]["status"] for e in response["entry"]] == ["201 Created", "201 Created"]
        organization, ep = response["entry"][0]["resource"], response["entry"][1]["resource"]
        assert organization["endpoint"][0]["reference"] == f"Endpoint/{ep['id']}"
        assert ep["managingOrganization"]["reference"] == f"Organization/{organization['id']}"


async def test_transaction_is_all_or_nothing(tmp_path: Path, database_url: str) -> None:
    async with MailboxHarness(tmp_path, database_url=database_url) as mb:
        before = await count(mb, "Organization")
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {"resource": org("good.test"), "request": {"method": "POST", "url": "Organization"}},
                # duplicate identifier of an allow-listed organisation: refused (403) → nothing is written
                {"resource": org("remote.test"), "request": {"method": "POST", "url": "Organization"}},
            ],
        }
        status, outcome = await post(mb, bundle)
        assert status == 403 and outcome["issue"][0]["code"] == "forbidden"
        assert "entry 1" in outcome["issue"][0]["diagnostics"]
        assert await count(mb, "Organization") == before


async def test_conditional_references_and_conditional_put(tmp_path: Path, database_url: str) -> None:
    async with MailboxHarness(tmp_path, database_url=database_url) as mb:
        conditional = f"Organization?identifier={codes.ORGANIZATION_IDENTIFIER}|remote.test"
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "resource": endpoint("second.remote.test", conditional),
                    "request": {"method": "PUT", "url": f"Endpoint?identifier={codes.ENDPOINT_IDENTIFIER}|second.remote.test"},
                }
            ],
        }
        for expected in ("201 Created", "200 OK"):
            status, response = await post(mb, bundle)
            assert status == 200, response
            assert response["entry"][0]["response"]["status"] == expected
        reference = response["entry"][0]["resource"]["managingOrganization"]["reference"]
        assert reference.startswith("Organization/") and "?" not in reference
        assert await count(mb, f"Endpoint?identifier={codes.ENDPOINT_IDENTIFIER}|second.remote.test") == 1

        bad = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "resource": endpoint("third.test", f"Organization?identifier={codes.ORGANIZATION_IDENTIFIER}|nobody"),
                    "request": {"method": "POST", "url": "Endpoint"},
                }
            ],
        }
        status, outcome = await post(mb, bad)
        assert status == 412 and outcome["resourceType"] == "OperationOutcome"


async def test_batch_entries_fail_independently(tmp_path: Path, database_url: str) -> None:
    async with MailboxHarness(tmp_path, database_url=database_url) as mb:
        bundle = {
            "resourceType": "Bundle",
            "type": "batch",
            "entry": [
                {"resource": org("batch-one.test"), "request": {"method": "POST", "url": "Organization"}},
                {"resource": org("remote.test"), "request": {"method": "POST", "url": "Organization"}},
                {"request": {"method": "GET", "url": "Organization?identifier=" + codes.ORGANIZATION_IDENTIFIER + "|batch-one.test"}},
            ],
        }
        status, response = await post(mb, bundle)
        assert status == 200 and response["type"] == "batch-response"
        statuses = [e["response"]["status"] for e in response["entry"]]
        assert statuses[0] == "201 Created" and statuses[1] == "403" and statuses[2] == "200 OK"
        assert response["entry"][1]["response"]["outcome"]["issue"][0]["code"] == "forbidden"
        assert response["entry"][2]["resource"]["total"] == 1


async def test_remote_cannot_post_transactions_writing_non_tasks(tmp_path: Path) -> None:
    async with MailboxHarness(tmp_path) as mb:
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [{"resource": org("evil.test"), "request": {"method": "POST", "url": "Organization"}}],
        }
        async with mb.client("remote.test") as http:
            response = await http.post(mb.url(), json=bundle, headers=JSON)
            assert response.status == 403
