"""FhirClient against a real mailbox over mTLS, and retry behaviour against tiny loopback servers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from dsf_core.client import (
    ClientFactory,
    FhirClient,
    FhirClientError,
    FhirUnreachable,
    classify,
    parse_location,
)
from dsf_core.testing.mailbox import MailboxHarness, bind_free_port
from tests.server.test_authorization import activity_definition, code_system, tag, task


class Sleeps:
    """Injected ``sleep``: records the pauses instead of waiting them out."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@asynccontextmanager
async def mailbox_client(
    tmp_path: Path, identifier: str | None = "local.test", **options: Any
) -> AsyncIterator[tuple[MailboxHarness, FhirClient]]:
    async with MailboxHarness(tmp_path) as mb:
        async with ClientFactory(mb.ssl_context(identifier), **options) as clients:
            yield mb, clients.client(mb.base_url)


Route = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def plain_server(handler: Route) -> AsyncIterator[str]:
    """A tiny HTTP server on loopback answering every path with *handler*; yields its base URL."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    sock = bind_free_port()
    site = web.SockSite(runner, sock)
    await site.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/fhir"
    finally:
        await runner.cleanup()


def outcome(text: str, code: str = "transient") -> bytes:
    return orjson.dumps({"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": code, "diagnostics": text}]})


def bundle(*resources: dict[str, Any], next_url: str | None = None) -> bytes:
    links = [{"relation": "next", "url": next_url}] if next_url else []
    return orjson.dumps(
        {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(resources),
            "link": links,
            "entry": [{"resource": r, "search": {"mode": "match"}} for r in resources],
        }
    )


FHIR = "application/fhir+json"


# --- against the mailbox -----------------------------------------------------------------


async def test_create_read_update_vread_delete(tmp_path: Path) -> None:
    async with mailbox_client(tmp_path) as (mb, fhir):
        created = await fhir.create(code_system("crud", [tag("ALL")]))
        assert created.status == 201 and created.version_id == "1" and created.resource is None
        assert created.location == mb.url(f"CodeSystem/{created.id}/_history/1")

        again = await fhir.create(code_system("crud", [tag("ALL")]), if_none_exist="url=http://test.org/fhir/CodeSystem/crud")
        assert (again.status, again.id) == (200, created.id)

        current = await fhir.read("CodeSystem", created.id)
        current["title"] = "Changed"
        updated = await fhir.update(current, if_match="1")
        assert updated["meta"]["versionId"] == "2" and updated["title"] == "Changed"
        assert (await fhir.vread("CodeSystem", created.id, "1")).get("title") is None
        assert (await fhir.read_url(mb.url(f"CodeSystem/{created.id}")))["title"] == "Changed"

        with pytest.raises(FhirClientError) as stale:
            await fhir.update(current, if_match='W/"1"')
        assert stale.value.status == 412 and stale.value.outcome is not None
        assert stale.value.outcome["issue"][0]["code"] == "conflict"

        await fhir.delete("CodeSystem", created.id)
        with pytest.raises(FhirClientError) as gone:
            await fhir.read("CodeSystem", created.id)
        assert gone.value.status == 410 and gone.value.outcome is not None
        assert gone.value.outcome["issue"][0]["code"] == "deleted"


async def test_create_with_representation_returns_the_resource(tmp_path: Path) -> None:
    async with mailbox_client(tmp_path) as (_, fhir):
        created = await fhir.create(code_system("full", [tag("ALL")]), minimal=False)
        assert created.resource is not None and created.resource["id"] == created.id
        assert created.version_id == created.resource["meta"]["versionId"] == "1"


async def test_search_pages_and_search_all_follows_next_links(tmp_path: Path) -> None:
    async with mailbox_client(tmp_path) as (_, fhir):
        ids = [(await fhir.create(code_system(f"page-{i}", [tag("ALL")]))).id for i in range(5)]
        prefix = "http://test.org/fhir/CodeSystem/page-"

        first = await fhir.search("CodeSystem", [("url:below", prefix), ("_count", "2"), ("_sort", "_lastUpdated")])
        assert first["total"] == 5 and len(first["entry"]) == 2
        assert any(link["relation"] == "next" for link in first["link"])

        found = [r["id"] async for r in fhir.search_all("CodeSystem", {"url:below": [prefix], "_count": "2", "_sort": "_lastUpdated"})]
        assert found == ids


async def test_task_no_activity_definition_authorises_is_not_allowed(tmp_path: Path) -> None:
    async with mailbox_client(tmp_path, "remote.test") as (mb, fhir):
        with pytest.raises(FhirClientError) as refused:
            await fhir.create(task("remote.test"))
        error = refused.value
        assert error.status == 403 and error.not_allowed and classify(error) == "not-allowed"
        assert not isinstance(error, FhirUnreachable)
        assert error.method == "POST" and error.url == mb.url("Task")
        assert error.outcome is not None and error.outcome["issue"][0]["code"] == "forbidden"
        assert str(error).startswith(f"403 Forbidden: POST {mb.url('Task')}: ")
        assert error.diagnostics and error.diagnostics in str(error)


async def test_remote_task_authorised_by_activity_definition_is_created(tmp_path: Path) -> None:
    async with MailboxHarness(tmp_path) as mb:
        async with ClientFactory(mb.ssl_context("local.test")) as local, ClientFactory(mb.ssl_context("remote.test")) as remote:
            await local.client(mb.base_url).create(activity_definition())
            created = await remote.client(mb.base_url).create(task("remote.test"))
            stored = await local.client(mb.base_url).read("Task", created.id)
            assert stored["status"] == "requested"


async def test_unknown_certificate_is_not_allowed(tmp_path: Path) -> None:
    async with mailbox_client(tmp_path, "unknown.test") as (_, fhir):
        with pytest.raises(FhirClientError) as refused:
            await fhir.search("Task")
        assert refused.value.status == 401 and classify(refused.value) == "not-allowed"
        assert refused.value.outcome is not None and refused.value.outcome["issue"][0]["code"] == "login"


async def test_binary_download_streams(tmp_path: Path) -> None:
    payload = bytes(range(256)) * 1000
    async with mailbox_client(tmp_path) as (mb, fhir):
        context = await fhir.create(code_system("binary-context", [tag("ALL")]))
        async with mb.client("local.test") as http:
            response = await http.post(
                mb.url("Binary"),
                data=payload,
                headers={"Content-Type": "application/octet-stream", "X-Security-Context": f"CodeSystem/{context.id}"},
            )
            assert response.status == 201, await response.text()
            binary_id = (await response.json())["id"]

        async with fhir.open_binary(f"Binary/{binary_id}") as download:
            assert download.headers["Content-Type"].startswith("application/octet-stream")
            chunks = [chunk async for chunk in download.content.iter_chunked(4096)]
        assert len(chunks) > 1 and b"".join(chunks) == payload

        async with fhir.open_binary(mb.url(f"Binary/{binary_id}")) as download:
            assert await download.read() == payload

        with pytest.raises(FhirClientError) as missing:
            async with fhir.open_binary("Binary/does-not-exist"):
                raise AssertionError("opened a missing Binary")
        assert missing.value.status == 404
        with pytest.raises(ValueError):
            async with fhir.open_binary("https://elsewhere.test/fhir/Binary/1"):
                raise AssertionError("followed a foreign URL")


async def pieces_of(data: bytes, size: int = 7) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i:i + size]


async def test_binary_upload_streams_resumes_with_range_and_deletes_permanently(tmp_path: Path) -> None:
    payload = bytes(range(256)) * 1000

    async def pieces() -> AsyncIterator[bytes]:
        for i in range(0, len(payload), 10_000):
            yield payload[i:i + 10_000]

    async with mailbox_client(tmp_path) as (mb, fhir):
        context = await fhir.create(code_system("binary-context", [tag("ALL")]))
        created = await fhir.create_binary(pieces(), content_type="text/csv", security_context=f"CodeSystem/{context.id}")
        assert created.status == 201 and created.version_id == "1"
        small = await fhir.create_binary(b"a,b", content_type="text/csv", security_context=f"CodeSystem/{context.id}")
        bundle = b'{"resourceType": "Bundle", "type": "collection"}'  # a FHIR media type goes as a Binary resource
        fhir_typed = await fhir.create_binary(pieces_of(bundle), content_type="application/fhir+json",
                                              security_context=f"CodeSystem/{context.id}")
        async with fhir.open_binary(f"Binary/{fhir_typed.id}", accept="application/octet-stream") as download:
            assert download.headers["Content-Type"].startswith("application/fhir+json") and await download.read() == bundle
        async with fhir.open_binary(f"Binary/{created.id}") as download:
            assert download.headers["Content-Type"].startswith("text/csv") and await download.read() == payload
        async with fhir.open_binary(f"Binary/{created.id}", offset=1000) as rest:
            assert rest.status == 206 and await rest.read() == payload[1000:]
        async with fhir.open_binary(f"Binary/{created.id}", length=10) as head:
            assert head.status == 206 and await head.read() == payload[:10]
        with pytest.raises(FhirClientError) as refused:
            await fhir.create_binary(b"x", content_type="text/plain")  # a mailbox needs the security context
        assert refused.value.status == 400

        await fhir.delete_permanently("Binary", created.id)
        for path in (f"Binary/{created.id}", f"Binary/{created.id}/_history/1", f"Binary/{created.id}/_history"):
            with pytest.raises(FhirClientError) as gone:
                await fhir.read_url(mb.url(path))
            assert gone.value.status == 404
        async with fhir.open_binary(f"Binary/{small.id}") as kept:
            assert await kept.read() == b"a,b"


# --- unreachable and retries --------------------------------------------------------------


async def test_closed_port_is_unreachable_after_the_configured_attempts() -> None:
    sock = bind_free_port()
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    sleeps = Sleeps()
    async with aiohttp.ClientSession() as session:
        fhir = FhirClient(f"https://127.0.0.1:{port}/fhir", session=session, attempts=4, retry_seconds=1.5, sleep=sleeps)
        with pytest.raises(FhirUnreachable) as unreachable:
            await fhir.read("Task", "1")
        assert sleeps.calls == [1.5, 1.5, 1.5]
        error = unreachable.value
        assert error.status == 0 and classify(error) == "not-reachable" and not error.not_allowed
        assert error.method == "GET" and error.url.endswith("/fhir/Task/1")

        # A refused connection never carried the request, so even a plain create is retried.
        sleeps.calls.clear()
        with pytest.raises(FhirUnreachable):
            await fhir.create({"resourceType": "Task"})
        assert sleeps.calls == [1.5, 1.5, 1.5]


async def test_503_is_retried_honouring_retry_after() -> None:
    calls: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        calls.append(request.path_qs)
        if len(calls) == 1:
            return web.Response(status=503, body=outcome("busy"), content_type=FHIR, headers={"Retry-After": "7"})
        return web.Response(body=bundle({"resourceType": "Task", "id": "t1"}), content_type=FHIR)

    sleeps = Sleeps()
    async with plain_server(handler) as base, aiohttp.ClientSession() as session:
        fhir = FhirClient(base, session=session, sleep=sleeps)
        result = await fhir.search("Task", [("status", "requested"), ("_profile", "a"), ("_profile", "b")])
    assert result["entry"][0]["resource"]["id"] == "t1"
    assert sleeps.calls == [7.0]
    assert calls == ["/fhir/Task?status=requested&_profile=a&_profile=b"] * 2


async def test_retryable_statuses_give_up_after_attempts_and_other_4xx_never_retry() -> None:
    statuses: list[int] = []

    async def handler(request: web.Request) -> web.Response:
        status = int(request.query.get("status", "200"))
        statuses.append(status)
        return web.Response(status=status, body=outcome(f"answer {status}", "processing"), content_type=FHIR)

    sleeps = Sleeps()
    async with plain_server(handler) as base, aiohttp.ClientSession() as session:
        fhir = FhirClient(base, session=session, attempts=3, retry_seconds=0.5, sleep=sleeps)
        with pytest.raises(FhirClientError) as bad_gateway:
            await fhir.search("Task", {"status": "502"})
        assert bad_gateway.value.status == 502 and classify(bad_gateway.value) == "not-reachable"
        assert statuses == [502, 502, 502] and sleeps.calls == [0.5, 0.5]

        statuses.clear()
        sleeps.calls.clear()
        with pytest.raises(FhirClientError) as invalid:
            await fhir.search("Task", {"status": "400"})
        assert statuses == [400] and sleeps.calls == []
        assert str(invalid.value) == f"400 Bad Request: GET {base}/Task?status=400: answer 400"


async def test_non_idempotent_post_is_retried_only_when_not_processed() -> None:
    answers: list[int] = []

    async def handler(request: web.Request) -> web.Response:
        status = answers.pop(0)
        headers = {"Location": f"{request.url.origin()}/fhir/Task/t9/_history/1"} if status == 201 else {}
        return web.Response(status=status, body=outcome(str(status)) if status >= 400 else b"", content_type=FHIR, headers=headers)

    sleeps = Sleeps()
    async with plain_server(handler) as base, aiohttp.ClientSession() as session:
        fhir = FhirClient(base, session=session, attempts=3, retry_seconds=0.25, sleep=sleeps)

        answers[:] = [502, 201]  # the proxy may have delivered it: do not send the Task twice
        with pytest.raises(FhirClientError) as proxy:
            await fhir.create({"resourceType": "Task"})
        assert proxy.value.status == 502 and sleeps.calls == []

        answers[:] = [503, 201]  # the server says it did not process it
        created = await fhir.create({"resourceType": "Task"})
        assert (created.id, created.version_id, sleeps.calls) == ("t9", "1", [0.25])

        answers[:] = [504, 201]  # a conditional create is idempotent
        sleeps.calls.clear()
        created = await fhir.create({"resourceType": "Task"}, if_none_exist="identifier=a|b")
        assert created.id == "t9" and sleeps.calls == [0.25]


async def test_timeout_is_unreachable() -> None:
    release = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response()

    sleeps = Sleeps()
    async with plain_server(slow) as base, aiohttp.ClientSession() as session:
        fhir = FhirClient(base, session=session, attempts=2, timeout=0.2, sleep=sleeps)
        with pytest.raises(FhirUnreachable) as timed_out:
            await fhir.read("Task", "1")
        release.set()
    assert "timed out" in str(timed_out.value) and sleeps.calls == [2.0]


async def test_search_all_refuses_next_links_to_another_base() -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=bundle({"resourceType": "Task", "id": "a"}, next_url="https://elsewhere.test/fhir/Task?_page=2"), content_type=FHIR)

    async with plain_server(handler) as base, aiohttp.ClientSession() as session:
        fhir = FhirClient(base, session=session)
        seen: list[str] = []
        with pytest.raises(FhirClientError, match="not on"):
            async for resource in fhir.search_all("Task"):
                seen.append(resource["id"])
        assert seen == ["a"]
        with pytest.raises(ValueError):
            await fhir.read_url("https://elsewhere.test/fhir/Task/1")


# --- values -------------------------------------------------------------------------------


def test_parse_location() -> None:
    assert parse_location("https://dic.test/fhir/Task/abc-1/_history/3") == ("Task", "abc-1", "3")
    assert parse_location("https://dic.test/fhir/Task/abc-1") == ("Task", "abc-1", None)
    assert parse_location("Binary/x.y/_history/12") == ("Binary", "x.y", "12")
    with pytest.raises(ValueError):
        parse_location("https://dic.test/fhir/")


def test_classify_other_errors_as_not_reachable() -> None:
    assert classify(RuntimeError("boom")) == "not-reachable"
    assert classify(FhirClientError(500, "GET", "u", "500")) == "not-reachable"
    assert classify(FhirClientError(401, "GET", "u", "401")) == "not-allowed"


def test_on_base() -> None:
    fhir = FhirClient("https://dic.test:443/fhir/", session=None)  # type: ignore[arg-type]
    assert fhir.base_url == "https://dic.test:443/fhir"
    assert fhir.on_base("https://dic.test/fhir/Task?_page=2")
    assert not fhir.on_base("https://dic.test/fhirx/Task")
    assert not fhir.on_base("http://dic.test/fhir/Task")
    assert not fhir.on_base("https://other.test/fhir/Task")
