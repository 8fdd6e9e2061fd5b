"""Search: parameters the engine and peers use, modifiers, paging, sorting, includes, strict handling."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio

from dsf_core.fhir import codes
from dsf_core.testing.mailbox import MailboxHarness

JSON = {"Accept": "application/fhir+json"}
ALL = [{"system": codes.READ_ACCESS_TAG, "code": "ALL"}]


@pytest_asyncio.fixture(loop_scope="session")
async def mb(tmp_path: Path, database_url: str) -> AsyncIterator[MailboxHarness]:
    async with MailboxHarness(tmp_path, database_url=database_url) as harness:
        async with harness.client("local.test") as http:
            for i in range(25):
                cs = {
                    "resourceType": "CodeSystem",
                    "meta": {"tag": ALL},
                    "url": f"http://test.org/fhir/CodeSystem/cs-{i:02d}",
                    "version": "1.0" if i % 2 else "2.0",
                    "name": f"Système{i:02d}",
                    "status": "active" if i < 20 else "retired",
                    "content": "complete",
                }
                assert (await http.post(harness.url("CodeSystem"), json=cs)).status == 201
        yield harness


async def get(mb: MailboxHarness, query: str, who: str = "local.test", headers: dict[str, str] | None = None) -> tuple[int, Any]:
    async with mb.client(who) as http:
        response = await http.get(mb.url(query), headers=JSON | (headers or {}))
        return response.status, await response.json()


async def test_paging_links_walk_every_match(mb: MailboxHarness) -> None:
    status, page = await get(mb, "CodeSystem?_count=10&_sort=url")
    assert status == 200 and page["total"] == 25
    urls = []
    while True:
        urls += [e["resource"]["url"] for e in page.get("entry", [])]
        nxt = [link["url"] for link in page["link"] if link["relation"] == "next"]
        if not nxt:
            break
        status, page = await get(mb, nxt[0].split("/fhir/", 1)[1])
    assert urls == sorted(urls) and len(urls) == 25
    relations = {link["relation"] for link in page["link"]}
    assert {"self", "first", "previous", "last"} <= relations


async def test_sort_descending_and_by_last_updated(mb: MailboxHarness) -> None:
    _, page = await get(mb, "CodeSystem?_sort=-url&_count=3")
    assert [e["resource"]["url"][-5:] for e in page["entry"]] == ["cs-24", "cs-23", "cs-22"]
    _, page = await get(mb, "CodeSystem?_sort=-_lastUpdated&_count=1")
    assert page["entry"][0]["resource"]["url"].endswith("cs-24")


async def test_token_string_uri_modifiers(mb: MailboxHarness) -> None:
    assert (await get(mb, "CodeSystem?status=retired"))[1]["total"] == 5
    assert (await get(mb, "CodeSystem?status:not=retired"))[1]["total"] == 20
    assert (await get(mb, "CodeSystem?status=active,retired"))[1]["total"] == 25
    assert (await get(mb, "CodeSystem?version=1.0&status=active"))[1]["total"] == 10
    assert (await get(mb, "CodeSystem?name=systeme0"))[1]["total"] == 10  # starts-with, accent- and case-insensitive
    assert (await get(mb, "CodeSystem?name:exact=Système01"))[1]["total"] == 1
    assert (await get(mb, "CodeSystem?name:exact=systeme01"))[1]["total"] == 0
    assert (await get(mb, "CodeSystem?name:contains=ME2"))[1]["total"] == 5
    assert (await get(mb, "CodeSystem?url=http://test.org/fhir/CodeSystem/cs-03"))[1]["total"] == 1
    assert (await get(mb, "CodeSystem?url:below=http://test.org/fhir/CodeSystem/cs-1"))[1]["total"] == 10
    _, summary = await get(mb, "CodeSystem?_summary=count")
    assert summary["total"] == 25 and "entry" not in summary
    _, count_only = await get(mb, "CodeSystem?_count=0")
    assert count_only["total"] == 25 and "entry" not in count_only


async def test_last_updated_prefixes(mb: MailboxHarness) -> None:
    _, first = await get(mb, "CodeSystem?_sort=_lastUpdated&_count=1")
    stamp = first["entry"][0]["resource"]["meta"]["lastUpdated"]
    assert (await get(mb, f"CodeSystem?_lastUpdated=gt{stamp}"))[1]["total"] == 24
    assert (await get(mb, f"CodeSystem?_lastUpdated=ge{stamp}"))[1]["total"] == 25
    assert (await get(mb, f"CodeSystem?_lastUpdated=le{stamp}"))[1]["total"] == 1
    assert (await get(mb, "CodeSystem?_lastUpdated=lt2000-01-01"))[1]["total"] == 0


async def test_strict_handling_rejects_unknown_parameters(mb: MailboxHarness) -> None:
    status, outcome = await get(mb, "CodeSystem?bogus=1", headers={"Prefer": "handling=strict"})
    assert status == 400 and outcome["issue"][0]["code"] == "not-supported"
    status, bundle = await get(mb, "CodeSystem?bogus=1&_count=1")
    assert status == 200 and bundle["total"] == 25
    assert bundle["entry"][-1]["search"]["mode"] == "outcome"
    status, outcome = await get(mb, "CodeSystem?_lastUpdated=gtnot-a-date")
    assert status == 400 and outcome["issue"][0]["code"] == "invalid"


async def test_includes_and_identifier_modifier(mb: MailboxHarness) -> None:
    # the harness allow list: remote.test's Organization, its Endpoint and its affiliation to parent.test
    _, bundle = await get(
        mb,
        f"OrganizationAffiliation?participating-organization:identifier={codes.ORGANIZATION_IDENTIFIER}|remote.test"
        "&_include=OrganizationAffiliation:participating-organization&_include=OrganizationAffiliation:endpoint",
    )
    assert bundle["total"] == 1
    modes = sorted((e["resource"]["resourceType"], e["search"]["mode"]) for e in bundle["entry"])
    assert modes == [("Endpoint", "include"), ("Organization", "include"), ("OrganizationAffiliation", "match")]
    _, bundle = await get(
        mb,
        f"Organization?identifier={codes.ORGANIZATION_IDENTIFIER}|remote.test&_revinclude=Endpoint:organization",
    )
    assert sorted(e["resource"]["resourceType"] for e in bundle["entry"]) == ["Endpoint", "Organization"]
    _, bundle = await get(mb, "Endpoint?address=https://127.0.0.1:1/remote.test&_include=Endpoint:organization")
    assert bundle["total"] == 1 and len(bundle["entry"]) == 2


async def test_history_since_and_paging(mb: MailboxHarness) -> None:
    status, history = await get(mb, "CodeSystem/_history?_count=5")
    assert status == 200 and history["type"] == "history" and history["total"] == 25
    assert len(history["entry"]) == 5
    newest = history["entry"][0]["resource"]["meta"]["lastUpdated"]
    _, since = await get(mb, f"CodeSystem/_history?_since={newest}")
    assert since["total"] == 1
    _, system = await get(mb, "_history?_count=1")
    assert system["total"] > 25


async def test_elements_with_includes_and_the_count_maximum(mb: MailboxHarness) -> None:
    _, bundle = await get(mb, "CodeSystem?_elements=url&_count=5000")
    assert len(bundle["entry"]) == 25
    self_link = next(link["url"] for link in bundle["link"] if link["relation"] == "self")
    assert "_count=1000" in self_link and "_elements=url" in self_link  # the page size in effect
    # status and content are mandatory for a CodeSystem
    assert {frozenset(e["resource"]) for e in bundle["entry"]} == {frozenset({"resourceType", "id", "meta", "url", "status", "content"})}
    _, bundle = await get(
        mb, "Endpoint?address=https://127.0.0.1:1/remote.test&_include=Endpoint:organization&_elements=name,Organization.identifier"
    )
    by_type = {e["resource"]["resourceType"]: e["resource"] for e in bundle["entry"]}
    # the Endpoint has no name: what is left are its mandatory elements
    assert set(by_type["Endpoint"]) == {"resourceType", "id", "meta", "status", "connectionType", "payloadType", "address"}
    assert set(by_type["Organization"]) == {"resourceType", "id", "meta", "identifier"}
    assert any(t["code"] == "SUBSETTED" for t in by_type["Organization"]["meta"]["tag"])
