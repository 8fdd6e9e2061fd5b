"""Async FHIR client: the engine's only way to talk HTTP to mailboxes (its own and its peers').

::

    async with ClientFactory.from_files(cafile=ca, cert_file=crt, key_file=key) as clients:
        fhir = clients.client("https://dic.example.org/fhir")
        created = await fhir.create(task)                 # Created(id, version_id, location, ...)
        async for t in fhir.search_all("Task", {"status": "requested"}):
            ...

JSON (``application/fhir+json``) both ways.  mTLS comes from the ``ssl.SSLContext`` of the
shared aiohttp session; :class:`ClientFactory` owns that session (one per TLS identity) and
hands out a :class:`FhirClient` per base URL over the same connection pool.

Errors::

    FhirClientError        status = HTTP status of the answer; .outcome = its OperationOutcome
    └── FhirUnreachable    status = 0: connection refused, TLS failure, timeout, dropped connection

:func:`classify` turns either into the status codes the DSF plugins report (``not-allowed`` for
401/403, ``not-reachable`` for everything else, as the Java ping plugin does).

Retries: connection errors, timeouts and 429/502/503/504 are retried up to ``attempts`` times,
``retry_seconds`` apart (``Retry-After`` wins when the server sends it); other 4xx never.  A POST
that is not idempotent (create without If-None-Exist, transaction) is retried only when the server
cannot have processed it — the connection was never established, or the answer was 429/503 —
because a timeout after the server committed would otherwise deliver the same Task twice.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import http
import logging
import re
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import aiohttp
import orjson
from multidict import CIMultiDictProxy
from yarl import URL

from dsf_core import pki

__all__ = [
    "ClientFactory",
    "Created",
    "FhirClient",
    "FhirClientError",
    "FhirUnreachable",
    "Params",
    "Sleep",
    "classify",
    "parse_location",
]

log = logging.getLogger("dsf.client")

FHIR_JSON = "application/fhir+json"
Params = Mapping[str, str | Sequence[str]] | Sequence[tuple[str, str]]
Sleep = Callable[[float], Awaitable[object]]

_RETRY_STATUS = frozenset({429, 502, 503, 504})
# Statuses that promise the request was not processed, so even a non-idempotent POST may repeat.
_NOT_PROCESSED_STATUS = frozenset({429, 503})
_MAX_RETRY_AFTER = 300.0  # a server asking us to park longer is treated as this
_LOCATION = re.compile(r"(?:^|/)(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})(?:/_history/(?P<vid>[^/?#]+))?/?$")


class FhirClientError(Exception):
    """A request failed: the server answered with an error status, or (subclass) was not reachable."""

    def __init__(
        self, status: int, method: str, url: str, message: str, outcome: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.method = method
        self.url = url
        self.message = message
        self.outcome = outcome

    @property
    def not_allowed(self) -> bool:
        """True when the server refused who we are (401) or what we asked (403)."""
        return self.status in (401, 403)

    @property
    def diagnostics(self) -> str | None:
        """The first issue's diagnostics (or details text) of the OperationOutcome, if any."""
        for issue in (self.outcome or {}).get("issue") or []:
            text = issue.get("diagnostics") or (issue.get("details") or {}).get("text")
            if text:
                return str(text)
        return None


class FhirUnreachable(FhirClientError):
    """No HTTP answer: connection refused or dropped, TLS handshake failed, or timed out (status 0)."""

    def __init__(self, method: str, url: str, reason: str) -> None:
        super().__init__(0, method, url, f"unreachable: {method} {url}: {reason}")


def classify(error: BaseException) -> Literal["not-allowed", "not-reachable"]:
    """The DSF status code a plugin reports for a failed request (as the Java ping plugin does)."""
    if isinstance(error, FhirClientError) and error.not_allowed:
        return "not-allowed"
    return "not-reachable"


@dataclass(frozen=True, slots=True)
class Created:
    """Outcome of a create: ``status`` 201, or 200 when If-None-Exist found an existing resource."""

    id: str
    version_id: str | None
    location: str | None
    resource: dict[str, Any] | None
    status: int = 201


def parse_location(location: str) -> tuple[str, str, str | None]:
    """``…/Type/id/_history/v`` → (type, id, version); version None when the URL has none."""
    match = _LOCATION.search(URL(location).path)
    if match is None:
        raise ValueError(f"not a FHIR resource location: {location!r}")
    return match["type"], match["id"], match["vid"]


@dataclass(frozen=True, slots=True)
class _Reply:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body) if self.body.strip() else None


