"""Request → Identity: client certificate (direct mTLS or trusted proxy header) or data-store auth.

Organisation lookups by thumbprint are cached and the cache is dropped whenever an
Organization or OrganizationAffiliation is written, so a changed allow list takes
effect with the next request.
"""

from __future__ import annotations

import base64
import hmac
import ipaddress
import logging
import weakref
from datetime import UTC, datetime

from aiohttp import web

from dsf_core import pki
from dsf_core.errors import Unauthorized
from dsf_core.fhir.authz.identity import Identity, identity_for_thumbprint
from dsf_core.fhir.storage.store import Store
from dsf_core.settings import Settings

log = logging.getLogger(__name__)


class IdentityResolver:
    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self._cache = store.type_cache("identities", "Organization", "OrganizationAffiliation")
        # The client certificate's thumbprint per TLS connection: a keep-alive connection's
        # peer certificate does not change, and reading and hashing it costs more than a cache hit.
        self._thumbprints: weakref.WeakKeyDictionary[object, str] = weakref.WeakKeyDictionary()
        self._proxies = [ipaddress.ip_network(p, strict=False) for p in settings.auth.trusted_proxies]

    def _from_proxy(self, request: web.Request) -> bool:
        if not self._proxies or request.remote is None:
            return False
        try:
            address = ipaddress.ip_address(request.remote)
        except ValueError:
            return False
        return any(address in net for net in self._proxies)

    def peer_certificate_der(self, request: web.Request) -> bytes | None:
        """DER of the client certificate: from the trusted proxy's header, else from the TLS session."""
        if self._from_proxy(request):
            header = request.headers.get(self.settings.auth.client_certificate_header)
            if not header:
                return None
            try:
                cert = pki.certificate_from_header(header)
            except pki.PkiError as exc:
                raise Unauthorized(f"client certificate header unreadable: {exc}") from None
            now = datetime.now(UTC)
            if not (cert.not_valid_before_utc <= now <= cert.not_valid_after_utc):
                raise Unauthorized("client certificate expired or not yet valid")
            from cryptography.hazmat.primitives.serialization import Encoding

            return cert.public_bytes(Encoding.DER)
        transport = request.transport
        ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
        if ssl_object is None:
            return None
        der: bytes | None = ssl_object.getpeercert(binary_form=True)
        return der

    def _thumbprint(self, request: web.Request) -> str:
        transport = request.transport
        ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
        if ssl_object is not None and not self._from_proxy(request):
            known = self._thumbprints.get(ssl_object)
            if known is not None:
                return known
        der = self.peer_certificate_der(request)
        if der is None:
            raise Unauthorized("client certificate required")
        thumbprint = pki.thumbprint_der(der)
        if ssl_object is not None and not self._from_proxy(request):
            self._thumbprints[ssl_object] = thumbprint
        return thumbprint

    async def identify(self, request: web.Request) -> Identity:
        if self.settings.node.mode == "store":
            return self._store_identity(request)
        thumbprint = self._thumbprint(request)
        cached: Identity | None = self._cache.get(thumbprint)
        if cached is not None:
            return cached
        async with self.store.read() as tx:
            identity = await identity_for_thumbprint(tx, thumbprint, self.settings.organization.identifier)
        self._cache.put(thumbprint, identity)
        return identity

    def _store_identity(self, request: web.Request) -> Identity:
        auth = self.settings.auth
        header = request.headers.get("Authorization", "")
        if auth.store_auth == "none":
            return Identity("store", "anonymous")
        if auth.store_auth == "basic":
            if header.lower().startswith("basic "):
                try:
                    user, _, password = base64.b64decode(header[6:]).decode().partition(":")
                except (ValueError, UnicodeDecodeError):
                    raise Unauthorized("malformed basic credentials") from None
                if hmac.compare_digest(user, auth.store_username or "") and hmac.compare_digest(
                    password, str(auth.store_password or "")
                ):
                    return Identity("store", user)
            raise Unauthorized("valid basic credentials required", headers={"WWW-Authenticate": 'Basic realm="fhir"'})
        if auth.store_auth == "bearer":
            if header.lower().startswith("bearer ") and hmac.compare_digest(header[7:].strip(), str(auth.store_bearer_token)):
                return Identity("store", "bearer")
            raise Unauthorized("valid bearer token required", headers={"WWW-Authenticate": "Bearer"})
        der = self.peer_certificate_der(request)
        if der is None:
            raise Unauthorized("client certificate required")
        return Identity("store", pki.thumbprint_der(der)[:16], thumbprint=pki.thumbprint_der(der))
