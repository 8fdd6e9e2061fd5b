"""Task authorization with the Java ping/pong plugin's ActivityDefinitions (dsf-plugins §4.1, dsf-core §2.6/2.7).

The plugin's FHIR resources (``dsf-ping-pong-1.0.1.0/fhir``) are loaded as the Java BPE
deploys them (``#{version}`` → 1.0, ``#{date}`` → a date, status ``unknown`` → ``active``).
``pong`` accepts the message ``ping`` (profile ``task-ping``) from REMOTE_ALL and LOCAL_ALL;
``ping`` accepts ``startPing`` (profile ``task-start-ping``) from LOCAL_ALL only.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from lxml import etree

from dsf_core.fhir import codes
from dsf_core.testing.mailbox import MailboxHarness
from tests.compat.helpers import (
    BACKENDS,
    FHIR_NS,
    JSON,
    PING_PONG,
    XML_IN_JSON_OUT,
    assert_outcome,
    harness,
    org_ref,
    require_reference,
)
from tests.compat.ping_pong import (
    PING_SYSTEM,
    PING_XML,
    PROCESS,
    PROFILE,
    deployed,
    message_input,
    ping_task,
    start_ping_task,
)

REMOTES = {"remote.test": ["DIC"], "other.test": ["DIC"]}


@dataclass
class World:
    mb: MailboxHarness
    http: dict[str, aiohttp.ClientSession]

    async def post_task(self, who: str, task: dict[str, Any]) -> aiohttp.ClientResponse:
        response = await self.http[who].post(self.mb.url("Task"), json=task, headers=JSON)
        await response.read()
        return response


def plugin_files() -> list[Path]:
    return sorted(p for p in PING_PONG.rglob("*.xml") if p.parent.name != "Task")


async def load_plugin(mb: MailboxHarness, http: aiohttp.ClientSession) -> None:
    for path in plugin_files():
        response = await http.post(mb.url(path.parent.name), data=deployed(path.read_text()), headers=XML_IN_JSON_OUT)
        assert response.status == 201, (path, await response.text())


async def load_pong(mb: MailboxHarness, http: aiohttp.ClientSession, version: str, status: str) -> dict[str, Any]:
    text = (PING_PONG / "ActivityDefinition" / "dsf-pong.xml").read_text()
    response = await http.post(mb.url("ActivityDefinition"), data=deployed(text, version=version, status=status), headers=XML_IN_JSON_OUT)
    assert response.status == 201, await response.text()
    return await response.json()  # type: ignore[no-any-return]


@pytest_asyncio.fixture(scope="module", loop_scope="session", params=BACKENDS)
async def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    require_reference()
    directory = tmp_path_factory.mktemp(f"ping-pong-{request.param}")
    async with harness(request, request.param, directory, remotes=REMOTES) as mb:
        sessions = {who: mb.client(who) for who in ("local.test", *REMOTES)}
        try:
            await load_plugin(mb, sessions["local.test"])
            await load_pong(mb, sessions["local.test"], "1.1", "retired")
            await load_pong(mb, sessions["local.test"], "1.2", "draft")
            yield World(mb, sessions)
        finally:
            for session in sessions.values():
                await session.close()


# --- the plugin's resources ---------------------------------------------------------


async def test_plugin_activity_definitions_are_stored_as_deployed(world: World) -> None:
    http = world.http["remote.test"]  # tagged ALL: remotes read them too
    response = await http.get(world.mb.url("ActivityDefinition"), params={"url": PROCESS + "pong", "version": "1.0"})
    [entry] = (await response.json())["entry"]
    pong = entry["resource"]
    assert pong["status"] == "active"
    assert pong["date"] == "2024-06-01"
    [authorization] = [e for e in pong["extension"] if e["url"] == codes.EXT_PROCESS_AUTHORIZATION]
    parts = [(e["url"], e.get("valueString") or e.get("valueCanonical") or e["valueCoding"]["code"]) for e in authorization["extension"]]
    assert parts == [
        ("message-name", "ping"),
        ("task-profile", PROFILE + "task-ping|1.0"),
        ("requester", "REMOTE_ALL"),
        ("requester", "LOCAL_ALL"),
        ("recipient", "LOCAL_ALL"),
    ]
    response = await http.get(world.mb.url(f"ActivityDefinition/{pong['id']}"), params={"_format": "xml"})
    root = etree.fromstring(await response.read())
    ns = {"f": FHIR_NS}
    codes_in_xml = root.xpath("f:extension/f:extension[@url='requester']/f:valueCoding/f:code/@value", namespaces=ns)
    assert codes_in_xml == ["REMOTE_ALL", "LOCAL_ALL"]

    response = await http.get(world.mb.url("ActivityDefinition"), params={"url": PROCESS + "ping", "version": "1.0"})
    [entry] = (await response.json())["entry"]
    messages = [
        next(x["valueString"] for x in e["extension"] if x["url"] == "message-name")
        for e in entry["resource"]["extension"]
        if e["url"] == codes.EXT_PROCESS_AUTHORIZATION
    ]
    assert messages == ["startPing", "pong"]
    response = await http.get(world.mb.url("StructureDefinition"), params={"url": PROFILE + "task-ping", "version": "1.0"})
    assert (await response.json())["total"] == 1


# --- ping: REMOTE_ALL or LOCAL_ALL → LOCAL_ALL --------------------------------------


async def test_remote_ping_is_accepted(world: World) -> None:
    response = await world.post_task("remote.test", ping_task())
    assert response.status == 201, await response.text()
    task = await response.json()
    assert task["status"] == "requested"
    assert task["requester"] == org_ref("remote.test")
    assert task["restriction"]["recipient"] == [org_ref("local.test")]
    assert PROFILE + "task-ping|1.0" in task["meta"]["profile"]


async def test_remote_ping_as_java_xml_is_accepted(world: World) -> None:
    http = world.http["remote.test"]
    response = await http.post(world.mb.url("Task"), data=PING_XML.encode(), headers=XML_IN_JSON_OUT)
    assert response.status == 201, await response.text()
    task = await response.json()
    assert [i.get("valueString") for i in task["input"][:3]] == [
        "ping",
        "5e2b8f61-1b7c-4c55-9a43-5b8a1f0f8a01",
        "5e2b8f61-1b7c-4c55-9a43-5b8a1f0f8a02",
    ]
    assert task["input"][3]["valueReference"]["identifier"]["value"] == "remote.test-endpoint"


async def test_local_ping_is_accepted(world: World) -> None:
    """LOCAL_ALL is a requester of ``ping`` too (a node may ping itself)."""
    response = await world.post_task("local.test", ping_task("local.test"))
    assert response.status == 201, await response.text()


async def test_unversioned_task_profile_matches_versioned_authorization(world: World) -> None:
    """As Java: a Task naming the profile without version matches ``task-ping|1.0`` in the ActivityDefinition."""
    response = await world.post_task("remote.test", ping_task(profile=PROFILE + "task-ping"))
    assert response.status == 201, await response.text()


async def test_draft_activity_definition_authorizes(world: World) -> None:
    task = ping_task(profile=PROFILE + "task-ping|1.2", canonical=PROCESS + "pong|1.2")
    response = await world.post_task("remote.test", task)
    assert response.status == 201, await response.text()


def _two_message_names(task: dict[str, Any]) -> None:
    task["input"].append(message_input("message-name", "ping"))


def _with_output(task: dict[str, Any]) -> None:
    task["output"] = [{"type": {"coding": [{"system": PING_SYSTEM, "code": "pong-status"}]}, "valueString": "x"}]


def _with_task_identifier(task: dict[str, Any]) -> None:
    task["identifier"] = [{"system": codes.TASK_IDENTIFIER, "value": PROCESS + "pong/1.0/ping"}]


def _as_draft(task: dict[str, Any]) -> None:
    task["status"] = "draft"
    _with_task_identifier(task)


def _blank_message_name(task: dict[str, Any]) -> None:
    task["input"][0]["valueString"] = " "


def _no_recipient(task: dict[str, Any]) -> None:
    del task["restriction"]


def _two_recipients(task: dict[str, Any]) -> None:
    task["restriction"]["recipient"].append(org_ref("other.test"))


# case -> (Task, change, a word the diagnostics name: which rule denied)
DENIED: dict[str, tuple[dict[str, Any], Callable[[dict[str, Any]], None] | None, str]] = {
    "message-name pong (not authorised by pong)": (ping_task(message_name="pong"), None, "authoriz"),
    "task-pong profile": (ping_task(profile=PROFILE + "task-pong|1.0"), None, "authoriz"),
    "profile of another version": (ping_task(profile=PROFILE + "task-ping|1.1"), None, "authoriz"),
    "requester is not the caller": (ping_task("other.test"), None, "requester"),
    "requester is the local organisation": (ping_task("local.test"), None, "requester"),
    "recipient is not the local organisation": (ping_task(recipient="other.test"), None, "recipient"),
    "no recipient": (ping_task(), _no_recipient, "recipient"),
    "two recipients": (ping_task(), _two_recipients, "recipient"),
    "two message-name inputs": (ping_task(), _two_message_names, "message-name"),
    "blank message-name": (ping_task(), _blank_message_name, "message-name"),
    "output present": (ping_task(), _with_output, "output"),
    "task-identifier present": (ping_task(), _with_task_identifier, "identifier"),
    "draft from a remote": (ping_task(), _as_draft, "draft"),
    "unknown process": (ping_task(canonical=PROCESS + "unknown|1.0"), None, "ActivityDefinition"),
    "unknown process version": (ping_task(canonical=PROCESS + "pong|9.9"), None, "ActivityDefinition"),
    "canonical without version": (ping_task(canonical=PROCESS + "pong"), None, "instantiatesCanonical"),
    "retired ActivityDefinition": (
        ping_task(profile=PROFILE + "task-ping|1.1", canonical=PROCESS + "pong|1.1"),
        None,
        "ActivityDefinition",
    ),
    "startPing from a remote": (start_ping_task("remote.test"), None, "requester"),
    "startPing impersonating local": (start_ping_task("local.test"), None, "requester"),
}


@pytest.mark.parametrize("case", list(DENIED))
async def test_remote_task_is_denied(world: World, case: str) -> None:
    template, change, rule = DENIED[case]
    task = copy.deepcopy(template)
    if change is not None:
        change(task)
    response = await world.post_task("remote.test", task)
    outcome = await assert_outcome(response, 403, "forbidden")
    assert rule.lower() in outcome["issue"][0]["diagnostics"].lower()


async def test_retiring_the_activity_definition_stops_authorizing(world: World) -> None:
    local = world.http["local.test"]
    pong = await load_pong(world.mb, local, "1.3", "active")
    task = ping_task(profile=PROFILE + "task-ping|1.3", canonical=PROCESS + "pong|1.3")
    response = await world.post_task("remote.test", task)
    assert response.status == 201, await response.text()

    pong["status"] = "retired"
    response = await local.put(world.mb.url(f"ActivityDefinition/{pong['id']}"), json=pong, headers=JSON)
    assert response.status == 200, await response.text()
    response = await world.post_task("remote.test", task)
    await assert_outcome(response, 403, "forbidden")


async def test_local_requested_task_with_task_identifier_is_denied_as_in_java(world: World) -> None:
    """Java's TaskAuthorizationRule.requestedTaskOk rejects a task-identifier on *any* requested Task."""
    task = ping_task("local.test")
    _with_task_identifier(task)
    response = await world.post_task("local.test", task)
    await assert_outcome(response, 403, "forbidden")


