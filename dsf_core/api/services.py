"""Services the engine gives every activity: :class:`ProcessPluginApi` and its providers.

Everything here talks to the local mailbox (the allow list lives there) or, for
:meth:`FhirClients.by_url`, to a peer's mailbox with the organisation's client
certificate. Organizations and Endpoints are returned as FHIR JSON dicts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Protocol, TypeVar

from dsf_core.api.targets import Target, Targets
from dsf_core.client import FhirClient
from dsf_core.settings import PluginSettings

__all__ = ["EndpointProvider", "FhirClients", "OrganizationProvider", "ProcessPluginApi", "TargetProvider"]

Resource = dict[str, Any]
T = TypeVar("T")


class OrganizationProvider(Protocol):
    async def local(self) -> Resource | None:
        """The local organisation."""

    async def by_identifier(self, identifier: str) -> Resource | None:
        """The active organisation with this DSF organisation identifier."""

    async def remote(self) -> list[Resource]:
        """Every active organisation except the local one."""

    async def members(self, parent_identifier: str, role: str | None = None) -> list[Resource]:
        """Active member organisations of a parent organisation, optionally only those with ``role``."""


class EndpointProvider(Protocol):
    async def local(self) -> Resource | None:
        """The local organisation's Endpoint."""

    async def by_identifier(self, identifier: str) -> Resource | None: ...

    async def by_address(self, address: str) -> Resource | None: ...

    async def of_organization(self, organization_identifier: str) -> Resource | None:
        """The active Endpoint of an organisation."""

    async def search(self, query: str) -> list[Resource]:
        """Endpoints matching a FHIR search (``Endpoint?status=active&…``) on the local mailbox."""


class TargetProvider(Protocol):
    async def members(
        self, parent_identifier: str, role: str | None = None, *, exclude_local: bool = True, correlation_keys: bool = True
    ) -> Targets:
        """One target per active member of a parent organisation (with ``role``), each with its Endpoint;
        with fresh correlation keys unless ``correlation_keys`` is false."""

    async def of_organization(self, organization_identifier: str, *, correlation_key: str | None = None) -> Target | None: ...


class FhirClients(Protocol):
    def local(self) -> FhirClient:
        """The local mailbox, as the local organisation."""

    def by_url(self, base_url: str) -> FhirClient:
        """A peer's mailbox (or any FHIR server trusting the organisation's client certificate)."""

    def data_store(self, name: str = "default") -> FhirClient:
        """A local FHIR data store configured in the node (``[data_stores.<name>]``), with its auth."""


class ProcessPluginApi(Protocol):
    @property
    def organization_identifier(self) -> str:
        """The local organisation's identifier (``http://dsf.dev/sid/organization-identifier``)."""

    @property
    def endpoint_identifier(self) -> str | None: ...

    @property
    def endpoint_url(self) -> str:
        """The local mailbox's base URL as peers know it."""

    @property
    def organizations(self) -> OrganizationProvider: ...

    @property
    def endpoints(self) -> EndpointProvider: ...

    @property
    def targets(self) -> TargetProvider: ...

    @property
    def fhir(self) -> FhirClients: ...

    def now(self) -> datetime:
        """The engine clock (aware, UTC)."""

    def config(self, name: str, default: str | None = None) -> str | None:
        """A plugin setting from the node's environment at start (``DEV_DSF_X_Y`` style names are read as given)."""

    def plugin_settings(self, name: str) -> PluginSettings:
        """The node config's ``[plugins.<name>]`` table (empty when there is none)."""

    def shared(self, key: str, factory: Callable[[], T]) -> T:
        """One object per node and ``key`` for the node's lifetime (a cache, a rate limiter), made by
        ``factory`` on first use.  Activities are created anew for every execution, and several nodes
        may share a process, so state that must outlive one execution lives here, not in globals."""

    async def send_task(self, task: Resource, target: Target) -> str:
        """POST a Task to the target's mailbox with the organisation's client certificate (retried);
        returns the absolute URL of the created Task (``<endpoint>/Task/<id>``, readable by us as its
        requester); raises :class:`dsf_core.client.FhirClientError` when it is refused or unreachable."""

    @property
    def active_processes(self) -> Sequence[str]:
        """``<process id>|<version>`` of every process this node runs."""
