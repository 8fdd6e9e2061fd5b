"""Resources shaped as Java DSF peers (HAPI) send them, in FHIR XML and FHIR JSON (dsf-core §3.4).

HAPI writes XML with ``xmlns="http://hl7.org/fhir"``, an XML declaration and ``value``
attributes, and JSON with ``resourceType`` first.  Each resource below is written by hand in
both forms: POST the XML and read JSON and XML back, POST the JSON and read XML back, and
compare the fields that matter (identifiers, references, inputs, tags).  Then content
negotiation (``_format``, ``Accept``, ``_pretty``) and the 400/415 answers for bad bodies.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
import pytest_asyncio
from lxml import etree

from dsf_core.fhir import codes
from dsf_core.fhir.xml import parse_xml, to_xml
from dsf_core.testing.mailbox import MailboxHarness
from tests.compat.helpers import (
    BACKENDS,
    FHIR_NS,
    JSON,
    PING_PONG,
    TAG_ALL,
    XML_IN_JSON_OUT,
    assert_outcome,
    harness,
    require_reference,
    strip_server_meta,
)
from tests.compat.ping_pong import PING_XML, deployed, ping_task

NS = {"f": FHIR_NS}
XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>\n'


class Local:
    def __init__(self, mb: MailboxHarness, http: aiohttp.ClientSession, remote: aiohttp.ClientSession) -> None:
        self.mb = mb
        self.http = http
        self.remote = remote

    async def post(self, type_: str, body: bytes, content_type: str, *, http: aiohttp.ClientSession | None = None) -> dict[str, Any]:
        response = await (http or self.http).post(
            self.mb.url(type_), data=body, headers={"Content-Type": content_type, "Accept": "application/fhir+json"}
        )
        text = await response.text()
        assert response.status == 201, text[:800]
        return orjson.loads(text)  # type: ignore[no-any-return]

    async def read_json(self, type_: str, id_: str, *, http: aiohttp.ClientSession | None = None) -> tuple[bytes, dict[str, Any]]:
        response = await (http or self.http).get(self.mb.url(f"{type_}/{id_}"), headers={"Accept": "application/fhir+json"})
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("application/fhir+json")
        raw = await response.read()
        return raw, orjson.loads(raw)

    async def read_xml(self, type_: str, id_: str, *, http: aiohttp.ClientSession | None = None) -> etree._Element:
        response = await (http or self.http).get(self.mb.url(f"{type_}/{id_}"), headers={"Accept": "application/fhir+xml"})
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("application/fhir+xml")
        raw = await response.read()
        assert raw.startswith(b"<?xml")
        root = etree.fromstring(raw)
        assert root.tag == f"{{{FHIR_NS}}}{type_}"
        assert root.nsmap.get(None) == FHIR_NS  # default namespace, as HAPI writes it
        _, as_json = await self.read_json(type_, id_, http=http)
        assert parse_xml(raw) == as_json
        return root


@pytest_asyncio.fixture(scope="module", loop_scope="session", params=BACKENDS)
async def local(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Local]:
    require_reference()
    async with harness(request, request.param, tmp_path_factory.mktemp(f"formats-{request.param}")) as mb:
        async with mb.client("local.test") as http, mb.client("remote.test") as remote:
            pong = deployed((PING_PONG / "ActivityDefinition" / "dsf-pong.xml").read_text())
            response = await http.post(mb.url("ActivityDefinition"), data=pong, headers=XML_IN_JSON_OUT)
            assert response.status == 201, await response.text()
            yield Local(mb, http, remote)


def values(root: etree._Element, path: str) -> list[str]:
    return [str(v) for v in root.xpath(path + "/@value", namespaces=NS)]


# --- Endpoint and Organization (allow-list shapes) ----------------------------------


def endpoint_xml(identifier: str) -> bytes:
    return (
        XML_DECLARATION
        + f"""<Endpoint xmlns="http://hl7.org/fhir">
   <meta>
      <profile value="http://dsf.dev/fhir/StructureDefinition/endpoint"/>
      <tag>
         <system value="http://dsf.dev/fhir/CodeSystem/read-access-tag"/>
         <code value="ALL"/>
      </tag>
   </meta>
   <identifier>
      <system value="http://dsf.dev/sid/endpoint-identifier"/>
      <value value="{identifier}"/>
   </identifier>
   <status value="active"/>
   <connectionType>
      <system value="http://terminology.hl7.org/CodeSystem/endpoint-connection-type"/>
      <code value="hl7-fhir-rest"/>
   </connectionType>
   <name value="{identifier} &amp; friends"/>
   <payloadType>
      <coding>
         <system value="http://hl7.org/fhir/resource-types"/>
         <code value="Task"/>
      </coding>
   </payloadType>
   <payloadMimeType value="application/fhir+json"/>
   <payloadMimeType value="application/fhir+xml"/>
   <address value="https://{identifier}/fhir"/>