async def test_local_draft_task_must_be_from_and_to_the_local_organisation_as_in_java(world: World) -> None:
    """Java's TaskAuthorizationRule.draftTaskOk: a draft's requester and recipient are the local organisation."""
    task = start_ping_task("remote.test")
    task["status"] = "draft"
    task["identifier"] = [{"system": codes.TASK_IDENTIFIER, "value": PROCESS + "ping/1.0/foreign-requester"}]
    response = await world.post_task("local.test", task)
    await assert_outcome(response, 403, "forbidden")


# --- startPing: LOCAL_ALL → LOCAL_ALL -----------------------------------------------


async def test_start_ping_is_allowed_for_the_local_organisation(world: World) -> None:
    response = await world.post_task("local.test", start_ping_task())
    assert response.status == 201, await response.text()


async def test_start_ping_from_the_plugins_draft_template(world: World) -> None:
    """``Task/dsf-task-start-ping.xml`` as the UI uses it: stored as draft, then sent as requested."""
    local = world.http["local.test"]
    template = deployed((PING_PONG / "Task" / "dsf-task-start-ping.xml").read_text())
    response = await local.post(world.mb.url("Task"), data=template, headers=XML_IN_JSON_OUT)
    assert response.status == 201, await response.text()
    draft = await response.json()
    assert draft["status"] == "draft"
    assert draft["identifier"] == [{"system": codes.TASK_IDENTIFIER, "value": PROCESS + "ping/1.0/task-start-ping"}]

    response = await local.post(world.mb.url("Task"), data=template, headers=XML_IN_JSON_OUT)
    await assert_outcome(response, 403, "forbidden")  # the draft identifier is unique
    response = await world.http["remote.test"].post(world.mb.url("Task"), data=template, headers=XML_IN_JSON_OUT)
    await assert_outcome(response, 403, "forbidden")  # drafts are local

    root = etree.fromstring(template)
    ns = {"f": FHIR_NS}
    for identifier in root.xpath("f:identifier", namespaces=ns):
        root.remove(identifier)
    root.xpath("f:status", namespaces=ns)[0].set("value", "requested")
    response = await local.post(world.mb.url("Task"), data=etree.tostring(root), headers=XML_IN_JSON_OUT)
    assert response.status == 201, await response.text()
    started = await response.json()
    assert started["status"] == "requested"
    assert started["input"][1]["valueString"] == "Endpoint?status=active&identifier=http://dsf.dev/sid/endpoint-identifier|"


