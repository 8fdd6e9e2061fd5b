"""One organisation's node: its mailbox and its business process engine, wired from settings.

The two halves meet over HTTPS exactly as two organisations do: the engine reaches its own
mailbox at ``engine.fhir_base_url`` (default ``server.base_url``) with the organisation's
client certificate, and learns of Tasks through the mailbox's websocket subscription and
catch-up searches. Start-up order follows the Java BPE: mailbox; engine database; plugins
loaded and bound (any problem stops the start); their FHIR resources uploaded to the mailbox;
running instances resumed; then the Task connector and the QuestionnaireResponse connector
(answered user tasks).
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from dsf_core.api.plugin import ProcessPlugin
from dsf_core.bpe.connector import TaskConnector
from dsf_core.bpe.deployment import (
    DeployedProcess,
    DeploymentError,
    discover_plugins,
    load_plugin,
    placeholders_for,
    plugin_resources,
    resource_upload_bundle,
)
from dsf_core.bpe.engine import Engine
from dsf_core.bpe.plugin_api import EngineApi
from dsf_core.bpe.store import EngineStore
from dsf_core.client import ClientFactory, FhirClient, FhirClientError
from dsf_core.fhir import codes
from dsf_core.settings import Settings

__all__ = ["Node"]

log = logging.getLogger("dsf.node")


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


async def _notify_deployed(plugin: ProcessPlugin, api: EngineApi, active: list[str]) -> None:
    if plugin.on_deployed is None:
        return
    try:
        result = plugin.on_deployed(api, active)
        if inspect.isawaitable(result):
            await result
    except Exception as exc:
        raise DeploymentError(f"plugin {plugin.name}: on_deployed failed: {exc}") from exc


class Node:
    """Mailbox + engine of one organisation. ``plugins=None`` discovers them (entry points, plugin folders)."""

    def __init__(
        self,
        settings: Settings,
        *,
        plugins: Sequence[ProcessPlugin] | None = None,
        clock: Callable[[], datetime] = _utc_now,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        environ: Mapping[str, str] | None = None,
        mailbox: bool = True,
    ) -> None:
        self.settings = settings
        self._plugins = plugins
        #: False: the engine alone, against the mailbox at ``engine.fhir_base_url`` (e.g. mailbox in the DMZ).
        self.run_mailbox = mailbox
        self.clock = clock
        self._sleep = sleep
        self._environ = dict(os.environ if environ is None else environ)
        self.mailbox: Any = None
        self.engine: Engine | None = None
        self.connector: TaskConnector | None = None
        self.response_connector: TaskConnector | None = None
        self._clients: ClientFactory | None = None
        self._store: EngineStore | None = None
        self._data_store_factories: list[ClientFactory] = []

    @property
    def ready(self) -> asyncio.Event:
        """Set once the engine is subscribed to its mailbox (or at once when the engine is disabled)."""
        if self.connector is None:
            event = asyncio.Event()
            event.set()
            return event
        return self.connector.ready

    async def start(self, sock: socket.socket | None = None) -> None:
        from dsf_core.server.app import Mailbox

        if self.run_mailbox:
            self.mailbox = Mailbox(self.settings)
            await self.mailbox.start(sock)
        elif not self.settings.engine.enabled or self.settings.node.mode != "dsf":
            raise ValueError("an engine-only node needs engine.enabled = true and node.mode = \"dsf\"")
        if self.settings.engine.enabled and self.settings.node.mode == "dsf":
            try:
                await self._start_engine()
            except BaseException:
                await self.stop()
                raise

    async def stop_engine(self) -> None:
        """Stop only the engine (the mailbox keeps accepting Tasks): for tests and maintenance."""
        for connector in (self.connector, self.response_connector):
            if connector is not None:
                await connector.stop()
        if self.engine is not None:
            await self.engine.stop()
        if self._store is not None:
            await self._store.close()
        if self._clients is not None:
            await self._clients.close()
        for factory in self._data_store_factories:
            await factory.close()
        self._data_store_factories = []
        self.connector = self.response_connector = self.engine = self._store = self._clients = None

    async def start_engine(self) -> None:
        """Start the engine again after :meth:`stop_engine`: it resumes its instances and catches up."""
        if self.engine is None:
            await self._start_engine()

    async def _start_engine(self) -> None:
        s = self.settings
        self._clients = ClientFactory.from_files(
            cafile=s.engine.trust_server_cas or s.tls.trust_client_cas,
            cert_file=s.organization.client_certificate,
            key_file=s.organization.client_private_key,
            password=s.organization.client_private_key_password.encode() if s.organization.client_private_key_password else None,
            attempts=max(1, s.engine.send_attempts),
            retry_seconds=s.engine.send_retry_seconds,
            sleep=self._sleep,
        )
        local_url = s.engine_fhir_base_url
        data_stores = self._data_store_clients()
        self._store = await EngineStore.open(s.engine_database_url)
        engine_holder: list[Engine] = []
        api = EngineApi(
            organization_identifier=s.organization.identifier,
            endpoint_identifier=s.organization.endpoint_identifier or s.organization.identifier,
            endpoint_url=s.server.base_url,
            local_fhir_url=local_url,
            clients=self._clients,
            clock=self.clock,
            environ=self._environ,
            active_processes=lambda: engine_holder[0].active_processes() if engine_holder else [],
            data_stores=data_stores,
            plugin_settings=s.plugin,
        )
        self.engine = Engine(
            store=self._store, api=api, local=self._clients.client(local_url), clock=self.clock, sleep=self._sleep,
            max_concurrent_activities=s.engine.max_concurrent_activities,
        )
        engine_holder.append(self.engine)
        plugins = list(self._plugins) if self._plugins is not None else discover_plugins(s.engine.plugin_dirs)
        for plugin in plugins:
            if plugin.check_settings is not None:
                plugin.check_settings(s.plugin(plugin.settings_key))
        deployed: list[DeployedProcess] = []
        for plugin in plugins:
            placeholders = placeholders_for(plugin, s.organization.identifier, self._environ)
            processes = load_plugin(
                plugin, placeholders, excluded=s.engine.excluded_processes, retired=s.engine.retired_processes
            )
            await self._upload(plugin, processes, placeholders)
            deployed += processes
        await self.engine.deploy(deployed)
        for plugin in plugins:
            await _notify_deployed(plugin, api, [p.process_id for p in deployed if p.plugin is plugin and p.status == "active"])
        await self.engine.start()
        self.connector = TaskConnector(
            client=self._clients.client(local_url),
            websocket_session=self._clients.session,
            handler=self.engine.handle_task,
            last_events=self._store,
            catch_up_seconds=s.engine.catch_up_seconds,
            reconnect_seconds=s.engine.reconnect_seconds,
        )
        self.response_connector = TaskConnector(
            client=self._clients.client(local_url),
            websocket_session=self._clients.session,
            handler=self.engine.handle_questionnaire_response,
            last_events=self._store,
            kind="QuestionnaireResponse",
            criteria=codes.QUESTIONNAIRE_RESPONSE_SUBSCRIPTION_CRITERIA,
            catch_up_seconds=s.engine.catch_up_seconds,
            reconnect_seconds=s.engine.reconnect_seconds,
        )
        await self.connector.start()
        await self.response_connector.start()

    def _data_store_clients(self) -> dict[str, FhirClient]:
        """One client per configured data store, each with its own TLS identity and auth header."""
        s = self.settings
        clients: dict[str, FhirClient] = {}
        for name, store in s.data_stores.items():
            certificate = store.auth == "certificate"
            factory = ClientFactory.from_files(
                cafile=store.trust_server_cas or s.engine.trust_server_cas or s.tls.trust_client_cas,
                cert_file=(store.client_certificate or s.organization.client_certificate) if certificate else None,
                key_file=(store.client_private_key or s.organization.client_private_key) if certificate else None,
                sleep=self._sleep,
            )
            self._data_store_factories.append(factory)
            headers: dict[str, str] = {}
            if store.auth == "basic":
                token = base64.b64encode(f"{store.username}:{store.password}".encode()).decode()
                headers["Authorization"] = f"Basic {token}"
            elif store.auth == "bearer":
                headers["Authorization"] = f"Bearer {store.bearer_token}"
            clients[name] = factory.client(store.base_url, headers=headers)
        return clients

    async def _upload(self, plugin: ProcessPlugin, processes: Sequence[DeployedProcess], placeholders: Mapping[str, str]) -> None:
        resources: list[dict[str, Any]] = []
        seen: set[tuple[str, str]] = set()
        for process in processes:
            status = "retired" if process.status == "retired" else "active"
            for resource in plugin_resources(plugin, process.process_id, placeholders, status=status):
                key = (resource["resourceType"], str(resource.get("url") or resource.get("identifier") or resource.get("name")))
                if key not in seen:  # resources shared by several processes go up once
                    seen.add(key)
                    resources.append(resource)
        if not resources:
            return
        assert self._clients is not None
        try:
            reply = await self._clients.client(self.settings.engine_fhir_base_url).transaction(resource_upload_bundle(resources))
        except FhirClientError as exc:
            raise DeploymentError(f"plugin {plugin.name}: uploading its FHIR resources failed: {exc}") from exc
        problems = []
        for resource, entry in zip(resources, reply.get("entry", []), strict=False):
            status = str(entry.get("response", {}).get("status", ""))
            if not status.startswith("2"):
                outcome = entry.get("response", {}).get("outcome", {})
                detail = "; ".join(i.get("diagnostics", "") for i in outcome.get("issue", []))
                problems.append(f"{resource['resourceType']} {resource.get('url') or resource.get('identifier')}: {status} {detail}")
        if problems:
            raise DeploymentError(f"plugin {plugin.name}: the mailbox refused FHIR resources: " + " | ".join(problems))
        log.info("plugin %s %s: %d FHIR resources uploaded", plugin.name, plugin.version, len(resources))

    async def stop(self) -> None:
        await self.stop_engine()
        if self.mailbox is not None:
            await self.mailbox.stop()
        self.mailbox = None
