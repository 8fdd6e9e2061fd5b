"""The Java DSF 2.1.0 conformance resources and example allow lists load into the mailbox.

Every StructureDefinition, CodeSystem, ValueSet and NamingSystem the Java FHIR server ships
(``dsf-2.1.0-conformance``) is POSTed as FHIR XML by the local organisation and read back
in JSON and XML on both database backends; the two DSF Subscriptions exist from start-up.
The example allow-list bundles (``dsf-2.1.0-examples``) load as transactions and are
idempotent; the example ``task-bundle.json`` is itself invalid and is rejected.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import orjson
import pytest
import pytest_asyncio
from lxml import etree

from dsf_core import pki
from dsf_core.fhir import codes
from dsf_core.fhir.xml import parse_xml
from dsf_core.testing.mailbox import MailboxHarness
from tests.compat.helpers import (
    BACKENDS,
    CONFORMANCE,
    EXAMPLES,
    FHIR_NS,
    JSON,
    XML_IN_JSON_OUT,
    assert_outcome,
    harness,
    require_reference,
    strip_server_meta,
)



def _conformance_params() -> list[Any]:
    if not CONFORMANCE.exists():
        return []
    params = []
    for path in sorted(CONFORMANCE.rglob("*")):
        if not path.is_file() or path.suffix != ".xml" or path.parent.name == "Subscription":
            continue  # *.xml.ignore are not resources; Subscriptions exist already (tested below)
        marks: list[pytest.MarkDecorator] = []
        params.append(pytest.param(path, id=f"{path.parent.name}/{path.name}", marks=marks))
    return params


SUBSCRIPTIONS = {
    "dsf-bpmn-task-subscription.xml": codes.TASK_SUBSCRIPTION_CRITERIA,
    "dsf-bpmn-questionnaire-response-subscription.xml": codes.QUESTIONNAIRE_RESPONSE_SUBSCRIPTION_CRITERIA,
}


@pytest_asyncio.fixture(scope="module", loop_scope="session", params=BACKENDS)
async def local(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[MailboxHarness, aiohttp.ClientSession]]:
    """One mailbox per backend for the whole module, and the local organisation's client."""
    require_reference()
    async with harness(request, request.param, tmp_path_factory.mktemp(f"conformance-{request.param}")) as mb:
        async with mb.client("local.test") as http:
            yield mb, http


def _xml_value(root: etree._Element, element: str) -> str | None:
    found = root.find(f"{{{FHIR_NS}}}{element}")
    return None if found is None else found.get("value")


# --- conformance resources ----------------------------------------------------------


def test_every_conformance_file_is_covered() -> None:
    require_reference()
    files = [p for p in CONFORMANCE.rglob("*") if p.is_file()]
    ignored = [p for p in files if p.name.endswith(".ignore")]
    resources = [p for p in files if p.suffix == ".xml"]
    assert len(resources) + len(ignored) == len(files)
    assert len(_conformance_params()) + len(SUBSCRIPTIONS) == len(resources)
    assert len(resources) >= 60


