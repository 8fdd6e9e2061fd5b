"""Websocket subscriptions: bind protocol, push of matching Tasks, only the local organisation may bind."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import orjson

from dsf_core.testing.mailbox import MailboxHarness
from tests.server.test_authorization import activity_definition, task

JSON = {"Accept": "application/fhir+json"}


async def _subscription_id(http: aiohttp.ClientSession, mb: MailboxHarness) -> str:
    bundle = await (await http.get(mb.url("Subscription?criteria:exact=Task%3Fstatus%3Drequested"), headers=JSON)).json()
    assert bundle["total"] == 1
    return str(bundle["entry"][0]["resource"]["id"])


async def test_bound_session_receives_matching_tasks(tmp_path: Path, database_url: str) -> None:
    async with MailboxHarness(tmp_path, database_url=database_url) as mb:
        async with mb.client("local.test") as http:
            assert (await http.post(mb.url("ActivityDefinition"), json=activity_definition())).status == 201
            sid = await _subscription_id(http, mb)
            ws_url = mb.url("ws").replace("https://", "wss://")
            async with http.ws_connect(ws_url) as ws:
                await ws.send_str(f"bind {sid}")
                assert (await asyncio.wait_for(ws.receive_str(), 10)) == f"bound {sid}"
                async with mb.client("remote.test") as remote:
                    response = await remote.post(mb.url("Task"), json=task("remote.test"), headers=JSON)
                    assert response.status == 201
                    created = await response.json()
                pushed = orjson.loads(await asyncio.wait_for(ws.receive_str(), 10))
                assert pushed["resourceType"] == "Task" and pushed["id"] == created["id"]
                assert pushed["status"] == "requested"
                # a Task that no longer matches (in-progress) is not pushed; the next requested one is
                in_progress = dict(pushed)
                in_progress["status"] = "in-progress"
                in_progress["input"] = pushed["input"]
                assert (await http.put(mb.url(f"Task/{created['id']}"), json=in_progress)).status == 200
                assert (await http.post(mb.url("Task"), json=task("local.test"))).status == 201
                second = orjson.loads(await asyncio.wait_for(ws.receive_str(), 10))
                assert second["requester"]["identifier"]["value"] == "local.test"
                assert second["status"] == "requested"


async def test_remote_organization_cannot_open_websocket(tmp_path: Path) -> None:
    async with MailboxHarness(tmp_path) as mb:
        async with mb.client("remote.test") as http:
            ws_url = mb.url("ws").replace("https://", "wss://")
            try:
                async with http.ws_connect(ws_url):
                    raise AssertionError("remote organisation opened a websocket")
            except aiohttp.WSServerHandshakeError as exc:
                assert exc.status == 403


async def test_bind_to_unknown_subscription_closes_with_1003(tmp_path: Path) -> None:
    async with MailboxHarness(tmp_path) as mb:
        async with mb.client("local.test") as http:
            async with http.ws_connect(mb.url("ws").replace("https://", "wss://")) as ws:
                await ws.send_str("bind does-not-exist")
                message = await asyncio.wait_for(ws.receive(), 10)
                assert message.type == aiohttp.WSMsgType.CLOSE
                assert ws.close_code == 1003
