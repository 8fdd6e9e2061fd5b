"""The mailbox application: app factory and a runner for one server.

Resources are owned by ``cleanup_ctx`` entries so teardown runs exactly for what
started: the store (database engine), the identity resolver and the websocket
subscription manager.
"""

from __future__ import annotations

import ctypes
import logging
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from dsf_core import pki
from dsf_core.fhir.storage.blobs import BinaryStorageError
from dsf_core.fhir.storage.store import Clock, Store, system_clock
from dsf_core.server import keys
from dsf_core.server.identify import IdentityResolver
from dsf_core.server.initial import load_initial
from dsf_core.server.middleware import request_middleware
from dsf_core.server.routes import add_routes
from dsf_core.server.websocket import SubscriptionManager
from dsf_core.settings import Settings, SettingsError

log = logging.getLogger(__name__)


def create_app(settings: Settings, *, clock: Clock = system_clock) -> web.Application:
    app = web.Application(
        middlewares=[request_middleware],
        client_max_size=settings.server.max_body_bytes,
    )
    app[keys.SETTINGS] = settings

    async def store_ctx(app: web.Application) -> AsyncIterator[None]:
        if settings.database_url.startswith("sqlite"):
            settings.node.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            store = await Store.open(settings.database_url, clock=clock, binary_dir=settings.binary_dir)
        except BinaryStorageError as exc:
            raise SettingsError(f"database.binary_dir: {exc}") from None
        app[keys.STORE] = store
        app[keys.RESOLVER] = IdentityResolver(settings, store)
        try:
            await load_initial(settings, store)
            manager = SubscriptionManager(store)
            await manager.load()
            app[keys.SUBSCRIPTIONS] = manager
            yield
            await manager.close()
        finally:
            await store.close()

    app.cleanup_ctx.append(store_ctx)

    async def close_websockets(app: web.Application) -> None:
        # Before aiohttp waits for open handlers: an open websocket would hold shutdown for its timeout.
        manager = app.get(keys.SUBSCRIPTIONS)
        if manager is not None:
            await manager.close()

    app.on_shutdown.append(close_websockets)

    async def ws_handler(request: web.Request) -> web.StreamResponse:
        return await request.app[keys.SUBSCRIPTIONS].handle(request)

    base = settings.base_path
    app.router.add_get(base + "/ws", ws_handler)
    add_routes(app, base)
    return app


def server_ssl_context(settings: Settings) -> ssl.SSLContext | None:
    tls = settings.tls
    if tls.certificate is None:
        return None
    password = str(tls.private_key_password).encode() if tls.private_key_password else None
    require = tls.require_client_certificate and settings.node.mode == "dsf" and not settings.auth.trusted_proxies
    if settings.node.mode == "store" and settings.auth.store_auth == "certificate":
        require = True
    try:
        return pki.server_ssl_context(
            Path(tls.certificate),
            Path(tls.private_key) if tls.private_key else None,
            trust_cafile=Path(tls.trust_client_cas) if tls.trust_client_cas else None,
            password=password,
            require_client_cert=require,
        )
    except pki.PkiError as exc:
        raise SettingsError(f"tls: {exc}") from None


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc malloc.h


def keep_freed_memory() -> None:
    """Let glibc's malloc keep freed blocks of a few MiB for reuse (process-wide, once).

    Binaries stream through the process in pieces of 0.25-1 MiB, and every piece of it makes
    several temporaries that size (TLS records joined, ciphertext, base64).  By default malloc maps
    such blocks afresh or hands the top of the heap back to the system when they are freed, so each
    new one costs 256 page faults a MiB: 2 million faults and ~2 s of CPU for a 1 GiB data set at
    the DMS.  With these thresholds it reuses them (a few MiB stay mapped).  No-op without glibc.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_MMAP_THRESHOLD, 32 * 1024 * 1024)
    mallopt(_M_TRIM_THRESHOLD, 64 * 1024 * 1024)


class Mailbox:
    """One running mailbox server (used by ``dsf fhir start``, the test harness and benchmarks)."""

    def __init__(self, settings: Settings, *, clock: Clock = system_clock) -> None:
        self.settings = settings
        self.app = create_app(settings, clock=clock)
        # A request body is read in pieces of up to 1 MiB (aiohttp's default, 256 KiB, pauses and
        # resumes the socket 4× as often: ~6 % more CPU per uploaded GiB).
        self.runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=5, read_bufsize=1024 * 1024)

    async def start(self, sock: socket.socket | None = None) -> None:
        keep_freed_memory()
        await self.runner.setup()
        context = server_ssl_context(self.settings)
        if sock is not None:
            site: web.BaseSite = web.SockSite(self.runner, sock, ssl_context=context)
        else:
            site = web.TCPSite(self.runner, self.settings.server.host, self.settings.server.port, ssl_context=context)
        await site.start()
        log.info("FHIR mailbox listening on %s (base URL %s)", site.name, self.settings.server.base_url)

    @property
    def store(self) -> Store:
        return self.app[keys.STORE]

    async def stop(self) -> None:
        await self.runner.cleanup()