@pytest.mark.parametrize("path", _conformance_params())
async def test_conformance_resource_is_accepted_and_reads_back(
    local: tuple[MailboxHarness, aiohttp.ClientSession], path: Path
) -> None:
    mb, http = local
    type_ = path.parent.name
    original = path.read_bytes()
    expected = parse_xml(original)

    response = await http.post(mb.url(type_), data=original, headers=XML_IN_JSON_OUT)
    text = await response.text()
    assert response.status == 201, text[:800]
    created = orjson.loads(text)
    id_ = created["id"]
    assert response.headers["Location"].endswith(f"/{type_}/{id_}/_history/1")
    assert response.headers["ETag"] == 'W/"1"'
    assert created["meta"]["versionId"] == "1"
    # Every file carries its DSF default profile already: nothing is added or lost.
    assert strip_server_meta(created) == expected

    # JSON read: the same resource, resourceType first as Java/HAPI renders it.
    response = await http.get(mb.url(f"{type_}/{id_}"), headers={"Accept": "application/fhir+json"})
    assert response.status == 200
    raw_json = await response.read()
    assert raw_json.startswith(b'{"resourceType":"' + type_.encode())
    assert orjson.loads(raw_json) == created

    # XML read: FHIR namespace, value attributes, and the same content.
    response = await http.get(mb.url(f"{type_}/{id_}"), params={"_format": "xml"})
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("application/fhir+xml")
    raw_xml = await response.read()
    root = etree.fromstring(raw_xml)
    assert root.tag == f"{{{FHIR_NS}}}{type_}"
    assert _xml_value(root, "id") == id_
    assert _xml_value(root, "status") == expected["status"]
    if "url" in expected:
        assert _xml_value(root, "url") == expected["url"]
        assert _xml_value(root, "version") == expected["version"]
    assert parse_xml(raw_xml) == created

    # And it is found by its canonical URL and version.
    if "url" in expected:
        response = await http.get(mb.url(type_), params={"url": expected["url"], "version": expected["version"]})
        bundle = await response.json()
        assert response.status == 200
        assert [e["resource"]["id"] for e in bundle.get("entry", [])] == [id_]


# --- the two DSF Subscriptions ------------------------------------------------------


