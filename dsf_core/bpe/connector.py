"""How the engine learns of resources addressed to it: websocket subscription plus catch-up search.

As the Java BPE's ``LocalFhirConnectorImpl`` (reference ``dsf-core.md`` §1.3), one connector per
resource type on the engine's own mailbox:

1. find the Subscription ``Subscription?criteria:exact=<criteria>&status=active&type=websocket
   &payload=application/fhir+json`` (exactly one; retried every ``reconnect_seconds``);
2. open ``wss://<base>/ws`` with the engine's client certificate, send ``bind <id>``, expect
   ``bound <id>``;
3. catch up: ``GET <type>?<criteria>&_lastUpdated=ge<last event>&_sort=_lastUpdated&_count=n``,
   re-reading page 1 until nothing new (handled resources leave the result set), handing each
   resource to the handler and then persisting its ``meta.lastUpdated`` as the last event;
4. hand every pushed resource to the handler in a background task (bounded concurrency), so the
   reader keeps reading and answering pings; a ``ping <id>`` text message runs a catch-up;
5. on close or error, reconnect fully (1–3) after ``reconnect_seconds``, until :meth:`stop`;
6. catch up again every ``catch_up_seconds`` while connected.

The websocket is bound *before* the catch-up, so anything written between the last catch-up and
the bind is found by the search and anything later is pushed.  Pushes never advance the persisted
last event: only the catch-up does, so a resource pushed but lost in a crash is found again.

**The handler must be idempotent**: a resource can arrive twice (pushed and found by a catch-up,
or found again after a restart when it shares its ``lastUpdated`` with the last event).  The
engine dedupes by resource id and status.  A handler exception is logged with the resource id
and does not stop the connector; the catch-up still moves past that resource (the handler is
expected to fail the Task itself, as the Java TaskHandler does), so one bad Task cannot block the
queue.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import parse_qsl

import aiohttp
import orjson

from dsf_core.client import FhirClient, FhirClientError, Sleep
from dsf_core.fhir import codes

__all__ = ["ConnectorError", "Handler", "InMemoryLastEventStore", "LastEventStore", "TaskConnector"]

log = logging.getLogger("dsf.bpe.connector")

Handler = Callable[[dict[str, Any]], Awaitable[None]]


class LastEventStore(Protocol):
    """Where a connector keeps the ``meta.lastUpdated`` of the last resource its catch-up handled."""

    async def load(self, kind: str) -> datetime | None: ...

    async def save(self, kind: str, at: datetime) -> None: ...


class InMemoryLastEventStore:
    """A :class:`LastEventStore` in a dict (tests and tools; the engine keeps it in its database)."""

    def __init__(self) -> None:
        self.events: dict[str, datetime] = {}

    async def load(self, kind: str) -> datetime | None:
        return self.events.get(kind)

    async def save(self, kind: str, at: datetime) -> None:
        self.events[kind] = at


class ConnectorError(Exception):
    """The mailbox is reachable but not usable yet: no Subscription, a refused bind, a bad message."""


def _instant(value: str) -> datetime:
    at = datetime.fromisoformat(value)
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _search_instant(at: datetime) -> str:
    # Millisecond precision as FHIR servers store it; truncating keeps ``ge`` inclusive.
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TaskConnector:
    """Delivers the resources matching ``criteria`` on the local mailbox to ``handler``.

    Works for any resource type with a DSF websocket Subscription: ``Task?status=requested``
    (the default) and ``QuestionnaireResponse?status=completed``.  ``ready`` is set once the
    first bind and catch-up have finished; ``connected`` tells whether a websocket is bound now.
    """

    def __init__(
        self,
        client: FhirClient,
        websocket_session: aiohttp.ClientSession,
        handler: Handler,
        last_events: LastEventStore,
        *,
        kind: str = "Task",
        criteria: str = codes.TASK_SUBSCRIPTION_CRITERIA,
        catch_up_seconds: float = 60.0,
        reconnect_seconds: float = 5.0,
        page_size: int = 20,
        concurrency: int = 8,
        heartbeat_seconds: float | None = 30.0,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        type_, _, query = criteria.partition("?")
        if type_ != kind:
            raise ValueError(f"criteria {criteria!r} do not select {kind} resources")
        if page_size < 1 or concurrency < 1:
            raise ValueError("page_size and concurrency must be at least 1")
        self.client = client
        self.websocket_session = websocket_session
        self.handler = handler
        self.last_events = last_events
        self.kind = kind
        self.criteria = criteria
        self.catch_up_seconds = catch_up_seconds
        self.reconnect_seconds = reconnect_seconds
        self.page_size = page_size
        self.heartbeat_seconds = heartbeat_seconds
        self.ready = asyncio.Event()
        self.connected = False
        self.connections = 0  # successful binds so far (metrics, tests waiting for a reconnect)
        self._criteria_params = parse_qsl(query, keep_blank_values=True)
        self._sleep = sleep
        self._semaphore = asyncio.Semaphore(concurrency)
        self._catch_up_lock = asyncio.Lock()
        self._wake = asyncio.Event()  # a ``ping`` message asks for a catch-up now
        self._last: datetime | None = None
        self._at_last: set[str] = set()  # ids already handled whose lastUpdated equals _last
        self._main: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()

    @property
    def websocket_url(self) -> str:
        base = self.client.base_url
        scheme, _, rest = base.partition("://")
        return f"{'ws' if scheme == 'http' else 'wss'}://{rest}/ws"

    @property
    def last_event(self) -> datetime | None:
        """``meta.lastUpdated`` of the last resource the catch-up handled (what is persisted)."""
        return self._last

    # --- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        """Load the last event and start connecting in the background (returns at once)."""
        if self._main is not None:
            raise RuntimeError(f"{self.kind} connector already started")
        self._last = await self.last_events.load(self.kind)
        self._main = asyncio.create_task(self._run(), name=f"dsf.bpe.connector[{self.kind}]")

    async def stop(self) -> None:
        """Cancel the connection loop and every handler still running, and wait for them."""
        main, self._main = self._main, None
        if main is not None:
            main.cancel()
            await asyncio.gather(main, return_exceptions=True)
        background = list(self._background)
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        self.connected = False

    async def _run(self) -> None:
        while True:
            try:
                await self._connection()
            except ConnectorError as exc:
                log.warning("%s connector: %s; retrying in %.1f s", self.kind, exc, self.reconnect_seconds)
            except (FhirClientError, aiohttp.ClientError, TimeoutError, OSError) as exc:
                log.warning(
                    "%s connector: mailbox %s not usable (%s); reconnecting in %.1f s",
                    self.kind, self.client.base_url, str(exc) or type(exc).__name__, self.reconnect_seconds,
                )
            except Exception:
                log.exception("%s connector failed; reconnecting in %.1f s", self.kind, self.reconnect_seconds)
            finally:
                self.connected = False
            await self._sleep(self.reconnect_seconds)

    async def _connection(self) -> None:
        """One connection: subscription lookup, bind, then read and catch up until it ends."""
        subscription_id = await self._find_subscription()
        async with asyncio.timeout(self.client.timeout):
            ws = await self.websocket_session.ws_connect(self.websocket_url, heartbeat=self.heartbeat_seconds)
        async with ws:
            await ws.send_str(f"bind {subscription_id}")
            async with asyncio.timeout(self.client.timeout):
                reply = await ws.receive()
            if reply.type != aiohttp.WSMsgType.TEXT or str(reply.data).strip() != f"bound {subscription_id}":
                detail = reply.data if reply.type == aiohttp.WSMsgType.TEXT else f"{reply.type.name} {ws.close_code}"
                raise ConnectorError(f"bind {subscription_id} on {self.websocket_url} refused: {detail}")
            self.connected = True
            self.connections += 1
            self._wake.clear()
            log.info("%s connector: bound to Subscription/%s on %s", self.kind, subscription_id, self.websocket_url)
            reader = asyncio.create_task(self._read(ws))
            catcher = asyncio.create_task(self._catch_up_loop())
            tasks = {reader, catcher}
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                if catcher not in done:
                    # The websocket ended.  A catch-up round in progress finishes first: cancelling
                    # it could interrupt a handler halfway through a Task.  (stop() does cancel.)
                    async with self._catch_up_lock:
                        catcher.cancel()
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            for task in done:
                task.result()  # re-raise what ended the connection

    async def _find_subscription(self) -> str:
        bundle = await self.client.search(
            "Subscription",
            [
                ("criteria:exact", self.criteria),
                ("status", "active"),
                ("type", "websocket"),
                ("payload", "application/fhir+json"),
            ],
        )
        ids = [
            str(e["resource"]["id"])
            for e in bundle.get("entry") or []
            if (e.get("resource") or {}).get("resourceType") == "Subscription"
        ]
        if len(ids) != 1:
            raise ConnectorError(
                f"expected exactly one active websocket Subscription with criteria {self.criteria!r} "
                f"on {self.client.base_url}, found {len(ids)}"
            )
        return ids[0]

    # --- websocket --------------------------------------------------------------------

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while True:
            message = await ws.receive()
            if message.type == aiohttp.WSMsgType.TEXT:
                self._on_text(str(message.data))
            elif message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
                log.warning("%s connector: websocket %s closed (code %s)", self.kind, self.websocket_url, ws.close_code)
                return
            elif message.type == aiohttp.WSMsgType.ERROR:
                raise ConnectorError(f"websocket {self.websocket_url} failed: {ws.exception() or message.data}")

    def _on_text(self, text: str) -> None:
        if text.startswith("ping "):
            self._wake.set()  # a Subscription without payload: the resource must be searched
            return
        if text.startswith("bound "):
            return
        try:
            resource = orjson.loads(text)
        except orjson.JSONDecodeError:
            log.warning("%s connector: ignoring unreadable websocket message %.80r", self.kind, text)
            return
        if not isinstance(resource, dict) or resource.get("resourceType") != self.kind:
            log.warning("%s connector: ignoring websocket message that is no %s", self.kind, self.kind)
            return
        task = asyncio.create_task(self._deliver_bounded(resource))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _deliver_bounded(self, resource: dict[str, Any]) -> None:
        async with self._semaphore:
            await self._deliver(resource, "websocket")

    async def _deliver(self, resource: dict[str, Any], source: str) -> None:
        try:
            await self.handler(resource)
        except Exception:
            log.exception("%s connector: handler failed for %s/%s (from %s)", self.kind, self.kind, resource.get("id"), source)

    # --- catch-up ---------------------------------------------------------------------

    async def _catch_up_loop(self) -> None:
        await self.catch_up()
        if not self.ready.is_set():
            self.ready.set()
            log.info("%s connector ready", self.kind)
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.catch_up_seconds)
            except TimeoutError:
                pass
            self._wake.clear()  # before searching: a ping arriving meanwhile asks for another round
            await self.catch_up()

    async def catch_up(self) -> int:
        """Hand every matching resource newer than the last event to the handler; return how many.

        Searches ``_lastUpdated=ge<last event>`` rather than ``gt``: resources sharing a
        timestamp may be split by a page boundary (or written by another mailbox worker in the
        same millisecond), and ``gt`` would skip the rest.  Ids already handled at exactly that
        instant are skipped instead; a page holding only those moves on to the next page, so a
        handler that leaves the resource matching cannot make the loop spin.
        """
        async with self._catch_up_lock:
            delivered, page = 0, 1
            while True:
                params = [*self._criteria_params, ("_sort", "_lastUpdated"), ("_count", str(self.page_size))]
                if self._last is not None:
                    params.append(("_lastUpdated", "ge" + _search_instant(self._last)))
                if page > 1:
                    params.append(("_page", str(page)))
                bundle = await self.client.search(self.kind, params)
                found = [
                    e["resource"]
                    for e in bundle.get("entry") or []
                    if (e.get("search") or {}).get("mode", "match") == "match"
                    and (e.get("resource") or {}).get("resourceType") == self.kind
                ]
                fresh = [r for r in found if self._is_new(r)]
                if not fresh:
                    if found and any(link.get("relation") == "next" for link in bundle.get("link") or []):
                        page += 1
                        continue
                    if delivered:
                        log.info("%s connector: catch-up delivered %d", self.kind, delivered)
                    return delivered
                for resource in fresh:
                    await self._deliver(resource, "catch-up")
                    await self._advance(resource)
                    delivered += 1
                page = 1  # handled resources may have left the result set: start over

    def _is_new(self, resource: dict[str, Any]) -> bool:
        at = self._updated(resource)
        if at is None:
            return False
        if self._last is None or at > self._last:
            return True
        return at == self._last and str(resource.get("id")) not in self._at_last

    def _updated(self, resource: dict[str, Any]) -> datetime | None:
        value = (resource.get("meta") or {}).get("lastUpdated")
        try:
            return _instant(str(value))
        except ValueError:
            log.warning("%s connector: %s/%s has unreadable meta.lastUpdated %r", self.kind, self.kind, resource.get("id"), value)
            return None

    async def _advance(self, resource: dict[str, Any]) -> None:
        at = self._updated(resource)
        assert at is not None  # _is_new let only resources with a lastUpdated through
        rid = str(resource.get("id"))
        if self._last is not None and at == self._last:
            self._at_last.add(rid)
            return
        if self._last is None or at > self._last:
            self._last, self._at_last = at, {rid}
            await self.last_events.save(self.kind, at)
