"""A whole DSF network in one test: N organisations, each a real node (mailbox + engine) on loopback.

::

    async with Network(tmp_path, organizations=[OrgSpec("a.test", ("DIC",)), OrgSpec("b.test", ("DIC",))],
                       plugins=[PING_PONG]) as net:
        task = await net.post_task("a.test", net.start_task("a.test", "http://dsf.dev/bpe/Process/ping|1.0",
                                   "startPing", profile="http://dsf.dev/fhir/StructureDefinition/task-start-ping|1.0"))
        done = await net.wait_for_task("a.test", task["id"], "completed")

Every node runs from the files ``dsf network init`` writes (development PKI, allow list, one
``node.toml`` per organisation), with real mTLS between them. ``stop_node``/``start_node``
take one organisation down and up again with its data; ``settings`` overrides any setting
as ``DSF_<SECTION>_<KEY>`` would (defaults here make retries and catch-up fast). ``clocks`` gives
organisations an engine clock of the test's (e.g. a ``ManualClock``; call ``node(id).engine.wake()``
after moving it), so timers of days fire in a test of seconds.

``data_stores`` gives organisations local FHIR data stores, written into their ``node.toml`` as
``[data_stores.<name>]`` tables at every start; each value is a ``DataStoreSettings`` or anything
with a ``settings()`` method returning one, such as a started
:class:`~dsf_core.testing.data_store.DataStoreServer`::

    async with DataStoreServer(tmp_path / "kds") as kds:
        await kds.load(generate(DatasetSpec(patients=20, seed=1)))
        async with Network(tmp_path / "net", organizations=[OrgSpec("dic.test", ("DIC",))], plugins=[],
                           data_stores={"dic.test": {"default": kds}}) as net:
            store = net.node("dic.test").engine.api.fhir.data_store("default")
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from dsf_core.api.plugin import ProcessPlugin
from dsf_core.api.tasks import BPMN_MESSAGE, organization_reference, parameter
from dsf_core.client import ClientFactory, FhirClient
from dsf_core.network import DEFAULT_PARENT, NetworkLayout, OrgSpec, init_network, set_data_stores
from dsf_core.node import Node
from dsf_core.settings import DataStoreSettings, load_settings

__all__ = ["Network", "TaskTimeout"]

#: Settings a test network starts with: quick retries and catch-up, so failures show fast.
TEST_SETTINGS: Mapping[str, str] = {
    "DSF_ENGINE_SEND_ATTEMPTS": "2",
    "DSF_ENGINE_SEND_RETRY_SECONDS": "0.2",
    "DSF_ENGINE_RECONNECT_SECONDS": "0.2",
    "DSF_ENGINE_CATCH_UP_SECONDS": "5",
}


def _wall_clock() -> datetime:
    return datetime.now(timezone.utc)


class HasDataStoreSettings(Protocol):
    def settings(self) -> DataStoreSettings: ...


DataStore = DataStoreSettings | HasDataStoreSettings


class TaskTimeout(AssertionError):
    """A Task did not reach the expected status in time; the message shows its last state."""


class Network:
    def __init__(
        self,
        directory: Path,
        *,
        organizations: Sequence[OrgSpec] | None = None,
        parent: str = DEFAULT_PARENT,
        plugins: Sequence[ProcessPlugin] | None = None,
        settings: Mapping[str, str] | None = None,
        node_settings: Mapping[str, Mapping[str, str]] | None = None,
        environ: Mapping[str, str] | None = None,
        data_stores: Mapping[str, Mapping[str, DataStore]] | None = None,
        clocks: Mapping[str, Callable[[], datetime]] | None = None,
    ) -> None:
        self.directory = directory
        self.parent = parent
        self._organizations = list(organizations) if organizations is not None else None
        self._plugins = list(plugins) if plugins is not None else None
        self._settings = {**TEST_SETTINGS, **(settings or {})}
        self._node_settings = {k: dict(v) for k, v in (node_settings or {}).items()}
        self._environ = dict(environ or {})
        self._data_stores = {k: dict(v) for k, v in (data_stores or {}).items()}
        self._clocks = dict(clocks or {})
        self.layout: NetworkLayout | None = None
        self.nodes: dict[str, Node] = {}
        self._clients: dict[str, ClientFactory] = {}

    async def __aenter__(self) -> Network:
        await self.start()
        return self

    async def __aexit__(self, *exc: object | TracebackType) -> None:
        await self.stop()

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        kwargs: dict[str, Any] = {"parent": self.parent}
        if self._organizations is not None:
            kwargs["organizations"] = self._organizations
        manifest = self.directory / "network.toml"
        if manifest.exists():
            from dsf_core.network import load_network

            self.layout = load_network(self.directory)
        else:
            self.layout = await asyncio.to_thread(init_network, self.directory, **kwargs)
        for identifier, stores in self._data_stores.items():
            settings = {name: s if isinstance(s, DataStoreSettings) else s.settings() for name, s in stores.items()}
            set_data_stores(self.layout.organization(identifier).config, settings)
        await asyncio.gather(*(self.start_node(o.identifier) for o in self.layout.organizations))

    async def stop(self) -> None:
        await asyncio.gather(*(self.stop_node(i) for i in list(self.nodes)))
        for factory in self._clients.values():
            await factory.close()
        self._clients.clear()

    @property
    def identifiers(self) -> list[str]:
        assert self.layout is not None, "the network is not started"
        return [o.identifier for o in self.layout.organizations]

    async def start_node(self, identifier: str, *, timeout: float = 30.0) -> Node:
        """Start (or restart) one organisation's node; returns once its engine is subscribed."""
        assert self.layout is not None
        if identifier in self.nodes:
            return self.nodes[identifier]
        org = self.layout.organization(identifier)
        settings = load_settings(org.config, environ={**self._settings, **self._node_settings.get(identifier, {})})
        clock = self._clocks.get(identifier, _wall_clock)
        node = Node(settings, plugins=self._plugins, environ=self._environ, clock=clock)
        await node.start()
        self.nodes[identifier] = node
        await asyncio.wait_for(node.ready.wait(), timeout)
        return node

    async def stop_node(self, identifier: str) -> None:
        node = self.nodes.pop(identifier, None)
        if node is not None:
            await node.stop()

    def node(self, identifier: str) -> Node:
        return self.nodes[identifier]

    # ---------------------------------------------------------------- talking to mailboxes

    def client(self, identifier: str, *, on: str | None = None) -> FhirClient:
        """A FHIR client presenting ``identifier``'s client certificate, on ``on``'s mailbox (default: its own)."""
        assert self.layout is not None
        org = self.layout.organization(identifier)
        factory = self._clients.get(identifier)
        if factory is None:
            factory = ClientFactory.from_files(cafile=self.layout.ca_cert, cert_file=org.client_cert,
                                               key_file=org.client_key, attempts=1)
            self._clients[identifier] = factory
        return factory.client(self.layout.organization(on or identifier).base_url)

    def start_task(
        self,
        identifier: str,
        instantiates_canonical: str,
        message_name: str,
        *,
        profile: str,
        inputs: Sequence[dict[str, Any]] = (),
    ) -> dict[str, Any]:
        """A ``requested`` Task from ``identifier`` to itself that starts a process."""
        return {
            "resourceType": "Task",
            "meta": {"profile": [profile]},
            "instantiatesCanonical": instantiates_canonical,
            "status": "requested",
            "intent": "order",
            "authoredOn": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "requester": organization_reference(identifier),
            "restriction": {"recipient": [organization_reference(identifier)]},
            "input": [parameter(BPMN_MESSAGE, "message-name", "String", message_name), *inputs],
        }

    async def post_task(self, identifier: str, task: Mapping[str, Any]) -> dict[str, Any]:
        """POST a Task to ``identifier``'s mailbox as ``identifier``; returns the stored Task."""
        created = await self.client(identifier).create(task, minimal=False)
        assert created.resource is not None
        return created.resource

    async def wait_for_task(
        self, identifier: str, task_id: str, status: str | Sequence[str] = ("completed", "failed"), *, timeout: float = 30.0
    ) -> dict[str, Any]:
        """Poll ``Task/<id>`` on ``identifier``'s mailbox until its status is one of ``status``; a final
        status not wanted (e.g. ``failed`` when waiting for ``completed``) raises at once."""
        wanted = {status} if isinstance(status, str) else set(status)
        client = self.client(identifier)
        deadline = time.monotonic() + timeout
        task: dict[str, Any] = {}
        while True:
            task = await client.read("Task", task_id)
            if task.get("status") in wanted:
                return task
            final = task.get("status") in ("completed", "failed", "cancelled", "rejected", "entered-in-error")
            if final or time.monotonic() > deadline:
                waited = "" if final else f" after {timeout}s"
                raise TaskTimeout(f"Task/{task_id} on {identifier} is {task.get('status')!r}{waited}, "
                                  f"expected {sorted(wanted)}: outputs {task.get('output')}")
            await asyncio.sleep(0.05)

    async def search(self, identifier: str, type_: str, params: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        return [r async for r in self.client(identifier).search_all(type_, dict(params or {}))]