async def _subscription_by_criteria(mb: MailboxHarness, http: aiohttp.ClientSession, criteria: str) -> dict[str, Any]:
    response = await http.get(mb.url("Subscription"), params={"criteria:exact": criteria})
    assert response.status == 200
    bundle = await response.json()
    assert bundle["total"] == 1, bundle
    return bundle["entry"][0]["resource"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("criteria", sorted(SUBSCRIPTIONS.values()))
async def test_dsf_subscription_exists_from_start_up(
    local: tuple[MailboxHarness, aiohttp.ClientSession], criteria: str
) -> None:
    mb, http = local
    subscription = await _subscription_by_criteria(mb, http, criteria)
    assert subscription["status"] == "active"
    assert subscription["criteria"] == criteria
    assert subscription["channel"]["type"] == "websocket"
    assert subscription["channel"]["payload"] == "application/fhir+json"
    assert {"system": codes.READ_ACCESS_TAG, "code": "LOCAL"} in subscription["meta"]["tag"]
    assert "http://dsf.dev/fhir/StructureDefinition/subscription" in subscription["meta"]["profile"]


@pytest.mark.parametrize("name", sorted(SUBSCRIPTIONS))
async def test_conformance_subscription_conditional_create_finds_the_existing_one(
    local: tuple[MailboxHarness, aiohttp.ClientSession], name: str
) -> None:
    mb, http = local
    criteria = SUBSCRIPTIONS[name]
    existing = await _subscription_by_criteria(mb, http, criteria)
    body = (CONFORMANCE / "Subscription" / name).read_bytes()
    if_none_exist = urlencode({"criteria:exact": criteria, "type": "websocket", "payload": "application/fhir+json"})

    response = await http.post(mb.url("Subscription"), data=body, headers=XML_IN_JSON_OUT | {"If-None-Exist": if_none_exist})
    assert response.status == 200, await response.text()
    assert (await response.json())["id"] == existing["id"]

    # Without the condition it is a duplicate (criteria + channel type + payload are unique, as in Java): 403.
    response = await http.post(mb.url("Subscription"), data=body, headers=XML_IN_JSON_OUT)
    await assert_outcome(response, 403, "forbidden")
    assert (await _subscription_by_criteria(mb, http, criteria))["id"] == existing["id"]

    response = await http.get(mb.url(f"Subscription/{existing['id']}"), headers={"Accept": "application/fhir+xml"})
    assert response.status == 200
    root = etree.fromstring(await response.read())
    assert root.tag == f"{{{FHIR_NS}}}Subscription"
    assert _xml_value(root, "criteria") == criteria


# --- example allow lists ------------------------------------------------------------

TTP_THUMBPRINT = "0123456789abcdef" * 8


def _allow_list_xml(dic_thumbprints: dict[str, str]) -> bytes:
    """The 3 DIC + TTP allow list with its ``${...}`` placeholders filled in (we are Test_TTP)."""
    text = (EXAMPLES / "3dic-ttp-allow-list-bundle.xml").read_text()
    values = {
        "${dev.dsf.fhir.server.organization.thumbprint}": TTP_THUMBPRINT,
        "${dev.dsf.fhir.server.organization.thumbprint.dic1}": dic_thumbprints["dic1"],
        "${dev.dsf.fhir.server.organization.thumbprint.dic2}": dic_thumbprints["dic2"],
        "${dev.dsf.fhir.server.organization.thumbprint.dic3}": dic_thumbprints["dic3"],
        "${dev.dsf.fhir.server.organization.identifier.value}": "Test_TTP",
        "${dev.dsf.fhir.server.endpoint.identifier.value}": "ttp",
        "${dev.dsf.fhir.server.endpoint.address}": "https://ttp/fhir",
    }
    for placeholder, value in values.items():
        text = text.replace(placeholder, value)
    assert "${" not in text
    return text.encode()


async def _search(mb: MailboxHarness, http: aiohttp.ClientSession, path: str, **params: str) -> list[dict[str, Any]]:
    response = await http.get(mb.url(path), params=params)
    assert response.status == 200, await response.text()
    bundle = await response.json()
    assert bundle["total"] == len(bundle.get("entry", []))
    return [e["resource"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]


async def _totals(mb: MailboxHarness, http: aiohttp.ClientSession) -> dict[str, int]:
    totals = {}
    for type_ in ("Organization", "Endpoint", "OrganizationAffiliation"):
        response = await http.get(mb.url(type_), params={"_summary": "count"})
        totals[type_] = (await response.json())["total"]
    return totals


async def _post_transaction(http: aiohttp.ClientSession, mb: MailboxHarness, body: bytes, content_type: str) -> list[str]:
    response = await http.post(mb.url(), data=body, headers={"Content-Type": content_type, "Accept": "application/fhir+json"})
    text = await response.text()
    assert response.status == 200, text[:800]
    bundle = orjson.loads(text)
    assert bundle["resourceType"] == "Bundle"
    assert bundle["type"] == "transaction-response"
    return [e["response"]["status"] for e in bundle["entry"]]


async def test_3dic_ttp_allow_list_bundle_loads_and_is_idempotent(tmp_path: Path, database_url: str) -> None:
    require_reference()
    async with MailboxHarness(tmp_path, database_url=database_url) as mb:
        dic1 = mb.pki.issue_organization("Test_DIC_1")  # a real certificate, to authenticate as Test_DIC_1 later
        thumbprints = {"dic1": dic1.client_thumbprint, "dic2": "2" * 128, "dic3": "3" * 128}
        body = _allow_list_xml(thumbprints)
        async with mb.client("local.test") as http:
            before = await _totals(mb, http)
            statuses = await _post_transaction(http, mb, body, "application/fhir+xml")
            assert statuses == ["201 Created"] * 13
            after = await _totals(mb, http)
            assert after == {
                "Organization": before["Organization"] + 5,  # Test_TTP, Test_DIC_1..3, highmed.org
                "Endpoint": before["Endpoint"] + 4,
                "OrganizationAffiliation": before["OrganizationAffiliation"] + 4,
            }

            [dic2] = await _search(mb, http, "Organization", identifier=f"{codes.ORGANIZATION_IDENTIFIER}|Test_DIC_2")
            assert dic2["active"] is True
            assert dic2["extension"] == [{"url": codes.EXT_THUMBPRINT, "valueString": "2" * 128}]
            [endpoint] = await _search(mb, http, "Endpoint", identifier=f"{codes.ENDPOINT_IDENTIFIER}|dic2")
            assert endpoint["address"] == "https://dic2/fhir"
            assert endpoint["managingOrganization"]["reference"] == f"Organization/{dic2['id']}"
            assert dic2["endpoint"][0]["reference"] == f"Endpoint/{endpoint['id']}"
            [parent] = await _search(mb, http, "Organization", identifier=f"{codes.ORGANIZATION_IDENTIFIER}|highmed.org")
            [affiliation] = await _search(
                mb,
                http,
                "OrganizationAffiliation",
                **{"participating-organization:identifier": f"{codes.ORGANIZATION_IDENTIFIER}|Test_DIC_2"},
            )
            assert affiliation["organization"]["reference"] == f"Organization/{parent['id']}"
            assert affiliation["participatingOrganization"]["reference"] == f"Organization/{dic2['id']}"
            assert sorted(c["coding"][0]["code"] for c in affiliation["code"]) == ["COS", "DIC"]
            ttp_affiliations = await _search(
                mb,
                http,
                "OrganizationAffiliation",
                **{
                    "primary-organization:identifier": f"{codes.ORGANIZATION_IDENTIFIER}|highmed.org",
                    "participating-organization:identifier": f"{codes.ORGANIZATION_IDENTIFIER}|Test_TTP",
                },
            )
            assert [sorted(c["coding"][0]["code"] for c in a["code"]) for a in ttp_affiliations] == [["DTS", "TTP"]]
            included = await http.get(
                mb.url("Organization"),
                params={"identifier": f"{codes.ORGANIZATION_IDENTIFIER}|Test_DIC_2", "_include": "Organization:endpoint"},
            )
            entries = (await included.json())["entry"]
            assert [(e["resource"]["resourceType"], e["search"]["mode"]) for e in entries] == [
                ("Organization", "match"),
                ("Endpoint", "include"),
            ]

            # Again: conditional PUTs update, conditional POSTs (ifNoneExist) find — nothing is duplicated.
            statuses = await _post_transaction(http, mb, body, "application/fhir+xml")
            assert statuses == ["200 OK"] * 13
            assert await _totals(mb, http) == after
            [again] = await _search(mb, http, "Organization", identifier=f"{codes.ORGANIZATION_IDENTIFIER}|Test_DIC_2")
            assert again["id"] == dic2["id"]
            assert again["endpoint"] == dic2["endpoint"]

        # The allow list is live: Test_DIC_1's certificate now authenticates it as a remote organisation.
        context = pki.client_ssl_context(
            cafile=mb.pki.ca_cert_path, cert_file=dic1.client.cert_path, key_file=dic1.client.key_path
        )
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context), headers=JSON) as dic1_http:
            response = await dic1_http.get(mb.url("Endpoint"), params={"identifier": f"{codes.ENDPOINT_IDENTIFIER}|dic1"})
            assert response.status == 200
            assert (await response.json())["total"] == 1
            response = await dic1_http.get(mb.url("Subscription"))
            assert (await response.json())["total"] == 0  # LOCAL-tagged: not for a remote