def _pairs(params: Params | None) -> list[tuple[str, str]]:
    if params is None:
        return []
    if isinstance(params, Mapping):
        out: list[tuple[str, str]] = []
        for key, value in params.items():
            if isinstance(value, str):
                out.append((key, value))
            else:
                out.extend((key, v) for v in value)
        return out
    return [(k, v) for k, v in params]


def _retry_after(headers: Mapping[str, str], default: float) -> float:
    """The pause a 429/503 asks for (seconds or an HTTP date), else *default*."""
    value = headers.get("Retry-After")
    if not value:
        return default
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return default
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return min(max(seconds, 0.0), _MAX_RETRY_AFTER)


def _outcome_of(body: bytes) -> dict[str, Any] | None:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if isinstance(parsed, dict) and parsed.get("resourceType") == "OperationOutcome":
        return parsed
    return None


def _http_error(status: int, reason: str | None, method: str, url: str, body: bytes) -> FhirClientError:
    outcome = _outcome_of(body)
    if not reason:
        try:
            reason = http.HTTPStatus(status).phrase
        except ValueError:
            reason = ""
    message = f"{f'{status} {reason}'.strip()}: {method} {url}"
    error = FhirClientError(status, method, url, message, outcome)
    detail = error.diagnostics or (None if outcome else body[:200].decode("utf-8", "replace").strip())
    if detail:
        error.message = f"{message}: {detail}"
        error.args = (error.message,)
    return error


