"""The transferred data set: a transaction Bundle in FHIR XML, written and read as a stream.

The plaintext the DIC encrypts is, as for the Java plugin, the UTF-8 FHIR XML of a transaction
Bundle with two POST entries: a new DocumentReference (``masterIdentifier`` = the project,
``author`` = the DIC) and the attachment resource. When the attachment is a Binary of any size,
its ``data`` is never held whole:

* sending, :func:`frame` serialises the Bundle around a placeholder and :class:`Base64Encoder`
  streams the attachment's bytes into the gap;
* receiving, :class:`Extractor` takes the decrypted XML piece by piece and moves every
  ``<data value="…">`` into its own file, decoded, leaving a small *skeleton* XML with a
  token in its place; :func:`read_skeleton` parses that and says which file belongs to which
  Binary.
"""

from __future__ import annotations

import base64
import binascii
import importlib
import uuid
from decimal import Decimal
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

from dsf_core.api.fhir_xml import parse_xml, to_xml

try:  # SIMD base64, ~15× binascii's 300-500 MiB/s, which held the GIL for seconds per GiB
    _pybase64: Any = importlib.import_module("pybase64")
except ImportError:  # pragma: no cover - binascii gives the same bytes and errors, slower
    _pybase64 = None


def _encode(data: bytes) -> bytes:
    if _pybase64 is not None:
        return cast(bytes, _pybase64.b64encode(data))
    return binascii.b2a_base64(data, newline=False)


def _decode(data: bytes) -> bytes:
    """Strict: only the base64 alphabet, padding only at the end (``binascii.Error`` otherwise)."""
    if _pybase64 is not None:
        return cast(bytes, _pybase64.b64decode(data, validate=True))
    return binascii.a2b_base64(data, strict_mode=True)


__all__ = [
    "INLINE_LIMIT",
    "PROJECT_IDENTIFIER",
    "Base64Encoder",
    "DataSetError",
    "Extracted",
    "Extractor",
    "bundle_xml",
    "frame",
    "read_skeleton",
    "transfer_bundle",
]

PROJECT_IDENTIFIER = "http://medizininformatik-initiative.de/sid/project-identifier"
_ORGANIZATION_IDENTIFIER = "http://dsf.dev/sid/organization-identifier"
#: Extracted ``data`` that is not a transferred Binary's goes back inline up to this size.
INLINE_LIMIT = 16 * 1024 * 1024
_PATTERN = b"<data value="
_WHITESPACE = b" \t\r\n"
_WHITESPACE_BYTES = [bytes([c]) for c in _WHITESPACE]


class DataSetError(ValueError):
    """The decrypted data set is not a readable FHIR XML Bundle."""


def transfer_bundle(
    *,
    project: str,
    organization: str,
    date: str | None,
    content_type: str | None,
    attachment: Mapping[str, Any],
) -> dict[str, Any]:
    """The transaction Bundle the DIC sends: a fresh DocumentReference and the attachment (new ids)."""
    document_id, attachment_id = str(uuid.uuid4()), str(uuid.uuid4())
    document: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "id": document_id,
        "masterIdentifier": {"system": PROJECT_IDENTIFIER, "value": project},
        "status": "current",
        "docStatus": "final",
        "author": [{"type": "Organization", "identifier": {"system": _ORGANIZATION_IDENTIFIER, "value": organization}}],
    }
    if date:
        document["date"] = date
    reference: dict[str, Any] = {"url": f"urn:uuid:{attachment_id}"}
    if content_type:
        reference = {"contentType": content_type, **reference}
    document["content"] = [{"attachment": reference}]
    resource = {**attachment, "id": attachment_id}
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": f"urn:uuid:{document_id}", "resource": document,
             "request": {"method": "POST", "url": "DocumentReference"}},
            {"fullUrl": f"urn:uuid:{attachment_id}", "resource": resource,
             "request": {"method": "POST", "url": str(resource["resourceType"])}},
        ],
    }


def frame(bundle: Mapping[str, Any], binary_index: int = 1) -> tuple[bytes, bytes]:
    """The XML before and after the ``data`` value of the Binary in entry ``binary_index``."""
    marker = uuid.uuid4().hex
    entries = [dict(e) for e in bundle["entry"]]
    entries[binary_index] = {**entries[binary_index], "resource": {**entries[binary_index]["resource"], "data": marker}}
    head, found, tail = to_xml({**bundle, "entry": entries}).partition(marker.encode())
    assert found, "the placeholder must appear in the serialised Bundle"
    return head, tail


class Base64Encoder:
    """Base64 of a byte stream, piece by piece (each output piece is whole base64 quads)."""

    def __init__(self) -> None:
        self._carry = b""

    def update(self, data: bytes) -> bytes:
        data = self._carry + data
        cut = len(data) - len(data) % 3
        self._carry = data[cut:]
        return _encode(data[:cut])

    def finalize(self) -> bytes:
        carry, self._carry = self._carry, b""
        return _encode(carry) if carry else b""


async def bundle_xml(head: bytes, payload: AsyncIterable[bytes], tail: bytes) -> AsyncIterator[bytes]:
    """The Bundle's XML with ``payload`` base64-encoded between ``head`` and ``tail``."""
    yield head
    encoder = Base64Encoder()
    async for piece in payload:
        if encoded := encoder.update(piece):
            yield encoded
    yield encoder.finalize() + tail


