"""FHIR asynchronous request pattern (``Prefer: respond-async``) over a :class:`FhirClient`'s session.

As the Java plugin's store client does (issue 139): the request goes out with
``Prefer: respond-async``; a ``202 Accepted`` with ``Content-Location`` means "working, ask
there".  The status URL is polled until it answers anything but 202.  Between polls we wait
what ``Retry-After`` says (seconds or an HTTP date), else exponentially from 250 ms doubling to
a 30 s cap.  The whole exchange is bounded by one deadline (the store's request timeout); when
it passes, or the caller is cancelled, the status URL gets a ``DELETE`` so the server can stop
working, and :class:`AsyncRequestTimeout` (or the cancellation) propagates.

A server that ignores the preference and answers at once is fine: that answer is the result.
The status URL must be on the store's host (same scheme, host and port) because we send the
store's credentials there.  HTTP errors raise :class:`dsf_core.api.FhirClientError` (status and
OperationOutcome attached), a store that does not answer raises its ``FhirUnreachable`` subclass.

This uses ``client.session`` and ``client.headers`` directly: :class:`FhirClient` has no way to
send an extra header and see a 202 with its headers, and retrying a kick-off would start the
evaluation twice, so its retrying transport is the wrong tool here.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
from yarl import URL

from dsf_core.api import FhirClient, FhirClientError
from dsf_core.client import FhirUnreachable

from dsf_plugin_feasibility.evaluation.errors import EvaluationError

__all__ = ["AsyncRequestTimeout", "AsyncResult", "PollPolicy", "get_respond_async"]

FHIR_JSON = "application/fhir+json"


class AsyncRequestTimeout(EvaluationError):
    """The asynchronous request did not finish before the deadline (it was cancelled with DELETE)."""


@dataclass(frozen=True, slots=True)
class PollPolicy:
    first_wait: float = 0.25
    max_wait: float = 30.0


@dataclass(frozen=True, slots=True)
class AsyncResult:
    status: int
    body: Any  # decoded JSON, None when the answer had no body
    polls: int  # status requests sent (0: answered synchronously)
    status_url: str | None


Sleep = Callable[[float], Awaitable[object]]


async def get_respond_async(
    client: FhirClient,
    path: str,
    params: Sequence[tuple[str, str]] = (),
    *,
    timeout: float,
    policy: PollPolicy = PollPolicy(),
    sleep: Sleep = asyncio.sleep,
    monotonic: Callable[[], float] = time.monotonic,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> AsyncResult:
    """GET ``[base]/path?params`` with ``Prefer: respond-async`` and wait for the final answer."""
    deadline = monotonic() + timeout
    url = URL(client.url(path)).extend_query(list(params)) if params else URL(client.url(path))
    headers = {**client.headers, "Accept": FHIR_JSON, "Prefer": "respond-async"}
    try:
        status, reply_headers, body = await _send(client, "GET", url, headers, deadline - monotonic())
    except FhirUnreachable:
        if monotonic() >= deadline:
            raise AsyncRequestTimeout(f"{url} did not answer within {timeout:g} s") from None
        raise
    if status != 202:
        return AsyncResult(status, _decoded("GET", url, status, body), 0, None)
    location = reply_headers.get("Content-Location")
    if not location:
        raise FhirClientError(202, "GET", str(url), f"GET {url}: 202 Accepted without Content-Location to poll")
    status_url = url.join(URL(location))
    if (status_url.scheme, status_url.host, status_url.port) != (url.scheme, url.host, url.port):
        raise FhirClientError(
            202, "GET", str(url), f"GET {url}: status location {status_url} is not on the store's host; not polled"
        )
    wait = _next_wait(reply_headers, None, policy, now())
    polls = 0
    try:
        while True:
            remaining = deadline - monotonic()
            if wait >= remaining:
                await sleep(max(remaining, 0.0))
                raise AsyncRequestTimeout(f"{url} did not finish within {timeout:g} s")
            await sleep(wait)
            polls += 1
            status, reply_headers, body = await _send(client, "GET", status_url, headers, deadline - monotonic())
            if status != 202:
                return AsyncResult(status, _decoded("GET", status_url, status, body), polls, str(status_url))
            wait = _next_wait(reply_headers, wait, policy, now())
    except (AsyncRequestTimeout, asyncio.CancelledError, FhirUnreachable) as exc:
        cancelled = await _cancel(client, status_url, headers)
        if isinstance(exc, AsyncRequestTimeout) or (isinstance(exc, FhirUnreachable) and monotonic() >= deadline):
            raise AsyncRequestTimeout(f"{url} did not finish within {timeout:g} s; {cancelled}") from None
        raise


async def _send(
    client: FhirClient, method: str, url: URL, headers: Mapping[str, str], remaining: float
) -> tuple[int, Mapping[str, str], bytes]:
    if remaining <= 0:
        raise AsyncRequestTimeout(f"{url}: no time left for the request")
    try:
        async with client.session.request(
            method, url, headers=dict(headers), timeout=aiohttp.ClientTimeout(total=remaining)
        ) as response:
            return response.status, response.headers, await response.read()
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        reason = str(exc) or ("timed out" if isinstance(exc, TimeoutError) else type(exc).__name__)
        raise FhirUnreachable(method, str(url), reason) from exc


def _decoded(method: str, url: URL, status: int, body: bytes) -> Any:
    parsed: Any = None
    if body.strip():
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            parsed = None
            if status < 400:
                raise FhirClientError(status, method, str(url), f"{method} {url}: answer is not JSON") from None
    if status >= 400:
        outcome = parsed if isinstance(parsed, dict) and parsed.get("resourceType") == "OperationOutcome" else None
        error = FhirClientError(status, method, str(url), f"{status}: {method} {url}", outcome)
        detail = error.diagnostics or (None if outcome else body[:200].decode("utf-8", "replace").strip())
        if detail:
            error.message = f"{error.message}: {detail}"
            error.args = (error.message,)
        raise error
    return parsed


async def _cancel(client: FhirClient, status_url: URL, headers: Mapping[str, str]) -> str:
    """DELETE the status URL (shielded from our own cancellation, at most 10 s); says how it went."""
    try:
        status, _, _ = await asyncio.shield(_send(client, "DELETE", status_url, headers, 10.0))
    except (FhirClientError, AsyncRequestTimeout, asyncio.CancelledError) as exc:
        return f"cancelling it at {status_url} failed: {exc or type(exc).__name__}"
    if status in (200, 202, 204):
        return f"cancelled at {status_url}"
    return f"cancelling it at {status_url} answered {status}"


def _next_wait(headers: Mapping[str, str], previous: float | None, policy: PollPolicy, now: datetime) -> float:
    """Retry-After (seconds or HTTP date) when given and readable, else the next exponential step."""
    value = headers.get("Retry-After", "").strip()
    if value.isdigit():
        return float(value)
    if value:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            when = None
        if when is not None:
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            return max((when - now).total_seconds(), 0.0)
    if previous is None:
        return policy.first_wait
    return min(policy.max_wait, max(policy.first_wait, previous * 2))
