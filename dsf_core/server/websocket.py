"""Websocket subscriptions at ``[base]/ws`` (the DSF protocol).

A client (the local business process engine) connects, sends ``bind <subscription-id>``
and receives ``bound <id>`` (an unknown id closes the socket with 1003, as the Java DSF
does); afterwards every committed resource matching the
Subscription's criteria that the client may read is pushed — the resource as JSON or
XML per ``channel.payload``, or the text ``ping <id>`` when the Subscription has no
payload.  Only the local organisation may open a websocket (the Java DSF's WEBSOCKET
role).  Ping frames every 28 s keep proxies from closing idle connections.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import orjson
from aiohttp import WSCloseCode, WSMsgType, web
from sqlalchemy import select

from dsf_core.errors import Forbidden
from dsf_core.fhir.authz.access import may_read_statement
from dsf_core.fhir.authz.identity import Identity
from dsf_core.fhir.indexing import IndexRow, index_rows
from dsf_core.fhir.search import Criterion, parse_search
from dsf_core.fhir.storage.schema import resources
from dsf_core.fhir.storage.store import ResourceEvent, Store, Stored
from dsf_core.fhir.xml import to_xml
from dsf_core.server import keys

log = logging.getLogger(__name__)


@dataclass
class _Subscription:
    id: str
    type: str
    criteria: tuple[Criterion, ...]
    payload: str | None
    sessions: set[_Session] = field(default_factory=set)


@dataclass(eq=False)
class _Session:
    ws: web.WebSocketResponse
    identity: Identity
    queue: asyncio.Queue[str] = field(default_factory=lambda: asyncio.Queue(maxsize=10_000))


def _row_matches(row: IndexRow, criterion: Criterion) -> bool:
    for value in criterion.values:
        if "|" in value and criterion.name != "_profile":
            system, _, code = value.partition("|")
            if (not system or row.system == system) and (not code or row.value == code):
                return True
        elif row.value == value or row.norm == value or (row.norm and row.norm.startswith(value.casefold())):
            return True
    return False


def matches(resource: dict[str, Any], stored: Stored, criteria: tuple[Criterion, ...]) -> bool:
    """Evaluate simple subscription criteria against a resource in memory."""
    rows = index_rows(resource)
    for c in criteria:
        if c.name == "_id":
            ok = stored.id in c.values
        else:
            ok = any(r.param == c.name and _row_matches(r, c) for r in rows)
        if c.modifier == "not":
            ok = not ok
        if not ok:
            return False
    return True


class SubscriptionManager:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.subscriptions: dict[str, _Subscription] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        store.listeners.append(self._on_event)

    async def load(self) -> None:
        async with self.store.read() as tx:
            rows = (
                await tx.conn.execute(
                    select(resources.c.content).where(
                        resources.c.type == "Subscription", resources.c.current, resources.c.deleted.is_(False)
                    )
                )
            ).all()
        for row in rows:
            self._register(orjson.loads(str(row[0])))

    def _register(self, subscription: dict[str, Any]) -> None:
        sid = subscription["id"]
        old = self.subscriptions.pop(sid, None)
        if subscription.get("status") != "active" or (subscription.get("channel") or {}).get("type") != "websocket":
            if old:
                for session in old.sessions:
                    self._close(session)
            return
        type_, _, query = str(subscription.get("criteria", "")).partition("?")
        try:
            request = parse_search(type_, parse_qsl(query), strict=True)
        except Exception as exc:  # an unusable Subscription is skipped, not fatal
            log.warning("Subscription/%s has unsupported criteria %r: %s", sid, subscription.get("criteria"), exc)
            return
        entry = _Subscription(sid, type_, request.criteria, (subscription.get("channel") or {}).get("payload"))
        if old:
            entry.sessions = old.sessions
        self.subscriptions[sid] = entry

    def _close(self, session: _Session) -> None:
        async def close() -> None:
            await session.ws.close(message=b"subscription removed")

        task = asyncio.ensure_future(close())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_event(self, event: ResourceEvent) -> None:
        stored = event.stored
        if stored.type == "Subscription":
            if stored.deleted:
                sub = self.subscriptions.pop(stored.id, None)
                for session in sub.sessions if sub else ():
                    self._close(session)
            else:
                self._register(stored.resource)
            return
        if stored.deleted or stored.content is None:
            return
        candidates = [s for s in self.subscriptions.values() if s.type == stored.type and s.sessions]
        if not candidates:
            return
        resource = stored.resource
        for sub in candidates:
            if matches(resource, stored, sub.criteria):
                task = asyncio.ensure_future(self._deliver(sub, stored, resource))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _deliver(self, sub: _Subscription, stored: Stored, resource: dict[str, Any]) -> None:
        for session in list(sub.sessions):
            if not await self._may_read(session.identity, stored):
                continue
            if sub.payload in ("application/fhir+json", "application/json"):
                message = stored.content or ""
            elif sub.payload in ("application/fhir+xml", "application/xml"):
                message = to_xml(resource).decode()
            else:
                message = f"ping {sub.id}"
            try:
                session.queue.put_nowait(message)
            except asyncio.QueueFull:
                log.warning("websocket client too slow, closing (subscription %s)", sub.id)
                self._close(session)

    async def _may_read(self, identity: Identity, stored: Stored) -> bool:
        stmt = may_read_statement(identity, stored.type)
        if stmt is None:
            return True
        async with self.store.read() as tx:
            row = (await tx.conn.execute(stmt, {"rid": stored.rid})).first()
        return row is not None

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        identity = request[keys.IDENTITY]
        if not identity.is_local and identity.kind != "store":
            raise Forbidden("only the local organization may open a websocket")
        settings = request.app[keys.SETTINGS]
        ws = web.WebSocketResponse(heartbeat=settings.server.websocket_ping_seconds)
        await ws.prepare(request)
        session = _Session(ws, identity)
        sender = asyncio.ensure_future(self._send_loop(session))
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                text = msg.data.strip()
                if text.startswith("bind "):
                    sid = text[5:].strip()
                    sub = self.subscriptions.get(sid)
                    if sub is None:
                        # As the Java DSF: close with 1003 (cannot accept) naming the subscription.
                        await ws.close(code=WSCloseCode.UNSUPPORTED_DATA, message=f"Subscription with {sid} not found".encode())
                        break
                    sub.sessions.add(session)
                    await ws.send_str(f"bound {sid}")
        finally:
            sender.cancel()
            for sub in self.subscriptions.values():
                sub.sessions.discard(session)
        return ws

    async def _send_loop(self, session: _Session) -> None:
        while True:
            message = await session.queue.get()
            try:
                await session.ws.send_str(message)
            except (ConnectionResetError, RuntimeError):
                return

    async def close(self) -> None:
        for sub in self.subscriptions.values():
            for session in list(sub.sessions):
                await session.ws.close()
        for task in list(self._tasks):
            task.cancel()