# --- who sees which Task ------------------------------------------------------------


async def _task_ids(http: aiohttp.ClientSession, mb: MailboxHarness, **params: str) -> tuple[int, set[str]]:
    response = await http.get(mb.url("Task"), params=params)
    assert response.status == 200
    bundle = await response.json()
    return bundle["total"], {e["resource"]["id"] for e in bundle.get("entry", [])}


async def test_task_visibility_per_identity(tmp_path: Path, database_url: str) -> None:
    require_reference()
    async with MailboxHarness(tmp_path, database_url=database_url, remotes=REMOTES) as mb:
        sessions = {who: mb.client(who) for who in ("local.test", *REMOTES)}
        try:
            world = World(mb, sessions)
            await load_plugin(mb, sessions["local.test"])
            created: dict[str, list[str]] = {who: [] for who in sessions}
            for who, task in [
                ("remote.test", ping_task("remote.test")),
                ("remote.test", ping_task("remote.test")),
                ("other.test", ping_task("other.test")),
                ("local.test", start_ping_task()),
            ]:
                response = await world.post_task(who, task)
                assert response.status == 201, await response.text()
                created[who].append((await response.json())["id"])
            remote, other, local = sessions["remote.test"], sessions["other.test"], sessions["local.test"]

            # The requester reads its own Task back ...
            response = await remote.get(mb.url(f"Task/{created['remote.test'][0]}"))
            assert response.status == 200
            assert (await response.json())["requester"] == org_ref("remote.test")
            response = await remote.get(mb.url(f"Task/{created['remote.test'][0]}/_history"))
            assert response.status == 200
            # ... but not another organisation's, nor the local one's.
            await assert_outcome(await remote.get(mb.url(f"Task/{created['other.test'][0]}")), 403, "forbidden")
            await assert_outcome(await remote.get(mb.url(f"Task/{created['local.test'][0]}")), 403, "forbidden")
            await assert_outcome(await other.get(mb.url(f"Task/{created['remote.test'][1]}")), 403, "forbidden")
            await assert_outcome(
                await remote.get(mb.url(f"Task/{created['other.test'][0]}/_history")), 403, "forbidden"
            )

            # Searches and their totals are per identity.
            assert await _task_ids(remote, mb) == (2, set(created["remote.test"]))
            assert await _task_ids(other, mb) == (1, set(created["other.test"]))
            everything = {i for ids in created.values() for i in ids}
            assert await _task_ids(local, mb) == (4, everything)
            assert await _task_ids(local, mb, status="requested") == (4, everything)
            assert await _task_ids(remote, mb, _id=created["other.test"][0]) == (0, set())
            assert await _task_ids(remote, mb, _count="0") == (2, set())
            total, _ = await _task_ids(remote, mb, requester=f"{codes.ORGANIZATION_IDENTIFIER}|other.test")
            assert total == 0
            response = await remote.get(mb.url("Task/_history"))
            history = await response.json()
            assert {e["resource"]["id"] for e in history.get("entry", [])} == set(created["remote.test"])

            # A remote may neither change nor delete its own Task.
            response = await remote.get(mb.url(f"Task/{created['remote.test'][0]}"))
            task = await response.json()
            task["status"] = "in-progress"
            task["input"].append(message_input("business-key", "x"))
            response = await remote.put(mb.url(f"Task/{task['id']}"), json=task, headers=JSON)
            await assert_outcome(response, 403, "forbidden")
            await assert_outcome(await remote.delete(mb.url(f"Task/{task['id']}")), 403, "forbidden")
        finally:
            for session in sessions.values():
                await session.close()
