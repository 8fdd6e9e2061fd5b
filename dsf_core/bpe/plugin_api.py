"""The engine's :class:`~dsf_core.api.ProcessPluginApi`: providers over the local mailbox.

The allow list lives in the local mailbox, so organisations, endpoints and targets are
FHIR searches there, as the local organisation. Sends go to the target's endpoint address
with the organisation's client certificate, through the shared connection pool.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar, cast

from dsf_core.api.targets import Target, Targets
from dsf_core.api.tasks import identifier_value
from dsf_core.client import ClientFactory, FhirClient, FhirClientError
from dsf_core.fhir.codes import ENDPOINT_IDENTIFIER, ORGANIZATION_IDENTIFIER, ORGANIZATION_ROLE
from dsf_core.settings import PluginSettings

__all__ = ["EngineApi"]

log = logging.getLogger("dsf.bpe.api")

Resource = dict[str, Any]
T = TypeVar("T")


def _id_ref(resource: Mapping[str, Any]) -> str:
    return f"{resource['resourceType']}/{resource['id']}"


class _Organizations:
    def __init__(self, api: EngineApi) -> None:
        self._api = api

    async def local(self) -> Resource | None:
        return await self.by_identifier(self._api.organization_identifier)

    async def by_identifier(self, identifier: str) -> Resource | None:
        bundle = await self._api.fhir.local().search(
            "Organization", {"identifier": f"{ORGANIZATION_IDENTIFIER}|{identifier}", "active": "true"}
        )
        return next((e["resource"] for e in bundle.get("entry", []) if e.get("search", {}).get("mode", "match") == "match"), None)

    async def remote(self) -> list[Resource]:
        out = []
        async for org in self._api.fhir.local().search_all("Organization", {"active": "true"}):
            identifier = identifier_value(org, ORGANIZATION_IDENTIFIER)
            if identifier and identifier != self._api.organization_identifier and _is_member_org(org):
                out.append(org)
        return out

    async def members(self, parent_identifier: str, role: str | None = None) -> list[Resource]:
        return [org for org, _ in await _memberships(self._api, parent_identifier, role)]


def _is_member_org(org: Mapping[str, Any]) -> bool:
    # Parent organisations have no endpoint and no thumbprint: only members exchange messages.
    return bool(org.get("endpoint"))


async def _memberships(api: EngineApi, parent: str, role: str | None) -> list[tuple[Resource, Resource | None]]:
    params: list[tuple[str, str]] = [
        ("primary-organization:identifier", f"{ORGANIZATION_IDENTIFIER}|{parent}"),
        ("active", "true"),
        ("_include", "OrganizationAffiliation:participating-organization"),
        ("_include", "OrganizationAffiliation:endpoint"),
    ]
    if role:
        params.append(("role", f"{ORGANIZATION_ROLE}|{role}"))
    affiliations: list[Resource] = []
    included: dict[str, Resource] = {}
    async for bundle in api.fhir.local().search_pages("OrganizationAffiliation", params):
        for entry in bundle.get("entry", []):
            resource = entry["resource"]
            if entry.get("search", {}).get("mode") == "include":
                included[_id_ref(resource)] = resource
            else:
                affiliations.append(resource)
    out: list[tuple[Resource, Resource | None]] = []
    for affiliation in affiliations:
        org = await _resolve(api, included, affiliation.get("participatingOrganization", {}), "Organization")
        if org is None or not org.get("active", True):
            continue
        endpoint = None
        for ref in affiliation.get("endpoint", []):
            endpoint = await _resolve(api, included, ref, "Endpoint")
            if endpoint is not None and endpoint.get("status") == "active":
                break
            endpoint = None
        out.append((org, endpoint))
    return out


async def _resolve(api: EngineApi, included: Mapping[str, Resource], ref: Mapping[str, Any], type_: str) -> Resource | None:
    """The resource a reference points to: from the search's includes, else read (logical: by identifier)."""
    reference = ref.get("reference")
    if isinstance(reference, str):
        key = "/".join(reference.split("/_history/")[0].rstrip("/").split("/")[-2:])  # Type/id of any URL form
        if key in included:
            return included[key]
        try:
            return await api.fhir.local().read(*key.split("/"))
        except (FhirClientError, TypeError):
            return None
    identifier = ref.get("identifier", {})
    if type_ == "Organization" and identifier.get("value"):
        return await api.organizations.by_identifier(str(identifier["value"]))
    return None


class _Endpoints:
    def __init__(self, api: EngineApi) -> None:
        self._api = api

    async def _first(self, params: Mapping[str, str]) -> Resource | None:
        bundle = await self._api.fhir.local().search("Endpoint", {**params, "status": "active"})
        return next((e["resource"] for e in bundle.get("entry", []) if e.get("search", {}).get("mode", "match") == "match"), None)

    async def local(self) -> Resource | None:
        if self._api.endpoint_identifier:
            found = await self.by_identifier(self._api.endpoint_identifier)
            if found is not None:
                return found
        return await self.by_address(self._api.endpoint_url)

    async def by_identifier(self, identifier: str) -> Resource | None:
        return await self._first({"identifier": f"{ENDPOINT_IDENTIFIER}|{identifier}"})

    async def by_address(self, address: str) -> Resource | None:
        return await self._first({"address": address})

    async def of_organization(self, organization_identifier: str) -> Resource | None:
        return await self._first({"organization:identifier": f"{ORGANIZATION_IDENTIFIER}|{organization_identifier}"})

    async def search(self, query: str) -> list[Resource]:
        path, _, raw = query.partition("?")
        if path.rsplit("/", 1)[-1] != "Endpoint":
            raise ValueError(f"not an Endpoint search: {query!r}")
        from urllib.parse import parse_qsl

        params = parse_qsl(raw, keep_blank_values=True)
        return [r async for r in self._api.fhir.local().search_all("Endpoint", params) if r.get("resourceType") == "Endpoint"]


