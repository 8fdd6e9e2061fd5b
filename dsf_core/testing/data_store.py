"""A site's local FHIR data store for tests and demos: our server in mode ``store`` on loopback.

::

    async with DataStoreServer(tmp_path / "kds", auth="basic") as store:
        await store.load(generate(DatasetSpec(patients=50, seed=1)))
        async with Network(tmp_path / "net", organizations=[OrgSpec("dic.test", ("DIC",))],
                           data_stores={"dic.test": {"default": store}}) as net:
            ...  # dic.test's activities read it with api.fhir.data_store("default")
        found = await store.client().search("Condition", {"code": "http://fhir.de/CodeSystem/bfarm/icd-10-gm|I10"})

The server runs on 127.0.0.1 with real TLS: a server certificate from its own development CA
(``directory/pki``).  ``auth`` is ``none``, ``basic`` (``username``/``password``), ``bearer``
(``bearer_token``) or ``certificate`` (a client certificate from that CA, issued here).
:meth:`DataStoreServer.settings` is the ``[data_stores.<name>]`` table a node needs to reach it
(base URL, auth, secrets, the CA as ``trust_server_cas`` and, for ``certificate``, the client
certificate); :meth:`DataStoreServer.client` is a FHIR client with the same credentials.

:meth:`DataStoreServer.load` writes generated data (a :class:`~dsf_core.data.Dataset`, patient
groups, or a transaction Bundle of ``PUT Type/id`` entries) one database transaction per batch,
through the server's own create and update interactions (structural validation included) but
in-process (no HTTP round trips, no request size limit).  Existing
ids get a new version, so loading twice is harmless.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import orjson

from dsf_core.client import ClientFactory, FhirClient
from dsf_core.data import Dataset, PatientGroup, transaction_bundles
from dsf_core.errors import DsfError, InvalidRequest
from dsf_core.fhir.authz.identity import Identity
from dsf_core.fhir.resource_types import RESOURCE_TYPES, STORE_EXTRA_TYPES
from dsf_core.server.interactions import write
from dsf_core.server.interactions.context import Ctx
from dsf_core.settings import DataStoreSettings, Secret
from dsf_core.testing.mailbox import MailboxHarness

__all__ = ["DataStoreServer", "StoreAuth"]

log = logging.getLogger(__name__)

StoreAuth = Literal["none", "basic", "bearer", "certificate"]
_LOADER = Identity("store", "data-loader")
_TYPES = frozenset(RESOURCE_TYPES + STORE_EXTRA_TYPES)


class DataStoreServer:
    """One FHIR data store (mode ``store``) on 127.0.0.1; use as ``async with``."""

    def __init__(
        self,
        directory: Path,
        *,
        auth: StoreAuth = "none",
        username: str = "dsf",
        password: str = "dsf-store-password",
        bearer_token: str = "dsf-store-token",
        database_url: str | None = None,
    ) -> None:
        if auth not in ("none", "basic", "bearer", "certificate"):
            raise ValueError(f"auth must be none, basic, bearer or certificate, got {auth!r}")
        self.directory = Path(directory)
        self.auth: StoreAuth = auth
        self.username = username
        self.password = Secret(password)
        self.bearer_token = Secret(bearer_token)
        overrides: dict[str, Any] = {"store_auth": auth}
        if auth == "basic":
            overrides |= {"store_username": username, "store_password": self.password}
        elif auth == "bearer":
            overrides["store_bearer_token"] = self.bearer_token
        self._harness = MailboxHarness(
            self.directory, local="data-store.test", mode="store", database_url=database_url, auth_overrides=overrides
        )
        self._started = False
        self._clients: ClientFactory | None = None

    async def __aenter__(self) -> DataStoreServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object | TracebackType) -> None:
        await self.stop()

    async def start(self) -> None:
        await self._harness.start()
        self._started = True

    async def stop(self) -> None:
        if self._clients is not None:
            await self._clients.close()
            self._clients = None
        await self._harness.stop()
        self._started = False

    # ---------------------------------------------------------------- how to reach it

    @property
    def base_url(self) -> str:
        self._check_started()
        return self._harness.base_url

    @property
    def ca_cert(self) -> Path:
        """The CA of the server certificate (and, for ``certificate`` auth, of the client certificate)."""
        self._check_started()
        return self._harness.pki.ca_cert_path

    def settings(self) -> DataStoreSettings:
        """What a node's ``[data_stores.<name>]`` table must say to reach this store."""
        client = self._harness.orgs[self._harness.local].client if self.auth == "certificate" else None
        return DataStoreSettings(
            base_url=self.base_url,
            auth=self.auth,
            username=self.username if self.auth == "basic" else None,
            password=self.password if self.auth == "basic" else None,
            bearer_token=self.bearer_token if self.auth == "bearer" else None,
            client_certificate=client.cert_path if client else None,
            client_private_key=client.key_path if client else None,
            trust_server_cas=self.ca_cert,
        )

    def client(self) -> FhirClient:
        """A FHIR client of this store with its credentials (closed when the store stops)."""
        settings = self.settings()
        if self._clients is None:
            self._clients = ClientFactory.from_files(
                cafile=settings.trust_server_cas,
                cert_file=settings.client_certificate,
                key_file=settings.client_private_key,
                attempts=1,
            )
        headers: dict[str, str] = {}
        if self.auth == "basic":
            headers["Authorization"] = "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        elif self.auth == "bearer":
            headers["Authorization"] = f"Bearer {self.bearer_token}"
        return self._clients.client(self.base_url, headers=headers)

    def _check_started(self) -> None:
        if not self._started:
            raise RuntimeError(f"the data store in {self.directory} is not started (use `async with` or start())")

    # ---------------------------------------------------------------- loading data

    async def load(
        self, data: Dataset | Iterable[PatientGroup] | Mapping[str, Any], *, batch_size: int = 100
    ) -> int:
        """Write *data* in transactions of *batch_size* patients (Bundle: entries); returns the resources written.

        All or nothing per batch: an invalid resource fails its batch with the entry, type and id
        named, and earlier batches stay.  Progress goes to this module's logger.
        """
        self._check_started()
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        written = 0
        for bundle in _bundles(data, batch_size):
            written += await self._write(bundle, written)
            log.info("loaded %d resources into %s", written, self.base_url)
        return written

    async def _write(self, bundle: Mapping[str, Any], offset: int) -> int:
        """One batch in one database transaction; entries are numbered from *offset* in messages."""
        store = self._harness.store
        ctx = Ctx(store=store, identity=_LOADER, local_identifier="", base_url=self.base_url, mode="store")
        entries = bundle.get("entry") or []
        async with store.write() as tx:
            for index, entry in enumerate(entries, start=offset):
                type_, id_ = _target(index, entry)
                try:
                    # A copy: storing stamps id and meta into the dict, and the caller's data stays as generated.
                    resource = write.prepare(ctx, orjson.loads(orjson.dumps(entry["resource"])), type_)
                    if await tx.current(type_, id_, for_update=True) is None:
                        await write.create_in(tx, ctx, resource, id_=id_, check_references=False)
                    else:
                        await write.update_in(tx, ctx, type_, id_, resource, check_references=False)
                except DsfError as exc:
                    exc.message = f"entry {index} (PUT {type_}/{id_}): {exc.message}"
                    exc.args = (exc.message,)
                    raise
        return len(entries)