async def test_allow_list_json_bundle_loads_and_is_idempotent(tmp_path: Path, database_url: str) -> None:
    require_reference()
    body = (EXAMPLES / "allow-list.json").read_bytes()
    source = orjson.loads(body)
    async with MailboxHarness(tmp_path, database_url=database_url) as mb:
        async with mb.client("local.test") as http:
            before = await _totals(mb, http)
            assert await _post_transaction(http, mb, body, "application/fhir+json") == ["201 Created"] * 8
            after = await _totals(mb, http)
            assert after == before | {
                "Organization": before["Organization"] + 4,
                "Endpoint": before["Endpoint"] + 4,
            }
            for entry in source["entry"]:
                resource = entry["resource"]
                system = codes.ORGANIZATION_IDENTIFIER if resource["resourceType"] == "Organization" else codes.ENDPOINT_IDENTIFIER
                value = resource["identifier"][0]["value"]
                [found] = await _search(mb, http, resource["resourceType"], identifier=f"{system}|{value}")
                assert found["identifier"] == resource["identifier"]
                assert found.get("extension") == resource.get("extension")
                assert found.get("address") == resource.get("address")
                assert found["name"] == resource["name"]
            [dic2] = await _search(mb, http, "Organization", identifier=f"{codes.ORGANIZATION_IDENTIFIER}|Test_DIC_2")
            [endpoint] = await _search(mb, http, "Endpoint", organization=f"Organization/{dic2['id']}")
            assert endpoint["identifier"][0]["value"] == "Test_DIC_2_Endpoint"

            assert await _post_transaction(http, mb, body, "application/fhir+json") == ["200 OK"] * 8
            assert await _totals(mb, http) == after
            [again] = await _search(mb, http, "Organization", identifier=f"{codes.ORGANIZATION_IDENTIFIER}|Test_DIC_2")
            assert again["id"] == dic2["id"]
            assert again["meta"]["versionId"] == "2"