</Endpoint>"""
    ).encode()


def endpoint_json(identifier: str) -> dict[str, Any]:
    return {
        "resourceType": "Endpoint",
        "meta": {"profile": ["http://dsf.dev/fhir/StructureDefinition/endpoint"], "tag": [TAG_ALL]},
        "identifier": [{"system": codes.ENDPOINT_IDENTIFIER, "value": identifier}],
        "status": "active",
        "connectionType": {"system": codes.ENDPOINT_CONNECTION_TYPE, "code": "hl7-fhir-rest"},
        "name": f"{identifier} & friends",
        "payloadType": [{"coding": [{"system": "http://hl7.org/fhir/resource-types", "code": "Task"}]}],
        "payloadMimeType": ["application/fhir+json", "application/fhir+xml"],
        "address": f"https://{identifier}/fhir",
    }


def organization_xml(identifier: str, thumbprint: str, endpoint_id: str) -> bytes:
    return (
        XML_DECLARATION
        + f"""<!-- written by HAPI FHIR -->
<Organization xmlns="http://hl7.org/fhir" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
   xsi:schemaLocation="http://hl7.org/fhir http://hl7.org/fhir/R4/fhir-single.xsd">
   <meta>
      <profile value="http://dsf.dev/fhir/StructureDefinition/organization"/>
      <tag>
         <system value="http://dsf.dev/fhir/CodeSystem/read-access-tag"/>
         <code value="ALL"/>
      </tag>
   </meta>
   <extension url="http://dsf.dev/fhir/StructureDefinition/extension-certificate-thumbprint">
      <valueString value="{thumbprint}"/>
   </extension>
   <identifier>
      <system value="http://dsf.dev/sid/organization-identifier"/>
      <value value="{identifier}"/>
   </identifier>
   <active value="true"/>
   <type>
      <coding>
         <system value="http://dsf.dev/fhir/CodeSystem/organization-role"/>
         <code value="DIC"/>
      </coding>
   </type>
   <name value="Universitätsklinikum {identifier}"/>
   <endpoint>
      <reference value="Endpoint/{endpoint_id}"/>
      <type value="Endpoint"/>
   </endpoint>