def target_of(org: Mapping[str, Any], endpoint: Mapping[str, Any], correlation_key: str | None) -> Target:
    return Target(
        organization_identifier=identifier_value(org, ORGANIZATION_IDENTIFIER) or "",
        endpoint_identifier=identifier_value(endpoint, ENDPOINT_IDENTIFIER),
        endpoint_url=str(endpoint.get("address", "")).rstrip("/"),
        correlation_key=correlation_key,
    )


class _Targets:
    def __init__(self, api: EngineApi) -> None:
        self._api = api

    async def members(
        self, parent_identifier: str, role: str | None = None, *, exclude_local: bool = True, correlation_keys: bool = True
    ) -> Targets:
        targets = []
        for org, endpoint in await _memberships(self._api, parent_identifier, role):
            identifier = identifier_value(org, ORGANIZATION_IDENTIFIER)
            if endpoint is None or (exclude_local and identifier == self._api.organization_identifier):
                continue
            target = target_of(org, endpoint, None)
            targets.append(target.with_correlation_key() if correlation_keys else target)
        return Targets.of(sorted(targets, key=lambda t: t.organization_identifier))

    async def of_organization(self, organization_identifier: str, *, correlation_key: str | None = None) -> Target | None:
        org = await self._api.organizations.by_identifier(organization_identifier)
        endpoint = await self._api.endpoints.of_organization(organization_identifier)
        if org is None or endpoint is None:
            return None
        return target_of(org, endpoint, correlation_key)


class _Clients:
    def __init__(self, factory: ClientFactory, local_url: str, data_stores: Mapping[str, FhirClient]) -> None:
        self._factory = factory
        self._local_url = local_url
        self._data_stores = dict(data_stores)

    def local(self) -> FhirClient:
        return self._factory.client(self._local_url)

    def by_url(self, base_url: str) -> FhirClient:
        return self._factory.client(base_url)

    def data_store(self, name: str = "default") -> FhirClient:
        try:
            return self._data_stores[name]
        except KeyError:
            configured = ", ".join(sorted(self._data_stores)) or "none"
            raise LookupError(
                f"no data store {name!r} is configured at this node (configured: {configured}); "
                f"add a [data_stores.{name}] table to the node config"
            ) from None


class EngineApi:
    """What every activity of this node gets as ``api``."""

    def __init__(
        self,
        *,
        organization_identifier: str,
        endpoint_identifier: str | None,
        endpoint_url: str,
        local_fhir_url: str,
        clients: ClientFactory,
        send_clients: ClientFactory | None = None,
        clock: Callable[[], datetime],
        environ: Mapping[str, str],
        active_processes: Callable[[], Sequence[str]] = lambda: (),
        data_stores: Mapping[str, FhirClient] | None = None,
        plugin_settings: Callable[[str], PluginSettings] = PluginSettings,
    ) -> None:
        self._organization_identifier = organization_identifier
        self._endpoint_identifier = endpoint_identifier
        self._endpoint_url = endpoint_url.rstrip("/")
        self._clock = clock
        self._environ = dict(environ)
        self._active = active_processes
        self._fhir = _Clients(clients, local_fhir_url, data_stores or {})
        self._send = send_clients or clients
        self._organizations = _Organizations(self)
        self._endpoints = _Endpoints(self)
        self._targets = _Targets(self)
        self._plugin_settings = plugin_settings
        self._shared: dict[str, Any] = {}

    @property
    def organization_identifier(self) -> str:
        return self._organization_identifier

    @property
    def endpoint_identifier(self) -> str | None:
        return self._endpoint_identifier

    @property
    def endpoint_url(self) -> str:
        return self._endpoint_url

    @property
    def organizations(self) -> _Organizations:
        return self._organizations

    @property
    def endpoints(self) -> _Endpoints:
        return self._endpoints

    @property
    def targets(self) -> _Targets:
        return self._targets

    @property
    def fhir(self) -> _Clients:
        return self._fhir

    def now(self) -> datetime:
        return self._clock()

    def config(self, name: str, default: str | None = None) -> str | None:
        return self._environ.get(name, default)

    def plugin_settings(self, name: str) -> PluginSettings:
        return self._plugin_settings(name)

    def shared(self, key: str, factory: Callable[[], T]) -> T:
        if key not in self._shared:
            self._shared[key] = factory()
        return cast(T, self._shared[key])

    async def send_task(self, task: Resource, target: Target) -> str:
        client = self._send.client(target.endpoint_url)
        created = await client.create(task, minimal=True)
        log.info(
            "sent %s to %s (%s): Task/%s",
            _message_name(task), target.organization_identifier, target.endpoint_url, created.id,
        )
        return f"{target.endpoint_url.rstrip('/')}/Task/{created.id}"

    @property
    def active_processes(self) -> Sequence[str]:
        return tuple(self._active())


def _message_name(task: Mapping[str, Any]) -> str:
    for parameter in task.get("input", []):
        if any(c.get("code") == "message-name" for c in parameter.get("type", {}).get("coding", [])):
            return str(parameter.get("valueString"))
    return "?"
