"""TaskConnector against a real mailbox over mTLS: catch-up, websocket push, reconnect, stop.

The engine connects as the local organisation; Tasks are posted by a remote organisation that
the ``hello`` ActivityDefinition of the authorization tests authorises.  Ties of
``meta.lastUpdated`` cannot be produced by one mailbox process (its write clock is strictly
increasing), so the tie rule is checked against a tiny loopback server that serves fixed Tasks.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from dsf_core.bpe import connector as connector_module
from dsf_core.bpe.connector import Handler, InMemoryLastEventStore, TaskConnector
from dsf_core.client import ClientFactory, FhirClient
from dsf_core.fhir import codes
from dsf_core.server import keys
from dsf_core.server.app import Mailbox
from dsf_core.testing.mailbox import MailboxHarness, bind_free_port
from tests.server.test_authorization import activity_definition, task


class Received:
    """A handler recording what it was given; optionally failing or changing the Task."""

    def __init__(self, *, fail_on: set[str] | None = None, client: FhirClient | None = None) -> None:
        self.resources: list[dict[str, Any]] = []
        self.fail_on = fail_on or set()
        self.client = client  # when set, behaves as the engine: the Task goes in-progress

    @property
    def keys(self) -> list[str]:
        return [business_key(r) for r in self.resources]

    async def __call__(self, resource: dict[str, Any]) -> None:
        self.resources.append(resource)
        if business_key(resource) in self.fail_on:
            raise RuntimeError("handler bug")
        if self.client is not None:
            await self.client.update(resource | {"status": "in-progress"})


class Gate:
    """Injected reconnect pause: a short real pause while open; parks reconnects while closed."""

    def __init__(self) -> None:
        self._open = asyncio.Event()
        self._open.set()
        self.parked = 0

    def close(self) -> None:
        self._open.clear()

    def open(self) -> None:
        self._open.set()

    async def __call__(self, seconds: float) -> None:
        if not self._open.is_set():
            self.parked += 1
            await self._open.wait()
        await asyncio.sleep(0.02)  # keeps a refused reconnect from spinning the loop


def business_key(resource: dict[str, Any]) -> str:
    return next(str(i["valueString"]) for i in resource.get("input", []) if i["type"]["coding"][0]["code"] == "business-key")


def hello(key: str) -> dict[str, Any]:
    t = task("remote.test")
    t["input"][1]["valueString"] = key
    return t


async def until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Wait for *condition* with a deadline (a failing test stops there, never hangs)."""
    try:
        async with asyncio.timeout(timeout):
            while not condition():
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"timed out waiting until {what}") from None


def connector_tasks() -> list[asyncio.Task[Any]]:
    """asyncio tasks still running code of the connector module."""
    running = []
    for t in asyncio.all_tasks():
        code = getattr(t.get_coro(), "cr_code", None)
        if not t.done() and code is not None and code.co_filename == connector_module.__file__:
            running.append(t)
    return running


async def stop_mailbox(mb: MailboxHarness) -> None:
    """Stop the mailbox, closing its websockets first.

    ``Mailbox.stop`` closes websockets only in its cleanup, after aiohttp has waited its shutdown
    timeout for the open websocket handlers (10 s); closing them first is what an ``on_shutdown``
    hook of the mailbox would do.
    """
    assert mb.mailbox is not None
    await mb.mailbox.app[keys.SUBSCRIPTIONS].close()
    await mb.stop()