</Organization>"""
    ).encode()


def organization_json(identifier: str, thumbprint: str, endpoint_id: str) -> dict[str, Any]:
    return {
        "resourceType": "Organization",
        "meta": {"profile": ["http://dsf.dev/fhir/StructureDefinition/organization"], "tag": [TAG_ALL]},
        "extension": [{"url": codes.EXT_THUMBPRINT, "valueString": thumbprint}],
        "identifier": [{"system": codes.ORGANIZATION_IDENTIFIER, "value": identifier}],
        "active": True,
        "type": [{"coding": [{"system": codes.ORGANIZATION_ROLE, "code": "DIC"}]}],
        "name": f"Universitätsklinikum {identifier}",
        "endpoint": [{"reference": f"Endpoint/{endpoint_id}", "type": "Endpoint"}],
    }


def check_endpoint_xml(root: etree._Element, expected: dict[str, Any]) -> None:
    assert values(root, "f:identifier/f:value") == [expected["identifier"][0]["value"]]
    assert values(root, "f:address") == [expected["address"]]
    assert values(root, "f:payloadMimeType") == expected["payloadMimeType"]
    assert values(root, "f:name") == [expected["name"]]
    assert values(root, "f:meta/f:tag/f:code") == ["ALL"]


def check_organization_xml(root: etree._Element, expected: dict[str, Any]) -> None:
    assert root.xpath("f:extension/@url", namespaces=NS) == [codes.EXT_THUMBPRINT]
    assert values(root, "f:extension/f:valueString") == [expected["extension"][0]["valueString"]]
    assert values(root, "f:identifier/f:system") == [codes.ORGANIZATION_IDENTIFIER]
    assert values(root, "f:identifier/f:value") == [expected["identifier"][0]["value"]]
    assert values(root, "f:active") == ["true"]
    assert values(root, "f:name") == [expected["name"]]
    assert values(root, "f:endpoint/f:reference") == [expected["endpoint"][0]["reference"]]
    # FHIR element order: meta, extension, identifier, active, type, name, endpoint.
    names = [etree.QName(child).localname for child in root]
    assert names == ["id", "meta", "extension", "identifier", "active", "type", "name", "endpoint"]


async def test_endpoint_and_organization_xml_read_back_as_json_and_xml(local: Local) -> None:
    name = f"xml-{uuid.uuid4().hex[:8]}"
    endpoint = await local.post("Endpoint", endpoint_xml(name), "application/fhir+xml")
    raw, read = await local.read_json("Endpoint", endpoint["id"])
    assert raw.startswith(b'{"resourceType":"Endpoint","id":')
    assert strip_server_meta(read) == endpoint_json(name)
    check_endpoint_xml(await local.read_xml("Endpoint", endpoint["id"]), endpoint_json(name))

    thumbprint = uuid.uuid4().hex * 4
    body = organization_xml(name, thumbprint, endpoint["id"])
    organization = await local.post("Organization", body, "application/fhir+xml;charset=UTF-8")
    _, read = await local.read_json("Organization", organization["id"])
    assert strip_server_meta(read) == organization_json(name, thumbprint, endpoint["id"])
    check_organization_xml(await local.read_xml("Organization", organization["id"]), read)


async def test_endpoint_and_organization_json_read_back_as_xml(local: Local) -> None:
    name = f"json-{uuid.uuid4().hex[:8]}"
    # resourceType last: the server must still answer with it first.
    sent = endpoint_json(name)
    body = orjson.dumps({k: v for k, v in sent.items() if k != "resourceType"} | {"resourceType": "Endpoint"})
    endpoint = await local.post("Endpoint", body, "application/fhir+json")
    raw, read = await local.read_json("Endpoint", endpoint["id"])
    assert raw.startswith(b'{"resourceType":"Endpoint"')
    assert strip_server_meta(read) == sent
    check_endpoint_xml(await local.read_xml("Endpoint", endpoint["id"]), sent)

    thumbprint = uuid.uuid4().hex * 4
    sent = organization_json(name, thumbprint, endpoint["id"])
    organization = await local.post("Organization", orjson.dumps(sent), "application/json")
    _, read = await local.read_json("Organization", organization["id"])
    assert strip_server_meta(read) == sent
    check_organization_xml(await local.read_xml("Organization", organization["id"]), sent)


# --- Task (the message) -------------------------------------------------------------


def check_ping_xml(root: etree._Element, requester: str) -> None:
    assert values(root, "f:instantiatesCanonical") == ["http://dsf.dev/bpe/Process/pong|1.0"]
    assert values(root, "f:status") == ["requested"]
    assert values(root, "f:intent") == ["order"]
    assert values(root, "f:requester/f:type") == ["Organization"]
    assert values(root, "f:requester/f:identifier/f:value") == [requester]
    assert values(root, "f:restriction/f:recipient/f:identifier/f:value") == ["local.test"]
    assert values(root, "f:input/f:type/f:coding/f:code") == [
        "message-name",
        "business-key",
        "correlation-key",
        "endpoint-identifier",
    ]
    assert values(root, "f:input[1]/f:valueString") == ["ping"]
    assert values(root, "f:input[4]/f:valueReference/f:identifier/f:system") == [codes.ENDPOINT_IDENTIFIER]
    assert "http://dsf.dev/fhir/StructureDefinition/task-ping|1.0" in values(root, "f:meta/f:profile")


def without_profile(task: dict[str, Any]) -> dict[str, Any]:
    task = strip_server_meta(task)
    task["meta"].pop("profile")
    if not task["meta"]:
        task.pop("meta")
    return task


async def test_task_xml_from_a_java_peer_reads_back_as_json_and_xml(local: Local) -> None:
    task = await local.post("Task", PING_XML.encode(), "application/fhir+xml", http=local.remote)
    expected = ping_task()
    expected["authoredOn"] = "2024-06-01T10:00:00+02:00"
    expected["input"][1]["valueString"] = "5e2b8f61-1b7c-4c55-9a43-5b8a1f0f8a01"
    expected["input"][2]["valueString"] = "5e2b8f61-1b7c-4c55-9a43-5b8a1f0f8a02"
    for reader in (local.remote, local.http):  # the requester and the recipient
        raw, read = await local.read_json("Task", task["id"], http=reader)
        assert raw.startswith(b'{"resourceType":"Task"')
        assert without_profile(read) == without_profile(expected)
        check_ping_xml(await local.read_xml("Task", task["id"], http=reader), "remote.test")


async def test_task_json_reads_back_as_xml(local: Local) -> None:
    sent = ping_task()
    task = await local.post("Task", orjson.dumps(sent), "application/fhir+json", http=local.remote)
    _, read = await local.read_json("Task", task["id"], http=local.remote)
    assert without_profile(read) == without_profile(sent)
    root = await local.read_xml("Task", task["id"], http=local.remote)
    check_ping_xml(root, "remote.test")
    assert values(root, "f:authoredOn") == [sent["authoredOn"]]


# What the Java DSF's DefaultProfileProviderImpl does with meta.profile on create: no
# default profile for Task; "bundle" for Bundle; nothing added when a supported default
# (organization or organization-parent) is already present; else the default first.


def _profile_cases() -> list[Any]:
    parent = {
        "resourceType": "Organization",
        "meta": {"profile": ["http://dsf.dev/fhir/StructureDefinition/organization-parent"], "tag": [TAG_ALL]},
        "identifier": [{"system": codes.ORGANIZATION_IDENTIFIER, "value": "parent-profile.test"}],
        "active": True,
    }
    bundle = {"resourceType": "Bundle", "meta": {"tag": [TAG_ALL]}, "type": "collection"}
    return [
        pytest.param(ping_task(), [], id="Task"),
        pytest.param(bundle, ["http://dsf.dev/fhir/StructureDefinition/bundle"], id="Bundle"),
        pytest.param(parent, [], id="Organization-parent"),
        pytest.param(
            endpoint_json("no-profile.test") | {"meta": {"tag": [TAG_ALL]}},
            ["http://dsf.dev/fhir/StructureDefinition/endpoint"],
            id="Endpoint-without-profile",
        ),
    ]


@pytest.mark.parametrize(("resource", "added"), _profile_cases())
async def test_default_profile_is_added_as_in_java(local: Local, resource: dict[str, Any], added: list[str]) -> None:
    sent = copy.deepcopy(resource)
    http = local.remote if sent["resourceType"] == "Task" else local.http
    if sent["resourceType"] == "Endpoint":
        sent["identifier"][0]["value"] = f"no-profile-{uuid.uuid4().hex[:8]}"
    created = await local.post(sent["resourceType"], orjson.dumps(sent), "application/fhir+json", http=http)
    assert created["meta"].get("profile", []) == added + sent["meta"].get("profile", [])


# --- Bundle -------------------------------------------------------------------------


def bundle_json(marker: str) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "meta": {"tag": [TAG_ALL]},
        "identifier": {"system": "http://dsf.dev/sid/test-bundle", "value": marker},
        "type": "collection",
        "entry": [
            {
                "fullUrl": "urn:uuid:1b6f0d0e-7d43-4c1e-9b4b-6a6f4a1f3c01",
                "resource": {
                    "resourceType": "Organization",
                    "text": {
                        "status": "generated",
                        "div": '<div xmlns="http://www.w3.org/1999/xhtml"><p>Klinikum &amp; <b>Co</b></p></div>',
                    },
                    "identifier": [{"system": codes.ORGANIZATION_IDENTIFIER, "value": f"{marker}.in.bundle"}],
                    "active": True,
                    "endpoint": [{"reference": "urn:uuid:1b6f0d0e-7d43-4c1e-9b4b-6a6f4a1f3c02"}],
                },
            },
            {
                "fullUrl": "urn:uuid:1b6f0d0e-7d43-4c1e-9b4b-6a6f4a1f3c02",
                "resource": {
                    "resourceType": "Endpoint",
                    "identifier": [{"system": codes.ENDPOINT_IDENTIFIER, "value": f"{marker}.endpoint"}],
                    "status": "active",
                    "connectionType": {"system": codes.ENDPOINT_CONNECTION_TYPE, "code": "hl7-fhir-rest"},
                    "payloadType": [{"coding": [{"system": "http://hl7.org/fhir/resource-types", "code": "Task"}]}],
                    "address": "https://bundle.test/fhir",
                },
            },
        ],
    }


def bundle_xml(marker: str) -> bytes:
    return (
        XML_DECLARATION
        + f"""<Bundle xmlns="http://hl7.org/fhir">
   <meta>
      <tag>
         <system value="http://dsf.dev/fhir/CodeSystem/read-access-tag"/>
         <code value="ALL"/>
      </tag>
   </meta>
   <identifier>
      <system value="http://dsf.dev/sid/test-bundle"/>
      <value value="{marker}"/>
   </identifier>
   <type value="collection"/>
   <entry>
      <fullUrl value="urn:uuid:1b6f0d0e-7d43-4c1e-9b4b-6a6f4a1f3c01"/>
      <resource>
         <Organization xmlns="http://hl7.org/fhir">
            <text>
               <status value="generated"/>
               <div xmlns="http://www.w3.org/1999/xhtml"><p>Klinikum &amp; <b>Co</b></p></div>
            </text>
            <identifier>
               <system value="http://dsf.dev/sid/organization-identifier"/>
               <value value="{marker}.in.bundle"/>
            </identifier>
            <active value="true"/>
            <endpoint>
               <reference value="urn:uuid:1b6f0d0e-7d43-4c1e-9b4b-6a6f4a1f3c02"/>
            </endpoint>
         </Organization>
      </resource>
   </entry>
   <entry>
      <fullUrl value="urn:uuid:1b6f0d0e-7d43-4c1e-9b4b-6a6f4a1f3c02"/>
      <resource>
         <Endpoint xmlns="http://hl7.org/fhir">
            <identifier>
               <system value="http://dsf.dev/sid/endpoint-identifier"/>
               <value value="{marker}.endpoint"/>
            </identifier>
            <status value="active"/>
            <connectionType>
               <system value="http://terminology.hl7.org/CodeSystem/endpoint-connection-type"/>
               <code value="hl7-fhir-rest"/>
            </connectionType>
            <payloadType>
               <coding>
                  <system value="http://hl7.org/fhir/resource-types"/>
                  <code value="Task"/>
               </coding>
            </payloadType>
            <address value="https://bundle.test/fhir"/>
         </Endpoint>
      </resource>
   </entry>
