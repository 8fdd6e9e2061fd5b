"""Binary: raw upload/download with X-Security-Context, Range requests, read access via securityContext."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from dsf_core.fhir import codes
from dsf_core.testing.mailbox import MailboxHarness

JSON = {"Accept": "application/fhir+json"}


async def _local_org_id(mb: MailboxHarness) -> str:
    async with mb.client("local.test") as http:
        bundle = await (await http.get(mb.url(f"Organization?identifier={codes.ORGANIZATION_IDENTIFIER}|local.test"))).json()
        return str(bundle["entry"][0]["resource"]["id"])


async def _code_system(mb: MailboxHarness, tag: str) -> str:
    cs = {
        "resourceType": "CodeSystem",
        "meta": {"tag": [{"system": codes.READ_ACCESS_TAG, "code": tag}]},
        "url": f"http://test.org/cs/{tag}",
        "version": "1",
        "status": "active",
        "content": "complete",
    }
    async with mb.client("local.test") as http:
        response = await http.post(mb.url("CodeSystem"), json=cs)
        assert response.status == 201
        return str((await response.json())["id"])


async def test_raw_upload_download_and_ranges(tmp_path: Path, database_url: str) -> None:
    payload = os.urandom(3 * 1024 * 1024 + 123)  # spans several storage chunks
    async with MailboxHarness(tmp_path, database_url=database_url) as mb:
        org = await _local_org_id(mb)
        async with mb.client("local.test") as http:
            response = await http.post(
                mb.url("Binary"),
                data=payload,
                headers={"Content-Type": "application/octet-stream", "X-Security-Context": f"Organization/{org}"} | JSON,
            )
            assert response.status == 201, await response.text()
            created = await response.json()
            assert "data" not in created and created["contentType"] == "application/octet-stream"
            url = mb.url(f"Binary/{created['id']}")

            raw = await http.get(url, headers={"Accept": "*/*"})
            assert raw.status == 200
            assert raw.headers["Content-Type"].startswith("application/octet-stream")
            assert raw.headers["X-Security-Context"] == f"Organization/{org}"
            assert raw.headers["Accept-Ranges"] == "bytes"
            assert hashlib.sha256(await raw.read()).digest() == hashlib.sha256(payload).digest()

            part = await http.get(url, headers={"Accept": "*/*", "Range": "bytes=1048570-1048600"})
            assert part.status == 206
            assert part.headers["Content-Range"] == f"bytes 1048570-1048600/{len(payload)}"
            assert await part.read() == payload[1048570:1048601]

            tail = await http.get(url, headers={"Accept": "*/*", "Range": "bytes=-10"})
            assert tail.status == 206 and await tail.read() == payload[-10:]

            beyond = await http.get(url, headers={"Accept": "*/*", "Range": f"bytes={len(payload) + 5}-"})
            assert beyond.status == 416

            stale = await http.get(url, headers={"Accept": "*/*", "Range": "bytes=0-9", "If-Range": 'W/"99"'})
            assert stale.status == 200 and len(await stale.read()) == len(payload)

            as_fhir = await http.get(url, headers={"Accept": "application/fhir+json"})
            assert as_fhir.status == 200
            resource = await as_fhir.json()
            import base64

            assert base64.b64decode(resource["data"]) == payload

            head = await http.head(url, headers={"Accept": "*/*"})
            assert head.status == 200 and int(head.headers["Content-Length"]) == len(payload)


async def test_binary_read_access_follows_security_context(tmp_path: Path, database_url: str) -> None:
    async with MailboxHarness(tmp_path, database_url=database_url) as mb:
        local_cs = await _code_system(mb, "LOCAL")
        all_cs = await _code_system(mb, "ALL")
        ids = {}
        async with mb.client("local.test") as http:
            for name, cs in (("local", local_cs), ("all", all_cs)):
                response = await http.post(
                    mb.url("Binary"),
                    data=b"secret " + name.encode(),
                    headers={"Content-Type": "text/plain", "X-Security-Context": f"CodeSystem/{cs}"} | JSON,
                )
                assert response.status == 201
                ids[name] = (await response.json())["id"]
        async with mb.client("remote.test") as http:
            assert (await http.get(mb.url(f"Binary/{ids['all']}"), headers={"Accept": "*/*"})).status == 200
            denied = await http.get(mb.url(f"Binary/{ids['local']}"), headers=JSON)
            assert denied.status == 403 and (await denied.json())["issue"][0]["code"] == "forbidden"
            search = await (await http.get(mb.url("Binary"), headers=JSON)).json()
            assert search["total"] == 1
            refused = await http.post(
                mb.url("Binary"), data=b"x", headers={"Content-Type": "text/plain", "X-Security-Context": f"CodeSystem/{all_cs}"}
            )
            assert refused.status == 403


async def test_raw_upload_needs_security_context(tmp_path: Path) -> None:
    async with MailboxHarness(tmp_path) as mb:
        async with mb.client("local.test") as http:
            response = await http.post(mb.url("Binary"), data=b"abc", headers={"Content-Type": "text/plain"} | JSON)
            assert response.status == 400
            assert (await response.json())["issue"][0]["code"] == "invalid"


async def test_permanent_delete_removes_binary_and_history(tmp_path: Path, database_url: str) -> None:
    async with MailboxHarness(tmp_path, database_url=database_url) as mb:
        org = await _local_org_id(mb)
        async with mb.client("local.test") as http:
            created = await (
                await http.post(
                    mb.url("Binary"),
                    data=b"payload",
                    headers={"Content-Type": "text/plain", "X-Security-Context": f"Organization/{org}"} | JSON,
                )
            ).json()
            bid = created["id"]
            assert (await http.delete(mb.url(f"Binary/{bid}"))).status == 200
            assert (await http.get(mb.url(f"Binary/{bid}"), headers=JSON)).status == 410
            assert (await http.post(mb.url(f"Binary/{bid}/$permanent-delete"), headers=JSON)).status == 200
            assert (await http.get(mb.url(f"Binary/{bid}"), headers=JSON)).status == 404
            history = await (await http.get(mb.url("Binary/_history"), headers=JSON)).json()
            assert history["total"] == 0


async def test_store_mode_takes_a_raw_binary_without_security_context(tmp_path: Path) -> None:
    async with MailboxHarness(tmp_path, mode="store", auth_overrides={"store_auth": "bearer", "store_bearer_token": "t"}) as mb:
        auth = {"Authorization": "Bearer t"}
        async with mb.client(None) as http:
            response = await http.post(mb.url("Binary"), data=b"a,b\n1,2\n", headers={"Content-Type": "text/csv"} | JSON | auth)
            assert response.status == 201, await response.text()
            created = await response.json()
            assert "securityContext" not in created
            raw = await http.get(mb.url(f"Binary/{created['id']}"), headers={"Accept": "*/*"} | auth)
            assert raw.status == 200 and await raw.read() == b"a,b\n1,2\n" and "X-Security-Context" not in raw.headers