async def restart_on_same_port(mb: MailboxHarness) -> None:
    """Start the stopped harness's mailbox again on its old port (the harness picks a new one)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", mb.port))
    sock.listen(128)
    mb.mailbox = Mailbox(mb.settings)
    await mb.mailbox.start(sock)


@asynccontextmanager
async def network(tmp_path: Path) -> AsyncIterator[tuple[MailboxHarness, ClientFactory, FhirClient]]:
    """A mailbox with the hello ActivityDefinition; the engine's clients and a remote peer's client."""
    async with MailboxHarness(tmp_path) as mb:
        async with ClientFactory(mb.ssl_context(mb.local), attempts=2, retry_seconds=0.01) as engine:
            async with ClientFactory(mb.ssl_context("remote.test")) as peer:
                await engine.client(mb.base_url).create(activity_definition())
                yield mb, engine, peer.client(mb.base_url)


@asynccontextmanager
async def running(
    mb: MailboxHarness, engine: ClientFactory, handler: Handler, events: InMemoryLastEventStore, **options: Any
) -> AsyncIterator[TaskConnector]:
    options = {"reconnect_seconds": 0.05, "catch_up_seconds": 3600.0} | options
    connector = TaskConnector(engine.client(mb.base_url), engine.session, handler, events, **options)
    await connector.start()
    try:
        yield connector
    finally:
        await connector.stop()
        assert not connector_tasks(), connector_tasks()
        assert not connector.connected


def last_updated(resource: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(resource["meta"]["lastUpdated"])


async def test_catch_up_then_push_and_only_catch_up_advances_the_last_event(tmp_path: Path) -> None:
    async with network(tmp_path) as (mb, engine, peer):
        before = [await peer.create(hello(f"before-{i}")) for i in range(3)]
        handler, events = Received(), InMemoryLastEventStore()
        async with running(mb, engine, handler, events, page_size=2) as connector:
            await asyncio.wait_for(connector.ready.wait(), 10)
            assert connector.connected and connector.connections == 1
            # Handled Tasks stay requested (this handler changes nothing): delivered once each, in order.
            assert handler.keys == ["before-0", "before-1", "before-2"]
            assert [r["id"] for r in handler.resources] == [c.id for c in before]
            caught_up = events.events["Task"]
            assert caught_up == last_updated(handler.resources[-1]) == connector.last_event
            assert await connector.catch_up() == 0

            pushed = await peer.create(hello("after-ready"))
            await until(lambda: "after-ready" in handler.keys, "the pushed Task arrives")
            assert handler.resources[-1]["id"] == pushed.id and handler.resources[-1]["status"] == "requested"
            assert events.events["Task"] == caught_up  # a push does not advance the last event

            # A ``ping <id>`` message (Subscriptions without payload) runs a catch-up, which does.
            connector._on_text("ping any")
            await until(lambda: events.events["Task"] > caught_up, "the catch-up after ping advances the last event")
            assert events.events["Task"] == last_updated(handler.resources[-1])
            assert handler.keys.count("after-ready") == 2  # pushed and found: the handler must be idempotent


async def test_tasks_posted_while_disconnected_arrive_after_reconnect(tmp_path: Path) -> None:
    async with network(tmp_path) as (mb, engine, peer):
        handler, events, gate = Received(client=engine.client(mb.base_url)), InMemoryLastEventStore(), Gate()
        async with running(mb, engine, handler, events, sleep=gate) as connector:
            await asyncio.wait_for(connector.ready.wait(), 10)
            await peer.create(hello("first"))
            await until(lambda: handler.keys == ["first"], "the first Task is pushed")

            gate.close()
            await stop_mailbox(mb)
            await until(lambda: gate.parked == 1 and not connector.connected, "the connector notices the mailbox is gone")
            await restart_on_same_port(mb)
            missed = [await peer.create(hello(f"missed-{i}")) for i in range(3)]  # nobody is bound now

            gate.open()
            await until(lambda: len(handler.keys) == 4, "the Tasks posted while disconnected are caught up")
            assert handler.keys == ["first", "missed-0", "missed-1", "missed-2"]
            assert connector.connections == 2
            newest = await engine.client(mb.base_url).read("Task", missed[-1].id)
            assert newest["status"] == "in-progress"  # the engine-like handler took them
            # The catch-up's last event is that of the last missed Task as handled (requested), not its update.
            assert events.events["Task"] == last_updated(handler.resources[-1])

            await peer.create(hello("after-reconnect"))
            await until(lambda: "after-reconnect" in handler.keys, "pushes work on the new websocket")


async def test_a_failing_handler_does_not_stop_delivery(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="dsf.bpe.connector")
    async with network(tmp_path) as (mb, engine, peer):
        bad = await peer.create(hello("bad-caught-up"))
        await peer.create(hello("good-caught-up"))
        handler = Received(fail_on={"bad-caught-up", "bad-pushed"})
        async with running(mb, engine, handler, InMemoryLastEventStore()) as connector:
            await asyncio.wait_for(connector.ready.wait(), 10)
            assert handler.keys == ["bad-caught-up", "good-caught-up"]
            await peer.create(hello("bad-pushed"))
            await peer.create(hello("good-pushed"))
            await until(lambda: "good-pushed" in handler.keys, "delivery goes on after a failing push")
            assert connector.connected
        assert f"handler failed for Task/{bad.id} (from catch-up)" in caplog.text
        assert "(from websocket)" in caplog.text


async def test_a_websocket_drop_lets_the_running_catch_up_finish(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="dsf.bpe.connector")
    async with network(tmp_path) as (mb, engine, peer):
        await peer.create(hello("slow"))
        entered, release, finished = asyncio.Event(), asyncio.Event(), []

        async def slow(resource: dict[str, Any]) -> None:
            entered.set()
            await release.wait()
            finished.append(business_key(resource))

        gate, events = Gate(), InMemoryLastEventStore()
        async with running(mb, engine, slow, events, sleep=gate) as connector:
            await asyncio.wait_for(entered.wait(), 10)  # the first catch-up is inside the handler
            gate.close()
            assert mb.mailbox is not None
            await mb.mailbox.app[keys.SUBSCRIPTIONS].close()  # the mailbox drops the websocket
            await until(lambda: "closed (code" in caplog.text, "the connector sees the websocket close")
            release.set()
            await until(lambda: gate.parked == 1, "the connection ends after the catch-up round")
            assert finished == ["slow"] and "Task" in events.events
            gate.open()
            await until(lambda: connector.connections == 2, "the connector reconnects")


async def test_stop_cancels_handlers_still_running(tmp_path: Path) -> None:
    async with network(tmp_path) as (mb, engine, peer):
        started, never = asyncio.Event(), asyncio.Event()

        async def stuck(resource: dict[str, Any]) -> None:
            started.set()
            await never.wait()

        connector = TaskConnector(engine.client(mb.base_url), engine.session, stuck, InMemoryLastEventStore(), reconnect_seconds=0.05)
        await connector.start()
        await asyncio.wait_for(connector.ready.wait(), 10)
        await peer.create(hello("pushed"))
        await asyncio.wait_for(started.wait(), 10)
        assert connector_tasks()
        await connector.stop()
        assert not connector_tasks() and not connector.connected


async def test_missing_subscription_is_retried_until_it_exists(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="dsf.bpe.connector")
    criteria = "Task?status=draft"
    async with network(tmp_path) as (mb, engine, _):
        handler, gate = Received(), Gate()
        async with running(mb, engine, handler, InMemoryLastEventStore(), criteria=criteria, sleep=gate) as connector:
            gate.close()
            await until(lambda: gate.parked == 1, "the first lookup fails")
            assert "expected exactly one active websocket Subscription with criteria 'Task?status=draft'" in caplog.text
            assert not connector.ready.is_set()
            await engine.client(mb.base_url).create(
                {
                    "resourceType": "Subscription",
                    "meta": {"tag": [{"system": codes.READ_ACCESS_TAG, "code": "LOCAL"}]},
                    "status": "active",
                    "reason": "test",
                    "criteria": criteria,
                    "channel": {"type": "websocket", "payload": "application/fhir+json"},
                }
            )
            gate.open()
            await asyncio.wait_for(connector.ready.wait(), 10)
            assert connector.connections == 1


async def test_questionnaire_response_connector_binds(tmp_path: Path) -> None:
    async with network(tmp_path) as (mb, engine, _):
        handler, events = Received(), InMemoryLastEventStore()
        options = {"kind": "QuestionnaireResponse", "criteria": codes.QUESTIONNAIRE_RESPONSE_SUBSCRIPTION_CRITERIA}
        async with running(mb, engine, handler, events, **options) as connector:
            await asyncio.wait_for(connector.ready.wait(), 10)
            assert connector.connected and connector.websocket_url == mb.url("ws").replace("https://", "wss://")
            assert handler.resources == [] and events.events == {}


def test_criteria_must_select_the_kind() -> None:
    with pytest.raises(ValueError, match="do not select"):
        TaskConnector(None, None, Received(), InMemoryLastEventStore(), kind="QuestionnaireResponse")  # type: ignore[arg-type]


# --- ties of meta.lastUpdated across a page boundary ------------------------------------


@asynccontextmanager
async def fixed_tasks_server(tasks: list[dict[str, Any]]) -> AsyncIterator[str]:
    """Serves ``Task?status=requested&_lastUpdated=ge…&_sort=_lastUpdated&_count&_page`` over *tasks*."""

    async def search(request: web.Request) -> web.Response:
        assert request.query["status"] == "requested" and request.query["_sort"] == "_lastUpdated"
        matches = sorted(tasks, key=lambda t: (last_updated(t), t["id"]))
        if "_lastUpdated" in request.query:
            value = request.query["_lastUpdated"]
            assert value.startswith("ge"), value
            matches = [t for t in matches if last_updated(t) >= datetime.fromisoformat(value[2:])]
        count, page = int(request.query["_count"]), int(request.query.get("_page", "1"))
        shown = matches[(page - 1) * count : page * count]
        links = [{"relation": "next", "url": f"{request.url.with_query({**request.query, '_page': str(page + 1)})}"}]
        body = {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(matches),
            "link": links if page * count < len(matches) else [],
            "entry": [{"resource": t, "search": {"mode": "match"}} for t in shown],
        }
        return web.Response(body=orjson.dumps(body), content_type="application/fhir+json")

    app = web.Application()
    app.router.add_get("/fhir/Task", search)
    runner = web.AppRunner(app)
    await runner.setup()
    sock = bind_free_port()
    await web.SockSite(runner, sock).start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/fhir"
    finally:
        await runner.cleanup()


def fixed(id_: str, at: str) -> dict[str, Any]:
    return {"resourceType": "Task", "id": id_, "status": "requested", "meta": {"versionId": "1", "lastUpdated": at}}


async def test_ties_split_by_a_page_boundary_are_delivered_once() -> None:
    t1, t2, t3 = "2026-01-01T10:00:00.001+00:00", "2026-01-01T10:00:00.002+00:00", "2026-01-01T10:00:00.003+00:00"
    tasks = [fixed("a", t1), fixed("b", t2), fixed("c", t2), fixed("d", t2), fixed("e", t2), fixed("f", t3)]
    handler, events = Received(), InMemoryLastEventStore()
    async with fixed_tasks_server(tasks) as base, aiohttp.ClientSession() as session:
        connector = TaskConnector(FhirClient(base, session=session), session, handler, events, page_size=2)
        # Tasks stay requested (the server's list never changes), so every round sees them again.
        assert await connector.catch_up() == 6
        assert [r["id"] for r in handler.resources] == ["a", "b", "c", "d", "e", "f"]
        assert events.events["Task"] == datetime.fromisoformat(t3)

        tasks.append(fixed("g", t3))  # written in the same millisecond as the last event
        tasks.append(fixed("h", t2))  # older than the last event: a gt/ge search never returns it
        assert await connector.catch_up() == 1
        assert [r["id"] for r in handler.resources][-1] == "g"

        # After a restart (ids at the last instant forgotten) the tie is delivered again, never lost.
        restarted = TaskConnector(FhirClient(base, session=session), session, handler, events, page_size=2)
        await restarted.start()
        await restarted.stop()
        assert restarted.last_event == datetime.fromisoformat(t3)
        assert await restarted.catch_up() == 2
        assert [r["id"] for r in handler.resources][-2:] == ["f", "g"]