</Bundle>"""
    ).encode()


def check_bundle_xml(root: etree._Element, marker: str) -> None:
    assert values(root, "f:type") == ["collection"]
    assert values(root, "f:meta/f:tag/f:code") == ["ALL"]
    assert values(root, "f:identifier/f:value") == [marker]
    organization = root.xpath("f:entry[1]/f:resource/f:Organization", namespaces=NS)[0]
    assert values(organization, "f:identifier/f:value") == [f"{marker}.in.bundle"]
    [div] = organization.xpath("f:text/x:div", namespaces=NS | {"x": "http://www.w3.org/1999/xhtml"})
    assert "".join(div.itertext()) == "Klinikum & Co"
    assert values(root, "f:entry[2]/f:resource/f:Endpoint/f:address") == ["https://bundle.test/fhir"]


def comparable_bundle(bundle: dict[str, Any]) -> dict[str, Any]:
    """Without server meta and without meta.profile (see the default-profile test)."""
    bundle = strip_server_meta(bundle)
    bundle["meta"].pop("profile", None)
    return bundle


@pytest.mark.parametrize("form", ["json", "xml"])
async def test_collection_bundle_round_trips(local: Local, form: str) -> None:
    marker = f"bundle-{form}-{uuid.uuid4().hex[:8]}"
    expected = bundle_json(marker)
    if form == "json":
        created = await local.post("Bundle", orjson.dumps(expected), "application/fhir+json")
    else:
        created = await local.post("Bundle", bundle_xml(marker), "application/fhir+xml")
    _, read = await local.read_json("Bundle", created["id"])
    assert comparable_bundle(read) == comparable_bundle(expected)
    div = read["entry"][0]["resource"]["text"]["div"]
    assert etree.fromstring(div.encode()).xpath("string()") == "Klinikum & Co"
    check_bundle_xml(await local.read_xml("Bundle", created["id"]), marker)

    # Tagged ALL: remotes read it, and the resources inside were not written on their own.
    _, by_remote = await local.read_json("Bundle", created["id"], http=local.remote)
    assert by_remote == read
    response = await local.http.get(
        local.mb.url("Organization"), params={"identifier": f"{codes.ORGANIZATION_IDENTIFIER}|{marker}.in.bundle"}
    )
    assert (await response.json())["total"] == 0
    response = await local.http.get(local.mb.url("Bundle"), params={"identifier": f"http://dsf.dev/sid/test-bundle|{marker}"})
    assert [e["resource"]["id"] for e in (await response.json())["entry"]] == [created["id"]]


# --- decimals -----------------------------------------------------------------------


def draft_task_with_decimal(identifier: str) -> dict[str, Any]:
    task = ping_task("local.test")
    task["status"] = "draft"
    task["identifier"] = [{"system": codes.TASK_IDENTIFIER, "value": f"http://dsf.dev/bpe/Process/pong/1.0/{identifier}"}]
    task["input"].append(
        {"type": {"coding": [{"system": "http://dsf.dev/fhir/CodeSystem/ping", "code": "network-speed"}]}, "valueDecimal": 1.5}
    )
    return task


async def post_xml_task_with_decimal(local: Local) -> str:
    """A Task in XML whose decimal is written as Java's BigDecimal renders it: 1.50."""
    root = etree.fromstring(to_xml(draft_task_with_decimal(uuid.uuid4().hex)))
    root.xpath("f:input[last()]/f:valueDecimal", namespaces=NS)[0].set("value", "1.50")
    response = await local.http.post(local.mb.url("Task"), data=etree.tostring(root), headers=XML_IN_JSON_OUT)
    assert response.status == 201, await response.text()
    return str((await response.json())["id"])