def _bundles(data: Dataset | Iterable[PatientGroup] | Mapping[str, Any], batch_size: int) -> Iterator[Mapping[str, Any]]:
    if isinstance(data, Mapping):
        if data.get("resourceType") != "Bundle" or data.get("type") not in ("transaction", "batch"):
            raise InvalidRequest("only a transaction or batch Bundle can be loaded")
        entries = list(data.get("entry") or [])
        for start in range(0, len(entries), batch_size):
            yield {"resourceType": "Bundle", "type": "transaction", "entry": entries[start : start + batch_size]}
        return
    yield from transaction_bundles(data.groups if isinstance(data, Dataset) else data, batch_size)


def _target(index: int, entry: Mapping[str, Any]) -> tuple[str, str]:
    request = entry.get("request") or {}
    method, url = str(request.get("method", "")).upper(), str(request.get("url", ""))
    type_, _, id_ = url.partition("/")
    if method != "PUT" or not id_ or "/" in id_ or "?" in url or not isinstance(entry.get("resource"), dict):
        raise InvalidRequest(f"entry {index}: only PUT Type/id entries with a resource can be loaded, got {method} {url}")
    if type_ not in _TYPES:
        raise InvalidRequest(f"entry {index}: resource type {type_} is not served by a data store")
    return type_, id_
