"""A DMS's download of an encrypted data set resumes with Range after the connection broke, and the
decryption that runs as the bytes arrive goes on where it stopped.

A real mailbox serves the Binary; between it and the client sits a TCP relay on loopback that
cuts the first connection after part of the answer (TLS passes through it untouched), as a
flaky network would.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from dsf_plugin_data_transfer.crypto import encrypt
from dsf_plugin_data_transfer.data_set import read_skeleton
from dsf_plugin_data_transfer.transfer import download_and_decrypt

from dsf_core.api.fhir_xml import to_xml

from dsf_core.client import ClientFactory
from dsf_core.fhir import codes

KEY = rsa.generate_private_key(public_exponent=65537, key_size=4096)


def data_set(payload: bytes) -> bytes:
    """An encrypted data set whose Binary holds ``payload``."""
    import base64

    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:b", "resource": {"resourceType": "Binary", "contentType": "application/octet-stream",
                                               "data": base64.b64encode(payload).decode()},
         "request": {"method": "POST", "url": "Binary"}}]}
    return encrypt(KEY.public_key(), to_xml(bundle), "dic.test", "local.test")
from dsf_core.testing.mailbox import MailboxHarness


class CuttingRelay:
    """Forwards TCP to ``port``; the first connection is cut after ``cut`` bytes came back from the server."""

    def __init__(self, port: int, cut: int) -> None:
        self.port, self.cut = port, cut
        self.returned: list[int] = []  # bytes sent back to the client, per connection
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> CuttingRelay:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    @property
    def relay_port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def _relay(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        index = len(self.returned)
        self.returned.append(0)
        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self.port)
        limit = self.cut if index == 0 else None

        async def up() -> None:
            while data := await client_reader.read(65536):
                server_writer.write(data)
                await server_writer.drain()

        async def down() -> None:
            while data := await server_reader.read(65536):
                if limit is not None and self.returned[index] + len(data) >= limit:
                    return  # the network breaks down mid-answer
                self.returned[index] += len(data)
                client_writer.write(data)
                await client_writer.drain()

        tasks = [asyncio.ensure_future(up()), asyncio.ensure_future(down())]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
        for writer in (client_writer, server_writer):
            writer.transport.abort()


async def test_a_broken_download_resumes_where_it_stopped(tmp_path: Path) -> None:
    payload = os.urandom(3 * 1024 * 1024 + 5)
    async with MailboxHarness(tmp_path / "mailbox") as mb, ClientFactory(mb.ssl_context("local.test"), attempts=1) as clients:
        local = clients.client(mb.base_url)
        [organization] = [r async for r in local.search_all("Organization", {"identifier": f"{codes.ORGANIZATION_IDENTIFIER}|local.test"})]
        encrypted = data_set(payload)
        created = await local.create_binary(encrypted, content_type="application/octet-stream",
                                            security_context=f"Organization/{organization['id']}")
        async with CuttingRelay(mb.port, cut=1024 * 1024) as relay:
            base = f"https://127.0.0.1:{relay.relay_port}/fhir"
            extracted = await download_and_decrypt(clients.client(base), f"{base}/Binary/{created.id}/_history/1",
                                                   tmp_path / "data-set", KEY, "dic.test", "local.test", pause=0)
        _, files = read_skeleton(extracted)
        assert files[0].read_bytes() == payload
        assert len(relay.returned) == 2
        assert relay.returned[1] < len(encrypted) - 512 * 1024  # the second connection carried only the rest


async def test_without_attempts_left_a_broken_download_fails_and_leaves_nothing(tmp_path: Path) -> None:
    async with MailboxHarness(tmp_path / "mailbox") as mb, ClientFactory(mb.ssl_context("local.test"), attempts=1) as clients:
        local = clients.client(mb.base_url)
        [organization] = [r async for r in local.search_all("Organization", {"identifier": f"{codes.ORGANIZATION_IDENTIFIER}|local.test"})]
        created = await local.create_binary(data_set(os.urandom(2 * 1024 * 1024)), content_type="application/octet-stream",
                                            security_context=f"Organization/{organization['id']}")
        async with CuttingRelay(mb.port, cut=512 * 1024) as relay:
            base = f"https://127.0.0.1:{relay.relay_port}/fhir"
            with pytest.raises(aiohttp.ClientError):
                await download_and_decrypt(clients.client(base), f"{base}/Binary/{created.id}", tmp_path / "data-set",
                                           KEY, "dic.test", "local.test", attempts=1, pause=0)
        assert not (tmp_path / "data-set").exists()  # the partial plaintext is gone