async def test_xml_decimal_is_stored_with_its_precision(local: Local) -> None:
    id_ = await post_xml_task_with_decimal(local)
    raw, _ = await local.read_json("Task", id_)
    assert b'"valueDecimal":1.50' in raw


@pytest.mark.parametrize("output", ["xml", "pretty-json"])
async def test_decimal_keeps_its_precision_in_xml_and_pretty_output(local: Local, output: str) -> None:
    id_ = await post_xml_task_with_decimal(local)
    if output == "xml":
        response = await local.http.get(local.mb.url(f"Task/{id_}"), params={"_format": "xml"})
        root = etree.fromstring(await response.read())
        assert values(root, "f:input[last()]/f:valueDecimal") == ["1.50"]
    else:
        response = await local.http.get(local.mb.url(f"Task/{id_}"), params={"_format": "json", "_pretty": "true"})
        assert b'"valueDecimal": 1.50' in await response.read()


async def test_json_decimal_keeps_its_precision(local: Local) -> None:
    body = orjson.dumps(draft_task_with_decimal(uuid.uuid4().hex)).replace(b'"valueDecimal":1.5', b'"valueDecimal":1.50')
    assert b"1.50" in body
    created = await local.post("Task", body, "application/fhir+json")
    raw, _ = await local.read_json("Task", created["id"])
    assert b'"valueDecimal":1.50' in raw


