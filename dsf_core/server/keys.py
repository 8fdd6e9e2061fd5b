"""Every typed key of the mailbox application and its requests, in one place."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from dsf_core.fhir.authz.identity import Identity
    from dsf_core.fhir.storage.store import Store
    from dsf_core.server.identify import IdentityResolver
    from dsf_core.server.websocket import SubscriptionManager
    from dsf_core.settings import Settings

SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
STORE: web.AppKey[Store] = web.AppKey("store")
RESOLVER: web.AppKey[IdentityResolver] = web.AppKey("identity_resolver")
SUBSCRIPTIONS: web.AppKey[SubscriptionManager] = web.AppKey("subscriptions")

IDENTITY: web.RequestKey[Identity] = web.RequestKey("identity")