class FhirClient:
    """REST interactions on one FHIR base URL over a shared aiohttp session."""

    def __init__(
        self,
        base_url: str,
        *,
        session: aiohttp.ClientSession,
        attempts: int = 3,
        retry_seconds: float = 2.0,
        timeout: float = 30.0,
        sleep: Sleep = asyncio.sleep,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.base_url = base_url.rstrip("/")
        self.session = session
        self.attempts = attempts
        self.retry_seconds = retry_seconds
        self.timeout = timeout
        self._sleep = sleep
        self._base = URL(self.base_url)
        #: Sent with every request (e.g. ``Authorization`` for a data store with basic or bearer auth).
        self.headers = dict(headers or {})

    def __repr__(self) -> str:
        return f"FhirClient({self.base_url!r})"

    # --- URLs -------------------------------------------------------------------------

    def url(self, path: str = "") -> str:
        """An absolute URL on this base for a relative path such as ``Task/1``."""
        return f"{self.base_url}/{path.lstrip('/')}" if path else self.base_url

    def on_base(self, url: str) -> bool:
        """True when *url* is this server's base or below it (same scheme, host, port, path prefix)."""
        target = URL(url)
        if not target.is_absolute() or _authority(target) != _authority(self._base):
            return False
        base_path = self._base.path.rstrip("/")
        return target.path == base_path or target.path.startswith(base_path + "/")

    def _absolute(self, ref: str) -> str:
        if ref.startswith(("http://", "https://")):
            if not self.on_base(ref):
                raise ValueError(f"{ref} is not on {self.base_url}")
            return ref
        return self.url(ref)

    # --- interactions -----------------------------------------------------------------

    async def create(
        self, resource: Mapping[str, Any], *, minimal: bool = True, if_none_exist: str | None = None
    ) -> Created:
        """POST the resource to its type; with ``minimal`` the server answers with headers only."""
        type_ = _type_of(resource)
        headers = {"Prefer": "return=minimal" if minimal else "return=representation"}
        if if_none_exist is not None:
            headers["If-None-Exist"] = if_none_exist
        reply = await self._request(
            "POST", self.url(type_), body=resource, headers=headers, idempotent=if_none_exist is not None
        )
        body = reply.json() if not minimal else None
        location = reply.headers.get("Location") or reply.headers.get("Content-Location")
        id_: str | None = None
        version: str | None = None
        if location:
            _, id_, version = parse_location(location)
        if isinstance(body, dict) and body.get("resourceType") == type_:
            id_ = body.get("id") or id_
            version = (body.get("meta") or {}).get("versionId") or version
        if version is None:
            version = _version_of_etag(reply.headers.get("ETag"))
        if id_ is None:
            raise FhirClientError(reply.status, "POST", self.url(type_), f"POST {self.url(type_)}: answer names no resource id")
        return Created(id_, version, location, body if isinstance(body, dict) else None, reply.status)

    async def read(self, type_: str, id_: str) -> dict[str, Any]:
        return await self._json("GET", self.url(f"{type_}/{id_}"))

    async def vread(self, type_: str, id_: str, version_id: str) -> dict[str, Any]:
        return await self._json("GET", self.url(f"{type_}/{id_}/_history/{version_id}"))

    async def read_url(self, url: str) -> dict[str, Any]:
        """GET an absolute URL (a reference, a paging link) of this same server."""
        return await self._json("GET", self._absolute(url))

    async def update(self, resource: Mapping[str, Any], *, if_match: str | None = None) -> dict[str, Any]:
        """PUT ``Type/id``; ``if_match`` is a version id (``"3"``) or an ETag (``W/"3"``)."""
        id_ = resource.get("id")
        if not id_:
            raise ValueError("update needs a resource with an id")
        headers = {"Prefer": "return=representation"}
        if if_match is not None:
            headers["If-Match"] = if_match if if_match.startswith(("W/", '"')) else f'W/"{if_match}"'
        return await self._json("PUT", self.url(f"{_type_of(resource)}/{id_}"), body=resource, headers=headers)

    async def delete(self, type_: str, id_: str) -> None:
        await self._request("DELETE", self.url(f"{type_}/{id_}"))

    async def delete_permanently(self, type_: str, id_: str) -> None:
        """``$permanent-delete``: every version of the resource gone, history included (DSF operation)."""
        await self._request("POST", self.url(f"{type_}/{id_}/$permanent-delete"))

    async def create_binary(
        self, content: bytes | AsyncIterable[bytes], *, content_type: str, security_context: str | None = None
    ) -> Created:
        """POST a Binary as its raw content, streamed when ``content`` is an async iterable.

        Content of a FHIR media type (``application/fhir+json``, ``application/xml``, …) goes as a
        Binary resource with the content base64 in ``data``: servers read such a body as a resource.

        ``security_context`` (``X-Security-Context``, e.g. ``Organization/<id>``) is the resource
        whose read access the Binary inherits on a DSF mailbox.  A stream cannot be sent twice,
        so this is never retried; there is no total timeout, only one per socket read.
        """
        url = self.url("Binary")
        headers = {**self.headers, "Accept": FHIR_JSON, "Content-Type": content_type, "Prefer": "return=minimal"}
        if security_context is not None:
            headers["X-Security-Context"] = security_context
        if content_type.split(";", 1)[0].strip().lower() in _FHIR_MEDIA_TYPES:
            # A FHIR content type says the body *is* a resource: send the Binary resource, data base64.
            content = _binary_resource(content, content_type, security_context)
            headers["Content-Type"] = FHIR_JSON
        timeout = aiohttp.ClientTimeout(sock_connect=self.timeout, sock_read=self.timeout)
        try:
            async with self.session.post(url, data=content, headers=headers, timeout=timeout) as response:
                payload = await response.read()
                if response.status >= 400:
                    raise _http_error(response.status, response.reason, "POST", url, payload)
                location = response.headers.get("Location") or response.headers.get("Content-Location")
                etag = response.headers.get("ETag")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise FhirUnreachable("POST", url, _reason(exc)) from exc
        if not location:
            raise FhirClientError(response.status, "POST", url, f"POST {url}: answer names no Binary location")
        _, id_, version = parse_location(location)
        return Created(id_, version or _version_of_etag(etag), location, None, response.status)

    async def search(self, type_: str, params: Params | None = None) -> dict[str, Any]:
        """One page of a search: the searchset Bundle.  Repeated keys are allowed (list of pairs)."""
        return await self._json("GET", self.url(type_), params=_pairs(params))

    async def search_pages(self, type_: str, params: Params | None = None) -> AsyncIterator[dict[str, Any]]:
        """Every page (Bundle) of a search, following ``next`` links on this same base (includes too)."""
        bundle = await self.search(type_, params)
        while True:
            yield bundle
            next_url = _link(bundle, "next")
            if next_url is None:
                return
            if not self.on_base(next_url):
                # A server behind a misconfigured proxy names another base; following it would
                # send our client certificate somewhere we were not asked to talk to.
                raise FhirClientError(0, "GET", next_url, f"next link {next_url} is not on {self.base_url}")
            bundle = await self._json("GET", next_url)

    async def search_all(self, type_: str, params: Params | None = None) -> AsyncIterator[dict[str, Any]]:
        """Every ``match`` resource of a search, following ``next`` links on this same base."""
        async for bundle in self.search_pages(type_, params):
            for entry in bundle.get("entry") or []:
                resource = entry.get("resource")
                mode = (entry.get("search") or {}).get("mode", "match")
                if mode == "match" and isinstance(resource, dict):
                    yield resource

    async def transaction(self, bundle: Mapping[str, Any]) -> dict[str, Any]:
        """POST a transaction (or batch) Bundle to the base; returns the response Bundle."""
        return await self._json("POST", self.base_url, body=bundle, idempotent=False)

    @asynccontextmanager
    async def open_binary(
        self, ref: str, *, accept: str = "*/*", offset: int = 0, length: int | None = None
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """Stream a Binary's content: ``Binary/<id>`` or an absolute URL on this server.

        Yields the open aiohttp response (status already checked); read it with
        ``response.content.iter_chunked(n)``.  Only establishing the download is retried;
        there is no total timeout, only one per socket read, so large files may take their time.
        ``offset`` > 0 asks for the content from that byte on (``Range``, to resume a download),
        ``length`` for at most that many bytes: the answer is 206 when the server honoured it, 200
        with the whole content when it did not.
        """
        url = self._absolute(ref)
        timeout = aiohttp.ClientTimeout(sock_connect=self.timeout, sock_read=self.timeout)
        headers = {**self.headers, "Accept": accept}
        if offset > 0 or length is not None:
            headers["Range"] = f"bytes={offset}-{'' if length is None else offset + length - 1}"
        attempt = 1
        while True:
            delay: float
            try:
                response = await self.session.request(
                    "GET", url, headers=headers, timeout=timeout, read_bufsize=_BINARY_READ_BUFFER
                )
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                error: FhirClientError = FhirUnreachable("GET", url, _reason(exc))
                if attempt >= self.attempts or isinstance(exc, aiohttp.ClientConnectorCertificateError):
                    raise error from exc
                delay = self.retry_seconds
            else:
                if response.status < 400:
                    try:
                        yield response
                    finally:
                        response.release()
                    return
                try:
                    body = await response.read()
                except (aiohttp.ClientError, TimeoutError, OSError):
                    body = b""
                finally:
                    response.release()
                error = _http_error(response.status, response.reason, "GET", url, body)
                if response.status not in _RETRY_STATUS or attempt >= self.attempts:
                    raise error
                delay = _retry_after(response.headers, self.retry_seconds)
            log.info("%s; attempt %d of %d, retrying in %.1f s", error.message, attempt, self.attempts, delay)
            attempt += 1
            await self._sleep(delay)

    # --- transport --------------------------------------------------------------------

    async def _json(
        self,
        method: str,
        url: str,
        *,
        params: Sequence[tuple[str, str]] = (),
        body: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool = True,
    ) -> dict[str, Any]:
        reply = await self._request(method, url, params=params, body=body, headers=headers, idempotent=idempotent)
        parsed = reply.json()
        if not isinstance(parsed, dict):
            raise FhirClientError(reply.status, method, url, f"{method} {url}: answer is not a FHIR resource")
        return parsed

    async def _request(
        self,
        method: str,
        url: str,
        *,
        params: Sequence[tuple[str, str]] = (),
        body: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool = True,
    ) -> _Reply:
        target = URL(url).extend_query(list(params)) if params else URL(url)
        shown = str(target)
        all_headers = {"Accept": FHIR_JSON, **self.headers, **(headers or {})}
        data = None
        if body is not None:
            all_headers["Content-Type"] = FHIR_JSON
            data = orjson.dumps(body)
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        attempt = 1
        while True:
            try:
                async with self.session.request(method, target, data=data, headers=all_headers, timeout=timeout) as response:
                    payload = await response.read()
                    if response.status < 400:
                        return _Reply(response.status, response.headers, payload)
                    error = _http_error(response.status, response.reason, method, shown, payload)
                    retryable = response.status in (_RETRY_STATUS if idempotent else _NOT_PROCESSED_STATUS)
                    delay = _retry_after(response.headers, self.retry_seconds)
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                error = FhirUnreachable(method, shown, _reason(exc))
                # A refused connection never carried the request; anything later might have.
                # A server certificate we could not verify will not verify on a second try.
                never_sent = isinstance(exc, aiohttp.ClientConnectorError)
                retryable = (idempotent or never_sent) and not isinstance(exc, aiohttp.ClientConnectorCertificateError)
                delay = self.retry_seconds
                if not retryable or attempt >= self.attempts:
                    raise error from exc
            if not retryable or attempt >= self.attempts:
                raise error
            log.info("%s; attempt %d of %d, retrying in %.1f s", error.message, attempt, self.attempts, delay)
            attempt += 1
            await self._sleep(delay)


#: Read buffer of a Binary download: fewer pauses of the socket than aiohttp's 256 KiB, still bounded.
_BINARY_READ_BUFFER = 1024 * 1024

_FHIR_MEDIA_TYPES = frozenset({"application/fhir+json", "application/json", "application/json+fhir",
                               "application/fhir+xml", "application/xml", "application/xml+fhir", "text/xml"})


async def _binary_resource(content: bytes | AsyncIterable[bytes], content_type: str, security_context: str | None) -> AsyncIterator[bytes]:
    """``{"resourceType": "Binary", …, "data": "<base64>"}`` written as the content streams in."""
    head: dict[str, Any] = {"resourceType": "Binary", "contentType": content_type}
    if security_context is not None:
        head["securityContext"] = {"reference": security_context}
    yield orjson.dumps(head)[:-1] + b',"data":"'
    pieces = [content] if isinstance(content, bytes) else content
    carry = b""
    async for piece in _aiter(pieces):
        piece = carry + piece
        cut = len(piece) - len(piece) % 3
        carry = piece[cut:]
        yield base64.b64encode(piece[:cut])
    yield base64.b64encode(carry) + b'"}'


async def _aiter(pieces: list[bytes] | AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    if isinstance(pieces, list):
        for piece in pieces:
            yield piece
    else:
        async for piece in pieces:
            yield piece


def _type_of(resource: Mapping[str, Any]) -> str:
    type_ = resource.get("resourceType")
    if not isinstance(type_, str) or not type_:
        raise ValueError("resource has no resourceType")
    return type_


def _version_of_etag(etag: str | None) -> str | None:
    if not etag:
        return None
    return etag.removeprefix("W/").strip('"') or None


def _link(bundle: Mapping[str, Any], relation: str) -> str | None:
    for link in bundle.get("link") or []:
        if link.get("relation") == relation and link.get("url"):
            return str(link["url"])
    return None


def _authority(url: URL) -> tuple[str, str, int | None]:
    return url.scheme.lower(), (url.host or "").lower(), url.port


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError) and not str(exc):
        return "timed out"
    return str(exc) or type(exc).__name__


class ClientFactory:
    """One aiohttp session (connection pool) for one TLS identity; a :class:`FhirClient` per base URL.

    The session is created on first use, inside the running event loop.  ``session`` is also
    what the subscription connector opens its websocket with, so both present the same
    client certificate.
    """

    def __init__(
        self,
        ssl_context: ssl.SSLContext,
        *,
        limit: int = 256,
        limit_per_host: int = 32,
        keepalive_timeout: float = 30.0,
        attempts: int = 3,
        retry_seconds: float = 2.0,
        timeout: float = 30.0,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.ssl_context = ssl_context
        self.limit = limit
        self.limit_per_host = limit_per_host
        self.keepalive_timeout = keepalive_timeout
        self.attempts = attempts
        self.retry_seconds = retry_seconds
        self.timeout = timeout
        self._sleep = sleep
        self._session: aiohttp.ClientSession | None = None
        self._clients: dict[str, FhirClient] = {}

    @classmethod
    def from_files(
        cls,
        *,
        cafile: Path | None,
        cert_file: Path | None = None,
        key_file: Path | None = None,
        password: bytes | None = None,
        **options: Any,
    ) -> ClientFactory:
        """Build the TLS context once from PEM/PKCS#12 files (see :func:`dsf_core.pki.client_ssl_context`)."""
        context = pki.client_ssl_context(cafile=cafile, cert_file=cert_file, key_file=key_file, password=password)
        return cls(context, **options)

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                ssl=self.ssl_context,
                limit=self.limit,
                limit_per_host=self.limit_per_host,
                keepalive_timeout=self.keepalive_timeout,
            )
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    def client(self, base_url: str, *, headers: Mapping[str, str] | None = None) -> FhirClient:
        """The client for *base_url* (one per base and headers, all sharing this factory's connection pool)."""
        key = base_url.rstrip("/")
        cache_key = key if not headers else key + "\x00" + repr(sorted(headers.items()))
        client = self._clients.get(cache_key)
        if client is None or client.session is not self.session:
            client = FhirClient(
                key,
                session=self.session,
                attempts=self.attempts,
                retry_seconds=self.retry_seconds,
                timeout=self.timeout,
                sleep=self._sleep,
                headers=headers,
            )
            self._clients[cache_key] = client
        return client

    async def close(self) -> None:
        self._clients.clear()
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def __aenter__(self) -> ClientFactory:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
