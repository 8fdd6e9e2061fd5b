"""Moving a data set with bounded memory: read, encrypt and upload in one stream at the DIC;
download and decrypt in one stream (resuming with ``Range``) into private files at the DMS.

Nothing here holds a data set whole: pieces are what the HTTP client hands over (at most its read
buffer, 256 KiB) or :data:`PIECE` read from a file, plus base64's third. They are worked on as
they come, on the event loop: AES-GCM, base64 and a page-cache write cost about a millisecond per
MiB, less than handing each piece to a thread (the GIL changes hands twice) or gathering pieces
into larger buffers (a temporary of a MiB or more is given back to the system by malloc when
freed and costs 256 page faults on its next use). The DMS's files live in a per-instance
directory only its owner may read (:func:`work_directory`); the DIC needs none.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import tempfile
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from dsf_core.api import FhirClient, FhirClientError
from dsf_plugin_data_transfer.crypto import Decryptor, Encryptor
from dsf_plugin_data_transfer.data_set import Extracted, Extractor, bundle_xml

__all__ = [
    "OCTET_STREAM",
    "REFERENCE",
    "DownloadError",
    "download_and_decrypt",
    "encrypted_data_set",
    "file_chunks",
    "read_head",
    "remove_work_directory",
    "work_directory",
]

log = logging.getLogger("dsf.plugin.data_transfer")

OCTET_STREAM = "application/octet-stream"
Sleep = Callable[[float], Awaitable[object]]

#: ``[<base>/]<Type>/<id>[/_history/<version>]``
REFERENCE = re.compile(
    r"^(?:(?P<base>https?://.+)/)?(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})"
    r"(?:/_history/(?P<vid>[A-Za-z0-9\-.]{1,64}))?$"
)


#: Bytes read from a file at a time.
PIECE = 256 * 1024


async def binary_content(client: FhirClient, ref: str) -> AsyncIterator[bytes]:
    """A Binary's raw content as a stream, in the pieces it arrives in."""
    async with client.open_binary(ref, accept=OCTET_STREAM) as response:
        async for piece in response.content.iter_any():
            yield piece


async def read_head(client: FhirClient, ref: str, size: int) -> tuple[bytes, str]:
    """The first ``size`` bytes of a Binary and its content type (what the MIME check needs)."""
    head = bytearray()
    async with client.open_binary(ref, accept=OCTET_STREAM, length=size) as response:
        content_type = response.headers.get("Content-Type", OCTET_STREAM).split(";", 1)[0].strip()
        async for piece in response.content.iter_chunked(size):
            head += piece
            if len(head) >= size:
                break
    return bytes(head[:size]), content_type


async def encrypted_data_set(
    encryptor: Encryptor, head: bytes, payload: AsyncIterable[bytes], tail: bytes
) -> AsyncIterator[bytes]:
    """Wrapped key ‖ IV ‖ AES-GCM(Bundle XML with ``payload`` as its Binary's data) ‖ tag."""
    yield encryptor.header()
    async for piece in bundle_xml(head, payload, tail):
        yield encryptor.update(piece)
    yield encryptor.finalize()


async def file_chunks(path: Path, size: int = PIECE) -> AsyncIterator[bytes]:
    with path.open("rb") as source:
        while piece := source.read(size):
            yield piece


async def download_and_decrypt(
    client: FhirClient,
    ref: str,
    directory: Path,
    private_key: RSAPrivateKey,
    sender: str,
    receiver: str,
    *,
    attempts: int = 5,
    pause: float = 2.0,
    sleep: Sleep = asyncio.sleep,
) -> Extracted:
    """Download a data set and decrypt it as it arrives into ``directory`` (created 0700).

    A broken connection resumes with ``Range`` from the bytes received so far: the decryption goes
    on where it stopped, so nothing encrypted is kept on disk. The result is usable only because
    this returns at all: the GCM tag verified. On any failure the directory is removed before the
    error propagates, so no plaintext of a data set that did not verify stays behind.
    """
    directory.mkdir(mode=0o700)
    extractor = Extractor(directory)
    decryptor = Decryptor(private_key, sender, receiver, extractor)
    received = 0
    try:
        for attempt in range(1, attempts + 1):
            try:
                async with client.open_binary(ref, accept=OCTET_STREAM, offset=received) as response:
                    if received and response.status != 206:
                        raise DownloadError(f"{ref}: the server does not resume downloads (Range)")
                    async for piece in response.content.iter_any():  # decrypted as it comes (see above)
                        decryptor.update(piece)
                        received += len(piece)
                break
            except FhirClientError as error:
                # what arrived before the break is decrypted: the next attempt goes on after it
                if error.status != 0 or attempt == attempts:
                    raise
                reason: BaseException = error
            except (aiohttp.ClientError, TimeoutError) as error:
                if attempt == attempts:
                    raise
                reason = error
            log.warning("download of %s broke off after %d bytes (%s); resuming, attempt %d of %d",
                        ref, received, str(reason) or type(reason).__name__, attempt + 1, attempts)
            await sleep(pause)
        decryptor.finalize()
        return extractor.close()
    except BaseException:
        extractor.discard()
        shutil.rmtree(directory, ignore_errors=True)
        raise


class DownloadError(Exception):
    """The data set could not be downloaded."""


def work_directory(base: str | None, business_key: str) -> Path:
    """The instance's private directory (created 0700) under ``base`` (default: the system's temp directory)."""
    root = Path(base) if base else Path(tempfile.gettempdir())
    path = root / f"dsf-data-transfer-{business_key}"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def remove_work_directory(base: str | None, business_key: str) -> None:
    root = Path(base) if base else Path(tempfile.gettempdir())
    shutil.rmtree(root / f"dsf-data-transfer-{business_key}", ignore_errors=True)
