"""Table-driven authorization: identity × interaction → DSF status code and OperationOutcome code.

Identities: the local organisation, a remote organisation holding the role the
ActivityDefinition asks for (DIC in parent.test), a remote without it, an unknown
certificate, and no certificate (TLS never completes).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from dsf_core.fhir import codes
from dsf_core.testing.mailbox import MailboxHarness

JSON = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
PROCESS = "http://test.org/bpe/Process/hello"
PROFILE = "http://test.org/fhir/StructureDefinition/task-hello"


def tag(code: str, **extension: Any) -> dict[str, Any]:
    t: dict[str, Any] = {"system": codes.READ_ACCESS_TAG, "code": code}
    if "organization" in extension:
        t["extension"] = [
            {
                "url": codes.EXT_READ_ACCESS_ORGANIZATION,
                "valueIdentifier": {"system": codes.ORGANIZATION_IDENTIFIER, "value": extension["organization"]},
            }
        ]
    if "role" in extension:
        parent, role = extension["role"]
        t["extension"] = [
            {
                "url": codes.EXT_READ_ACCESS_ROLE,
                "extension": [
                    {"url": "parent-organization", "valueIdentifier": {"system": codes.ORGANIZATION_IDENTIFIER, "value": parent}},
                    {"url": "organization-role", "valueCoding": {"system": codes.ORGANIZATION_ROLE, "code": role}},
                ],
            }
        ]
    return t


def code_system(name: str, tags: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "CodeSystem",
        "meta": {"tag": tags},
        "url": f"http://test.org/fhir/CodeSystem/{name}",
        "version": "1.0",
        "name": name,
        "status": "active",
        "content": "complete",
        "concept": [{"code": "a"}],
    }


def activity_definition() -> dict[str, Any]:
    role = {
        "url": codes.EXT_PA_ROLE,
        "extension": [
            {"url": "parent-organization", "valueIdentifier": {"system": codes.ORGANIZATION_IDENTIFIER, "value": "parent.test"}},
            {"url": "organization-role", "valueCoding": {"system": codes.ORGANIZATION_ROLE, "code": "DIC"}},
        ],
    }
    return {
        "resourceType": "ActivityDefinition",
        "meta": {"tag": [tag("ALL")]},
        "extension": [
            {
                "url": codes.EXT_PROCESS_AUTHORIZATION,
                "extension": [
                    {"url": "message-name", "valueString": "hello"},
                    {"url": "task-profile", "valueCanonical": f"{PROFILE}|1.0"},
                    {
                        "url": "requester",
                        "valueCoding": {"system": codes.PROCESS_AUTHORIZATION, "code": "REMOTE_ROLE", "extension": [role]},
                    },
                    {"url": "requester", "valueCoding": {"system": codes.PROCESS_AUTHORIZATION, "code": "LOCAL_ALL"}},
                    {"url": "recipient", "valueCoding": {"system": codes.PROCESS_AUTHORIZATION, "code": "LOCAL_ALL"}},
                ],
            }
        ],
        "url": PROCESS,
        "version": "1.0",
        "name": "Hello",
        "status": "active",
        "kind": "Task",
    }


def task(requester: str, recipient: str = "local.test") -> dict[str, Any]:
    def ref(value: str) -> dict[str, Any]:
        return {"type": "Organization", "identifier": {"system": codes.ORGANIZATION_IDENTIFIER, "value": value}}

    def message_input(code: str, value: str) -> dict[str, Any]:
        return {"type": {"coding": [{"system": codes.BPMN_MESSAGE, "code": code}]}, "valueString": value}

    return {
        "resourceType": "Task",
        "meta": {"profile": [f"{PROFILE}|1.0"]},
        "instantiatesCanonical": f"{PROCESS}|1.0",
        "status": "requested",
        "intent": "order",
        "authoredOn": "2026-11-22T10:00:00+01:00",
        "requester": ref(requester),
        "restriction": {"recipient": [ref(recipient)]},
        "input": [message_input("message-name", "hello"), message_input("business-key", "bk-1")],
    }


class World:
    """Resources created by the local organisation before the table runs."""

    def __init__(self, mb: MailboxHarness) -> None:
        self.mb = mb
        self.ids: dict[str, str] = {}


@pytest_asyncio.fixture(loop_scope="session")
async def world(tmp_path: Path, database_url: str) -> AsyncIterator[World]:
    remotes = {"remote.test": ["DIC"], "other.test": ["COS"]}
    async with MailboxHarness(tmp_path, database_url=database_url, remotes=remotes) as mb:
        w = World(mb)
        async with mb.client("local.test") as http:
            for key, resource in {
                "all": code_system("all", [tag("ALL")]),
                "local": code_system("local", [tag("LOCAL")]),
                "role": code_system("role", [tag("LOCAL"), tag("ROLE", role=("parent.test", "DIC"))]),
                "org": code_system("org", [tag("LOCAL"), tag("ORGANIZATION", organization="other.test")]),
                "ad": activity_definition(),
            }.items():
                r = await http.post(mb.url(resource["resourceType"]), json=resource, headers=JSON)
                assert r.status == 201, await r.text()
                w.ids[key] = (await r.json())["id"]
        yield w


async def call(mb: MailboxHarness, who: str, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    async with mb.client(who) as http:
        response = await http.request(method, mb.url(path), json=body, headers=JSON)
        payload = await response.json(content_type=None) if response.content_length != 0 else None
        return response.status, payload


# (identity, method, path-template, body-key, status, issue code)
TABLE: list[tuple[str, str, str, str | None, int, str | None]] = [
    # read by tag
    ("local.test", "GET", "CodeSystem/{all}", None, 200, None),
    ("local.test", "GET", "CodeSystem/{local}", None, 200, None),
    ("remote.test", "GET", "CodeSystem/{all}", None, 200, None),
    ("remote.test", "GET", "CodeSystem/{local}", None, 403, "forbidden"),
    ("remote.test", "GET", "CodeSystem/{role}", None, 200, None),
    ("remote.test", "GET", "CodeSystem/{org}", None, 403, "forbidden"),
    ("other.test", "GET", "CodeSystem/{role}", None, 403, "forbidden"),
    ("other.test", "GET", "CodeSystem/{org}", None, 200, None),
    ("unknown.test", "GET", "CodeSystem/{all}", None, 401, "login"),
    # vread and history follow read access
    ("remote.test", "GET", "CodeSystem/{all}/_history/1", None, 200, None),
    ("remote.test", "GET", "CodeSystem/{local}/_history/1", None, 403, "forbidden"),
    ("remote.test", "GET", "CodeSystem/{all}/_history", None, 200, None),
    ("remote.test", "GET", "CodeSystem/{local}/_history", None, 403, "forbidden"),
    ("unknown.test", "GET", "CodeSystem/_history", None, 401, "login"),
    # search
    ("local.test", "GET", "CodeSystem", None, 200, None),
    ("remote.test", "GET", "CodeSystem", None, 200, None),
    ("unknown.test", "GET", "CodeSystem", None, 401, "login"),
    # create
    ("local.test", "POST", "CodeSystem", "new-cs", 201, None),
    ("remote.test", "POST", "CodeSystem", "new-cs", 403, "forbidden"),
    ("other.test", "POST", "CodeSystem", "new-cs", 403, "forbidden"),
    ("unknown.test", "POST", "CodeSystem", "new-cs", 401, "login"),
    # Task create: the ActivityDefinition admits remote DIC members and the local organisation
    ("local.test", "POST", "Task", "task-local", 201, None),
    ("remote.test", "POST", "Task", "task-remote", 201, None),
    ("other.test", "POST", "Task", "task-other", 403, "forbidden"),
    ("remote.test", "POST", "Task", "task-impersonating", 403, "forbidden"),
    ("unknown.test", "POST", "Task", "task-remote", 401, "login"),
    # update and delete
    ("local.test", "PUT", "CodeSystem/{all}", "update-all", 200, None),
    ("remote.test", "PUT", "CodeSystem/{all}", "update-all", 403, "forbidden"),
    ("unknown.test", "PUT", "CodeSystem/{all}", "update-all", 401, "login"),
    ("remote.test", "DELETE", "CodeSystem/{all}", None, 403, "forbidden"),
    ("unknown.test", "DELETE", "CodeSystem/{all}", None, 401, "login"),
    ("local.test", "DELETE", "CodeSystem/{local}", None, 200, None),
    # permanent delete: local only
    ("remote.test", "POST", "CodeSystem/{all}/$permanent-delete", None, 403, "forbidden"),
]


def body_for(key: str | None, w: World) -> dict[str, Any] | None:
    if key is None:
        return None
    if key == "new-cs":
        return code_system("new", [tag("ALL")])
    if key == "update-all":
        updated = code_system("all", [tag("ALL")])
        updated["id"] = w.ids["all"]
        updated["title"] = "updated"
        return updated
    return {
        "task-local": task("local.test"),
        "task-remote": task("remote.test"),
        "task-other": task("other.test"),
        "task-impersonating": task("other.test"),
    }[key]


@pytest.mark.parametrize(("who", "method", "path", "body", "status", "issue"), TABLE, ids=[f"{r[0]}-{r[1]}-{r[2]}-{r[3]}" for r in TABLE])
async def test_authorization_table(
    world: World, who: str, method: str, path: str, body: str | None, status: int, issue: str | None
) -> None:
    got_status, payload = await call(world.mb, who, method, path.format(**world.ids), body_for(body, world))
    assert got_status == status, payload
    if issue is not None:
        assert payload["resourceType"] == "OperationOutcome"
        assert payload["issue"][0]["code"] == issue


async def test_no_certificate_fails_tls_for_every_interaction(world: World) -> None:
    for method, path in [("GET", "CodeSystem"), ("POST", "Task"), ("GET", f"CodeSystem/{world.ids['all']}")]:
        async with world.mb.client(None) as http:
            with pytest.raises(aiohttp.ClientError):
                response = await http.request(method, world.mb.url(path), json=task("remote.test"), headers=JSON)
                await response.read()


async def test_search_totals_are_per_identity(world: World) -> None:
    totals = {}
    for who in ("local.test", "remote.test", "other.test"):
        status, bundle = await call(world.mb, who, "GET", "CodeSystem?_summary=count")
        assert status == 200
        totals[who] = bundle["total"]
    assert totals == {"local.test": 4, "remote.test": 2, "other.test": 2}


async def test_remote_sees_only_tasks_it_requested(world: World) -> None:
    status, _ = await call(world.mb, "remote.test", "POST", "Task", task("remote.test"))
    assert status == 201
    status, _ = await call(world.mb, "local.test", "POST", "Task", task("local.test"))
    assert status == 201
    _, mine = await call(world.mb, "remote.test", "GET", "Task")
    assert mine["total"] == 1
    assert mine["entry"][0]["resource"]["requester"]["identifier"]["value"] == "remote.test"
    _, none = await call(world.mb, "other.test", "GET", "Task")
    assert none["total"] == 0
    _, local = await call(world.mb, "local.test", "GET", "Task")
    assert local["total"] == 2