# --- content negotiation ------------------------------------------------------------


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def endpoint_id(local: Local) -> str:
    name = f"negotiation-{uuid.uuid4().hex[:8]}"
    endpoint = await local.post("Endpoint", endpoint_xml(name), "application/fhir+xml")
    return endpoint["id"]  # type: ignore[no-any-return]


NEGOTIATION = [
    # (query, Accept header, expected kind)
    ({}, None, "xml"),  # aiohttp sends Accept: */*
    ({}, "*/*", "xml"),
    ({}, "application/fhir+json", "json"),
    ({}, "application/json", "json"),
    ({}, "application/json+fhir", "json"),
    ({}, "application/fhir+xml", "xml"),
    ({}, "application/xml", "xml"),
    ({}, "application/xml+fhir", "xml"),
    ({}, "text/xml", "xml"),
    ({}, "application/fhir+xml;q=1.0, application/xml+fhir;q=0.9", "xml"),  # HAPI client, XML
    ({}, "application/fhir+json;q=1.0, application/json+fhir;q=0.9", "json"),  # HAPI client, JSON
    ({"_format": "json"}, "application/fhir+xml", "json"),  # _format wins over Accept
    ({"_format": "xml"}, "application/fhir+json", "xml"),
    ({"_format": "application/fhir+xml"}, "application/fhir+json", "xml"),
    ({"_format": "application/fhir+json"}, None, "json"),
    ({"_format": "application/xml"}, None, "xml"),
    ({"_format": "text/xml"}, None, "xml"),
]


