"""Binary payloads as files (``fhir/storage/blobs.py``) and in the database: what a write leaves
behind when it succeeds, fails or is interrupted, what start-up sweeps, old chunk rows, memory."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import os
import time
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from sqlalchemy import func, select, text, update

from dsf_core.fhir import codes
from dsf_core.fhir.storage.blobs import STALE_SECONDS, BinaryStorageError
from dsf_core.fhir.storage.schema import blob_chunks, blobs
from dsf_core.fhir.storage.store import Store
from dsf_core.server.app import Mailbox
from dsf_core.settings import TlsSettings
from dsf_core.testing.mailbox import MailboxHarness, bind_free_port

JSON = {"Accept": "application/fhir+json"}
RAW = {"Accept": "*/*"}
MiB = 1024 * 1024


@pytest.fixture(params=["sqlite-files", "postgresql-database", "postgresql-files"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str | None, dict[str, Any], Path | None]:
    """(database URL, database settings, binary directory or None for payloads in the database)."""
    if request.param == "sqlite-files":
        return None, {}, tmp_path / "data" / "binaries"  # the default under node.data_dir
    url = request.getfixturevalue("pg_cluster").create_database()
    if request.param == "postgresql-database":
        return url, {}, None
    return url, {"binary_dir": tmp_path / "pg-binaries"}, tmp_path / "pg-binaries"


def payload_files(directory: Path | None) -> list[Path]:
    if directory is None or not directory.exists():
        return []
    return sorted(p for p in directory.glob("??/*") if p.is_file())


def temp_files(directory: Path | None) -> list[Path]:
    return sorted((directory / "incoming").glob("*")) if directory is not None and (directory / "incoming").exists() else []


async def count(store: Store, table: Any) -> int:
    async with store.read() as tx:
        return int((await tx.conn.execute(select(func.count()).select_from(table))).scalar_one())


async def eventually(check: Callable[[], Awaitable[bool]], what: str, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s: {what}")
        await asyncio.sleep(0.02)


async def local_org(mb: MailboxHarness) -> str:
    async with mb.client("local.test") as http:
        bundle = await (await http.get(mb.url(f"Organization?identifier={codes.ORGANIZATION_IDENTIFIER}|local.test"))).json()
        return str(bundle["entry"][0]["resource"]["id"])


async def upload(http: aiohttp.ClientSession, mb: MailboxHarness, body: Any, org: str, **headers: str) -> aiohttp.ClientResponse:
    return await http.post(
        mb.url("Binary"),
        data=body,
        headers={"Content-Type": "application/octet-stream", "X-Security-Context": f"Organization/{org}"} | JSON | headers,
    )


async def one(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def test_payload_round_trip_history_and_permanent_delete(
    tmp_path: Path, storage: tuple[str | None, dict[str, Any], Path | None]
) -> None:
    url, overrides, directory = storage
    payload = os.urandom(3 * MiB + 123)
    async with MailboxHarness(tmp_path, database_url=url, database_overrides=overrides) as mb:
        org = await local_org(mb)
        async with mb.client("local.test") as http:
            response = await upload(http, mb, payload, org)
            assert response.status == 201, await response.text()
            bid = (await response.json())["id"]
            if directory is not None:
                [stored] = payload_files(directory)
                assert stored.read_bytes() == payload and stored.stat().st_mode & 0o077 == 0
                assert await count(mb.store, blob_chunks) == 0 and not temp_files(directory)
            else:
                assert await count(mb.store, blob_chunks) == 4
            url_ = mb.url(f"Binary/{bid}")
            assert await (await http.get(url_, headers=RAW)).read() == payload
            part = await http.get(url_, headers=RAW | {"Range": f"bytes={MiB - 5}-{2 * MiB + 5}"})
            assert part.status == 206 and await part.read() == payload[MiB - 5 : 2 * MiB + 6]

            assert (await http.delete(url_)).status == 200  # logical: history keeps the payload
            old = await http.get(mb.url(f"Binary/{bid}/_history/1"), headers=RAW)
            assert old.status == 200 and await old.read() == payload
            assert payload_files(directory) == ([stored] if directory else [])

            assert (await http.post(mb.url(f"Binary/{bid}/$permanent-delete"), headers=JSON)).status == 200
            assert await count(mb.store, blobs) == 0 and await count(mb.store, blob_chunks) == 0
            assert (await http.get(url_, headers=RAW)).status == 404

            async def unlinked() -> bool:  # after the answer, in the background
                return payload_files(directory) == []

            await eventually(unlinked, "the payload file is removed")


async def test_interrupted_and_refused_uploads_leave_nothing(
    tmp_path: Path, storage: tuple[str | None, dict[str, Any], Path | None]
) -> None:
    url, overrides, directory = storage
    async with MailboxHarness(tmp_path, database_url=url, database_overrides=overrides) as mb:
        org = await local_org(mb)
        started = asyncio.Event()

        async def breaks_off() -> AsyncIterator[bytes]:
            for _ in range(3):
                yield os.urandom(MiB)
            started.set()
            await eventually(lambda: _has_partial(mb, directory), "the server stores the first MiBs")
            raise ConnectionAbortedError("the client gives up mid-upload")

        async with mb.client("local.test") as http:
            with pytest.raises((ConnectionAbortedError, aiohttp.ClientError)):
                await upload(http, mb, breaks_off(), org)
            assert started.is_set()

            async def nothing_left() -> bool:
                return not temp_files(directory) and not payload_files(directory) and await count(mb.store, blob_chunks) == 0

            await eventually(nothing_left, "the interrupted upload is removed")
            assert await count(mb.store, blobs) == 0

            # refused after the payload arrived: the security context names nothing
            refused = await upload(http, mb, os.urandom(2 * MiB), "no-such-organization")
            assert refused.status == 403 and (await refused.json())["issue"][0]["code"] == "invariant"
            assert await nothing_left() and await count(mb.store, blobs) == 0


async def _has_partial(mb: MailboxHarness, directory: Path | None) -> bool:
    if directory is not None:
        return any(p.stat().st_size > 0 for p in temp_files(directory))
    return await count(mb.store, blob_chunks) > 0


async def test_start_up_sweeps_what_crashes_left(tmp_path: Path, database_url: str) -> None:
    directory = tmp_path / "binaries"
    sqlite = database_url.startswith("sqlite")
    store = await Store.open(database_url, binary_dir=directory)
    try:
        kept, _ = await store.write_blob(one(b"linked"))
        async with store.write() as tx:
            await tx.create({"resourceType": "Binary", "contentType": "text/plain"}, blob_id=kept)
        orphan, _ = await store.write_blob(one(b"never linked: crash before the commit"))
        fresh, _ = await store.write_blob(one(b"being linked by another worker right now"))
        partial = directory / "incoming" / f"{uuid.uuid4().hex}.part"
        partial.write_bytes(b"crash mid-upload")
        rows = Store(store.engine, store.dialect, store.clock)  # an old upload into the database, never finished
        incomplete, _ = await rows.write_blob(one(b"chunk"))
    finally:
        await store.close()
    old = time.time() - STALE_SECONDS - 60
    for path in (directory / orphan[:2] / orphan, partial):
        os.utime(path, (old, old))
    store = await Store.open(database_url, binary_dir=directory)
    try:
        if not sqlite:  # other workers may be writing: only what is older than STALE_SECONDS goes
            assert await count(store, blobs) == 2
            async with store.write() as tx:
                await tx.conn.execute(update(blobs).where(blobs.c.blob_id == incomplete).values(created=0))
            await store.close()
            store = await Store.open(database_url, binary_dir=directory)
        assert b"".join([p async for p in store.read_blob(kept)]) == b"linked"
        names = {p.name for p in payload_files(directory)}
        assert names == ({kept} if sqlite else {kept, fresh})
        assert temp_files(directory) == []
        async with store.read() as tx:
            assert (await tx.conn.execute(select(blobs.c.blob_id))).scalars().all() == [kept]
        assert await count(store, blob_chunks) == 0
    finally:
        await store.close()


async def test_a_database_with_payload_chunks_from_before_keeps_working(tmp_path: Path, database_url: str) -> None:
    """Schema 2 kept every payload in blob_chunks; such a store starts with files and serves both."""
    payload = os.urandom(2 * MiB + 7)
    url = None if database_url.startswith("sqlite") else database_url
    files = tmp_path / "files"
    overrides = {"binary_dir": files}
    async with MailboxHarness(tmp_path, database_url=url, database_overrides=overrides) as mb:
        org = await local_org(mb)
        db_url = mb.settings.database_url
    old = await Store.open(db_url)  # no directory: chunk rows, as before schema 3
    try:
        blob_id, _ = await old.write_blob(one(payload))
        async with old.write() as tx:
            stored = await tx.create(
                {"resourceType": "Binary", "contentType": "application/octet-stream",
                 "securityContext": {"reference": f"Organization/{org}"}},
                blob_id=blob_id,
            )
            # back to schema 2: no location column, no store id
            await tx.conn.execute(text("ALTER TABLE blobs DROP COLUMN location"))
            await tx.conn.execute(text("DROP TABLE store_info"))
            await tx.conn.execute(text("DELETE FROM schema_version WHERE version = 3"))
    finally:
        await old.close()
    async with MailboxHarness(tmp_path, database_url=url, database_overrides=overrides) as mb:
        async with mb.client("local.test") as http:
            url_ = mb.url(f"Binary/{stored.id}")
            assert await (await http.get(url_, headers=RAW)).read() == payload
            part = await http.get(url_, headers=RAW | {"Range": f"bytes={MiB - 1}-{MiB}"})
            assert part.status == 206 and await part.read() == payload[MiB - 1 : MiB + 1]
            new = await upload(http, mb, b"new payload", org)
            assert new.status == 201 and [p.read_bytes() for p in payload_files(files)] == [b"new payload"]
            assert (await http.post(mb.url(f"Binary/{stored.id}/$permanent-delete"), headers=JSON)).status == 200
            assert await count(mb.store, blob_chunks) == 0


async def test_a_directory_serves_one_database(tmp_path: Path) -> None:
    directory = tmp_path / "binaries"
    first = await Store.open(f"sqlite:///{tmp_path / 'first.sqlite'}", binary_dir=directory)
    try:
        blob_id, _ = await first.write_blob(one(b"first's"))
        async with first.write() as tx:
            await tx.create({"resourceType": "Binary", "contentType": "text/plain"}, blob_id=blob_id)
    finally:
        await first.close()
    with pytest.raises(BinaryStorageError, match="give each database its own binary directory"):
        await Store.open(f"sqlite:///{tmp_path / 'second.sqlite'}", binary_dir=directory)
    with pytest.raises(BinaryStorageError, match="no binary directory is configured"):
        await Store.open(f"sqlite:///{tmp_path / 'first.sqlite'}")
    assert [p.read_bytes() for p in payload_files(directory)] == [b"first's"]


async def test_sendfile_without_tls_behind_a_proxy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    payload = os.urandom(MiB + 99)
    async with MailboxHarness(tmp_path, trusted_proxies=["127.0.0.1/32"]) as mb:
        org = await local_org_by_header(mb)
        settings = mb.settings
    plain = replace(settings, tls=TlsSettings())
    calls: list[int] = []
    loop_type = type(asyncio.get_running_loop())
    original = loop_type.sendfile

    async def counting(self: asyncio.AbstractEventLoop, *args: Any, **kwargs: Any) -> int:
        calls.append(1)
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(loop_type, "sendfile", counting)
    mailbox = Mailbox(plain)
    sock = bind_free_port()
    base = f"http://127.0.0.1:{sock.getsockname()[1]}/fhir"
    await mailbox.start(sock)
    try:
        cert = {"X-ClientCert": quote(mb.orgs["local.test"].client.cert_path.read_text())}
        async with aiohttp.ClientSession() as http:
            created = await http.post(
                f"{base}/Binary", data=payload,
                headers={"Content-Type": "application/octet-stream", "X-Security-Context": f"Organization/{org}"} | JSON | cert,
            )
            assert created.status == 201, await created.text()
            bid = (await created.json())["id"]
            assert await (await http.get(f"{base}/Binary/{bid}", headers=RAW | cert)).read() == payload
            part = await http.get(f"{base}/Binary/{bid}", headers=RAW | cert | {"Range": "bytes=1048570-"})
            assert part.status == 206 and await part.read() == payload[1048570:]
    finally:
        await mailbox.stop()
    assert len(calls) == 2


async def local_org_by_header(mb: MailboxHarness) -> str:
    cert = {"X-ClientCert": quote(mb.orgs["local.test"].client.cert_path.read_text())}
    async with mb.client(None) as http:
        query = f"Organization?identifier={codes.ORGANIZATION_IDENTIFIER}|local.test"
        bundle = await (await http.get(mb.url(query), headers=JSON | cert)).json()
        return str(bundle["entry"][0]["resource"]["id"])


async def test_memory_stays_bounded_for_a_large_payload(tmp_path: Path) -> None:
    size = 64 * MiB
    block = os.urandom(MiB)
    sent, received = hashlib.sha256(), hashlib.sha256()

    async def generated() -> AsyncIterator[bytes]:
        for i in range(size // MiB):
            piece = i.to_bytes(8, "big") + block[8:]
            sent.update(piece)
            yield piece

    async with MailboxHarness(tmp_path) as mb:
        org = await local_org(mb)
        async with mb.client("local.test") as http:
            gc.collect()
            tracemalloc.start()
            try:
                response = await upload(http, mb, generated(), org)
                assert response.status == 201
                upload_peak = tracemalloc.get_traced_memory()[1]
                tracemalloc.reset_peak()
                download = await http.get(mb.url(f"Binary/{(await response.json())['id']}"), headers=RAW)
                async for piece in download.content.iter_chunked(MiB):
                    received.update(piece)
                download_peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
    assert sent.digest() == received.digest()
    # client and server in this process: a few 1 MiB pieces in flight (~6 MiB measured), never the payload
    assert upload_peak < 12 * MiB and download_peak < 12 * MiB, (upload_peak / MiB, download_peak / MiB)


async def test_a_payload_is_listed_only_by_its_committed_version(tmp_path: Path) -> None:
    """The link is part of the version's transaction: a rolled-back write lists nothing."""
    store = await Store.open(f"sqlite:///{tmp_path / 'fhir.sqlite'}", binary_dir=tmp_path / "binaries")
    try:
        blob_id, _ = await store.write_blob(one(b"x" * 10))
        with pytest.raises(RuntimeError):
            async with store.write() as tx:
                await tx.create({"resourceType": "Binary", "contentType": "text/plain"}, blob_id=blob_id)
                raise RuntimeError("the version's write fails after the link")
        assert await count(store, blobs) == 0 and await store.blob_info(blob_id) is None
        await store.delete_blob(blob_id)  # what the caller does when the version's write failed
        assert payload_files(tmp_path / "binaries") == []
    finally:
        await store.close()


async def test_closing_the_store_waits_for_files_being_removed(tmp_path: Path) -> None:
    directory = tmp_path / "binaries"
    store = await Store.open(f"sqlite:///{tmp_path / 'fhir.sqlite'}", binary_dir=directory)
    try:
        blob_id, _ = await store.write_blob(one(os.urandom(3 * MiB)))
        async with store.write() as tx:
            stored = await tx.create({"resourceType": "Binary", "contentType": "text/plain"}, blob_id=blob_id)
        async with store.write() as tx:
            assert await tx.permanent_delete("Binary", stored.id) == 1
    finally:
        await store.close()
    assert payload_files(directory) == []