async def test_both_example_allow_lists_load_into_one_mailbox(tmp_path: Path) -> None:
    """The XML and the JSON example define the same organisations with other endpoints: they merge."""
    require_reference()
    async with MailboxHarness(tmp_path) as mb:
        async with mb.client("local.test") as http:
            before = await _totals(mb, http)
            xml = _allow_list_xml({"dic1": "1" * 128, "dic2": "2" * 128, "dic3": "3" * 128})
            await _post_transaction(http, mb, xml, "application/fhir+xml")
            json_body = (EXAMPLES / "allow-list.json").read_bytes()
            statuses = await _post_transaction(http, mb, json_body, "application/fhir+json")
            # Organizations exist (updated), the *_Endpoint Endpoints are new.
            assert statuses == ["200 OK", "201 Created"] * 4
            assert await _totals(mb, http) == {
                "Organization": before["Organization"] + 5,
                "Endpoint": before["Endpoint"] + 8,
                "OrganizationAffiliation": before["OrganizationAffiliation"] + 4,
            }
            [dic2] = await _search(mb, http, "Organization", identifier=f"{codes.ORGANIZATION_IDENTIFIER}|Test_DIC_2")
            assert dic2["extension"][0]["valueString"].startswith("b72203e163")  # the JSON list's thumbprint won


async def test_allow_list_with_unfilled_placeholders_is_rejected_atomically(tmp_path: Path) -> None:
    require_reference()
    async with MailboxHarness(tmp_path) as mb:
        async with mb.client("local.test") as http:
            before = await _totals(mb, http)
            response = await http.post(
                mb.url(), data=(EXAMPLES / "3dic-ttp-allow-list-bundle.xml").read_bytes(), headers=XML_IN_JSON_OUT
            )
            # "${dev.dsf.fhir.server.organization.thumbprint}" is no SHA-512 thumbprint: a rule violation.
            await assert_outcome(response, 403, "invariant")
            assert await _totals(mb, http) == before


async def test_example_task_bundle_is_invalid_and_rejected(tmp_path: Path, database_url: str) -> None:
    """``task-bundle.json`` has ``Group.meta.profile`` as a string (not a list): malformed FHIR JSON."""
    require_reference()
    async with MailboxHarness(tmp_path, database_url=database_url) as mb:
        async with mb.client("local.test") as http:
            response = await http.post(mb.url(), data=(EXAMPLES / "task-bundle.json").read_bytes(), headers=JSON)
            outcome = await assert_outcome(response, 400, "invalid")
            assert "Group.meta.profile" in outcome["issue"][0]["diagnostics"]
            for type_ in ("Group", "ResearchStudy", "Task"):
                response = await http.get(mb.url(type_))
                assert (await response.json())["total"] == 0