@pytest.mark.parametrize(("query", "accept", "kind"), NEGOTIATION)
async def test_content_negotiation(local: Local, endpoint_id: str, query: dict[str, str], accept: str | None, kind: str) -> None:
    headers = {"Accept": accept} if accept else {}
    async with local.mb.client("local.test", json=False) as http:
        response = await http.get(local.mb.url(f"Endpoint/{endpoint_id}"), params=query, headers=headers)
        assert response.status == 200
        raw = await response.read()
    assert response.headers["Content-Type"].startswith(f"application/fhir+{kind}")
    if kind == "json":
        assert orjson.loads(raw)["id"] == endpoint_id
    else:
        root = etree.fromstring(raw)
        assert root.tag == f"{{{FHIR_NS}}}Endpoint"
        assert values(root, "f:id") == [endpoint_id]


async def test_pretty_output_is_the_same_resource(local: Local, endpoint_id: str) -> None:
    url = local.mb.url(f"Endpoint/{endpoint_id}")
    plain = await (await local.http.get(url, params={"_format": "json"})).read()
    pretty = await (await local.http.get(url, params={"_format": "json", "_pretty": "true"})).read()
    assert b"\n" not in plain.strip()
    assert b'\n  "resourceType": "Endpoint"' in pretty
    assert orjson.loads(pretty) == orjson.loads(plain)

    plain_xml = await (await local.http.get(url, params={"_format": "xml"})).read()
    pretty_xml = await (await local.http.get(url, params={"_format": "xml", "_pretty": "true"})).read()
    assert pretty_xml.count(b"\n") > 10
    assert parse_xml(pretty_xml) == parse_xml(plain_xml) == orjson.loads(plain)

    bundle = await local.http.get(local.mb.url("Endpoint"), params={"_pretty": "true", "_format": "xml", "_id": endpoint_id})
    root = etree.fromstring(await bundle.read())
    assert values(root, "f:type") == ["searchset"]
    assert values(root, "f:entry/f:resource/f:Endpoint/f:id") == [endpoint_id]


async def test_search_bundle_in_both_formats(local: Local, endpoint_id: str) -> None:
    params = {"_id": endpoint_id}
    as_json = await (await local.http.get(local.mb.url("Endpoint"), params=params | {"_format": "json"})).json()
    raw_xml = await (await local.http.get(local.mb.url("Endpoint"), params=params | {"_format": "xml"})).read()
    from_xml = parse_xml(raw_xml)
    for bundle in (as_json, from_xml):
        bundle.pop("id"), bundle.pop("meta")
    assert from_xml == as_json
    assert as_json["total"] == 1


async def test_unknown_format_is_415(local: Local, endpoint_id: str) -> None:
    response = await local.http.get(local.mb.url(f"Endpoint/{endpoint_id}"), params={"_format": "turtle"})
    await assert_outcome(response, 415, "not-supported")


@pytest.mark.parametrize(
    "content_type",
    ["application/fhir+xml", "application/fhir+xml;charset=UTF-8", "application/xml+fhir", "application/xml", "text/xml"],
)
async def test_xml_content_types_java_clients_use(local: Local, content_type: str) -> None:
    created = await local.post("Endpoint", endpoint_xml(f"ct-{uuid.uuid4().hex[:8]}"), content_type)
    assert created["resourceType"] == "Endpoint"


@pytest.mark.parametrize(
    "content_type", ["application/fhir+json", "application/fhir+json;charset=UTF-8", "application/json+fhir", "application/json"]
)
async def test_json_content_types_java_clients_use(local: Local, content_type: str) -> None:
    created = await local.post("Endpoint", orjson.dumps(endpoint_json(f"ct-{uuid.uuid4().hex[:8]}")), content_type)
    assert created["resourceType"] == "Endpoint"


# --- bad bodies ---------------------------------------------------------------------

ORG_JSON = orjson.dumps(
    {
        "resourceType": "Organization",
        "meta": {"tag": [TAG_ALL]},
        "identifier": [{"system": codes.ORGANIZATION_IDENTIFIER, "value": "never.test"}],
        "active": True,
    }
)