class _Base64Decoder:
    def __init__(self, sink: BinaryIO) -> None:
        self._sink = sink
        self._carry = b""
        self._padded = False
        self.size = 0

    def update(self, data: bytes) -> None:
        if any(c in data for c in _WHITESPACE_BYTES):  # our own and Java's encoders write none
            data = data.translate(None, _WHITESPACE)
        data = self._carry + data
        cut = len(data) - len(data) % 4
        self._carry = data[cut:]
        if not cut:
            return
        if self._padded:
            raise DataSetError("base64 data goes on after its padding")
        try:
            decoded = _decode(data[:cut])
        except binascii.Error as exc:
            raise DataSetError(f"Binary data is not valid base64: {exc}") from None
        self._padded = data[cut - 1:cut] == b"="
        self.size += len(decoded)
        self._sink.write(decoded)

    def finalize(self) -> None:
        if self._carry:
            raise DataSetError("Binary data is not valid base64: its length is not a multiple of 4")


@dataclass(frozen=True)
class Extracted:
    """What :class:`Extractor` made of a data set: the skeleton XML and one file per ``data`` value."""

    skeleton: Path
    #: token in the skeleton → decoded file
    payloads: Mapping[str, Path]


class Extractor:
    """A sink for the decrypted XML (call it with each piece, then :meth:`close`)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._prefix = f"dsf-data-{uuid.uuid4().hex}-"
        self._skeleton = (directory / "skeleton.xml").open("wb")
        self._payloads: dict[str, Path] = {}
        self._buffer = b""
        self._quote: bytes | None = None
        self._token = ""
        self._file: BinaryIO | None = None
        self._decoder: _Base64Decoder | None = None

    def __call__(self, data: bytes) -> None:
        buffer, position = self._buffer + data, 0
        while True:
            if self._quote is None:
                found = buffer.find(_PATTERN, position)
                opened = found + len(_PATTERN)
                if found < 0 or opened >= len(buffer):
                    keep = found if found >= 0 else max(position, len(buffer) - len(_PATTERN))
                    self._skeleton.write(buffer[position:keep])
                    self._buffer = buffer[keep:]
                    return
                quote = buffer[opened:opened + 1]
                self._skeleton.write(buffer[position:opened + 1])
                position = opened + 1
                if quote in (b'"', b"'"):
                    self._open(quote)
            else:
                assert self._decoder is not None
                closed = buffer.find(self._quote, position)
                if closed < 0:
                    self._decoder.update(buffer[position:])
                    self._buffer = b""
                    return
                self._decoder.update(buffer[position:closed])
                self._close_value()
                position = closed  # the closing quote goes to the skeleton after the token

    def _open(self, quote: bytes) -> None:
        self._quote = quote
        self._token = f"{self._prefix}{len(self._payloads)}"
        path = self.directory / f"data-{len(self._payloads)}.bin"
        self._payloads[self._token] = path
        self._file = path.open("wb")
        self._decoder = _Base64Decoder(self._file)

    def _close_value(self) -> None:
        assert self._decoder is not None and self._file is not None
        self._decoder.finalize()
        self._file.close()
        self._skeleton.write(self._token.encode())
        self._quote, self._file, self._decoder = None, None, None

    def close(self) -> Extracted:
        if self._quote is not None:
            raise DataSetError("the data set ends inside a data value")
        self._skeleton.write(self._buffer)
        self._skeleton.close()
        return Extracted(self.directory / "skeleton.xml", dict(self._payloads))

    def discard(self) -> None:
        """Close the files after a failure (the caller removes the directory)."""
        for handle in (self._skeleton, self._file):
            if handle is not None:
                handle.close()


def _restore(value: Any, payloads: Mapping[str, Path]) -> Any:
    """``value`` with every remaining token (data outside the transferred Binary) put back inline, and
    decimals as floats (what a FHIR client sends as JSON)."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() and "." not in str(value) else float(value)
    if isinstance(value, dict):
        return {k: _restore(v, payloads) for k, v in value.items()}
    if isinstance(value, list):
        return [_restore(v, payloads) for v in value]
    if isinstance(value, str) and value in payloads:
        size = payloads[value].stat().st_size
        if size > INLINE_LIMIT:
            raise DataSetError(f"inline data of {size} bytes outside a transferred Binary")
        return base64.b64encode(payloads[value].read_bytes()).decode()
    return value


def read_skeleton(extracted: Extracted) -> tuple[dict[str, Any], dict[int, Path]]:
    """The Bundle, and entry index → data file of each top-level Binary (its ``data`` left out of the Bundle)."""
    try:
        bundle = parse_xml(extracted.skeleton.read_bytes())
    except ValueError as exc:
        raise DataSetError(f"not a FHIR XML resource: {exc}") from None
    streamed: dict[int, Path] = {}
    entries = bundle.get("entry") if bundle.get("resourceType") == "Bundle" else None
    for index, entry in enumerate(entries if isinstance(entries, list) else []):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(resource, dict) and resource.get("resourceType") == "Binary" and resource.get("data") in extracted.payloads:
            streamed[index] = extracted.payloads[resource.pop("data")]
    return _restore(bundle, extracted.payloads), streamed