BAD_BODIES = {
    "malformed JSON": (b'{"resourceType": "Organization", "active": tru', "application/fhir+json"),
    "JSON array": (b"[]", "application/fhir+json"),
    "empty body": (b"", "application/fhir+json"),
    "missing resourceType": (b'{"active": true}', "application/fhir+json"),
    "wrong resourceType (JSON)": (b'{"resourceType": "Endpoint", "status": "active"}', "application/fhir+json"),
    "unknown JSON element": (ORG_JSON.replace(b'"active"', b'"activ"'), "application/fhir+json"),
    "malformed XML": (b'<Organization xmlns="http://hl7.org/fhir"><active value="true"></Organization>', "application/fhir+xml"),
    "XML not in the FHIR namespace": (b'<Organization><active value="true"/></Organization>', "application/fhir+xml"),
    "wrong resourceType (XML)": (b'<Endpoint xmlns="http://hl7.org/fhir"><status value="active"/></Endpoint>', "application/fhir+xml"),
    "XML DOCTYPE with internal entity": (
        b'<?xml version="1.0"?><!DOCTYPE Organization [<!ENTITY x "boom">]>'
        b'<Organization xmlns="http://hl7.org/fhir"><name value="&x;"/></Organization>',
        "application/fhir+xml",
    ),
    "XML external entity (XXE)": (
        b'<?xml version="1.0"?><!DOCTYPE Organization [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b'<Organization xmlns="http://hl7.org/fhir"><name value="&x;"/></Organization>',
        "application/fhir+xml",
    ),
    "billion laughs": (
        b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
        b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]><Organization xmlns="http://hl7.org/fhir"><name value="&c;"/></Organization>',
        "application/fhir+xml",
    ),
    "JSON sent as XML": (ORG_JSON, "application/fhir+xml"),
    "XML sent as JSON": (b'<Organization xmlns="http://hl7.org/fhir"/>', "application/fhir+json"),
}


@pytest.mark.parametrize("case", list(BAD_BODIES))
async def test_bad_body_is_400_invalid(local: Local, case: str) -> None:
    body, content_type = BAD_BODIES[case]
    response = await local.http.post(
        local.mb.url("Organization"), data=body, headers={"Content-Type": content_type, "Accept": "application/fhir+json"}
    )
    await assert_outcome(response, 400, "invalid")
    response = await local.http.get(
        local.mb.url("Organization"), params={"identifier": f"{codes.ORGANIZATION_IDENTIFIER}|never.test"}
    )
    assert (await response.json())["total"] == 0


@pytest.mark.parametrize("content_type", ["text/plain", "application/octet-stream", "application/x-www-form-urlencoded", None])
async def test_unsupported_content_type_is_415(local: Local, content_type: str | None) -> None:
    headers = {"Accept": "application/fhir+json"} | ({"Content-Type": content_type} if content_type else {})
    response = await local.http.post(local.mb.url("Organization"), data=ORG_JSON, headers=headers)
    await assert_outcome(response, 415, "not-supported")


@pytest.mark.parametrize("form", ["json", "xml"])
async def test_put_with_another_id_is_400_invalid(local: Local, form: str) -> None:
    name = f"put-{form}-{uuid.uuid4().hex[:8]}"
    endpoint = await local.post("Endpoint", orjson.dumps(endpoint_json(name)), "application/fhir+json")
    changed = endpoint_json(name) | {"id": str(uuid.uuid4()), "address": "https://changed.test/fhir"}
    if form == "json":
        body, content_type = orjson.dumps(changed), "application/fhir+json"
    else:
        body, content_type = to_xml(changed), "application/fhir+xml"
    response = await local.http.put(
        local.mb.url(f"Endpoint/{endpoint['id']}"), data=body, headers={"Content-Type": content_type, "Accept": "application/fhir+json"}
    )
    await assert_outcome(response, 400, "invalid")
    _, read = await local.read_json("Endpoint", endpoint["id"])
    assert read["address"] == f"https://{name}/fhir"
    assert read["meta"]["versionId"] == "1"

    # With the right id (XML or JSON alike) the update goes through.
    changed["id"] = endpoint["id"]
    body = orjson.dumps(changed) if form == "json" else to_xml(changed)
    response = await local.http.put(
        local.mb.url(f"Endpoint/{endpoint['id']}"), data=body, headers={"Content-Type": content_type, "Accept": "application/fhir+json"}
    )
    assert response.status == 200, await response.text()
    assert (await response.json())["address"] == "https://changed.test/fhir"


async def test_errors_come_back_in_the_negotiated_format(local: Local) -> None:
    response = await local.http.post(
        local.mb.url("Organization"),
        data=b"<Organization",
        headers={"Content-Type": "application/fhir+xml", "Accept": "application/fhir+xml"},
    )
    assert response.status == 400
    assert response.headers["Content-Type"].startswith("application/fhir+xml")
    root = etree.fromstring(await response.read())
    assert root.tag == f"{{{FHIR_NS}}}OperationOutcome"
    assert values(root, "f:issue/f:code") == ["invalid"]
    assert values(root, "f:issue/f:severity") == ["error"]
