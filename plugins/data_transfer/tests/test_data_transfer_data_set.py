"""The data set as FHIR XML streamed out and back in, and the MIME check of its attachment."""

from __future__ import annotations

import base64
import io
import json
import os
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from dsf_plugin_data_transfer import data_set, mime
from dsf_plugin_data_transfer.data_set import (
    PROJECT_IDENTIFIER,
    Base64Encoder,
    DataSetError,
    Extractor,
    bundle_xml,
    frame,
    read_skeleton,
    transfer_bundle,
)

from dsf_core.api.fhir_xml import parse_xml, to_xml


def zip_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("result.csv", "a,b\n1,2\n")
    return buffer.getvalue()


CSV = "\ufeffid,age\n1,42\n2,17\n".encode()
FHIR_BUNDLE = json.dumps({"resourceType": "Bundle", "type": "collection", "entry": []}).encode()


@pytest.fixture(params=["pybase64", "binascii"])
def codec(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Base64 by pybase64 when installed, else by binascii: the same bytes and the same refusals."""
    if request.param == "binascii":
        monkeypatch.setattr(data_set, "_pybase64", None)
    elif data_set._pybase64 is None:
        pytest.skip("pybase64 is not installed")


def binary_bundle(content_type: str = "text/csv") -> dict[str, object]:
    return transfer_bundle(project="P1", organization="dic.test", date="2026-01-02T03:04:05+01:00",
                           content_type=content_type, attachment={"resourceType": "Binary", "contentType": content_type})


async def pieces(data: bytes, size: int) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i:i + size]


async def streamed(bundle: dict[str, object], payload: bytes, size: int = 1000) -> bytes:
    head, tail = frame(bundle)
    return b"".join([p async for p in bundle_xml(head, pieces(payload, size), tail)])


# -- sending -----------------------------------------------------------------------------------


def test_the_transfer_bundle_has_the_java_shape() -> None:
    bundle = binary_bundle()
    assert bundle["type"] == "transaction"
    document, binary = (e["resource"] for e in bundle["entry"])  # type: ignore[attr-defined]
    assert document["masterIdentifier"] == {"system": PROJECT_IDENTIFIER, "value": "P1"}
    assert document["author"] == [{"type": "Organization",
                                   "identifier": {"system": "http://dsf.dev/sid/organization-identifier", "value": "dic.test"}}]
    assert (document["status"], document["docStatus"], document["date"]) == ("current", "final", "2026-01-02T03:04:05+01:00")
    assert document["content"] == [{"attachment": {"contentType": "text/csv", "url": f"urn:uuid:{binary['id']}"}}]
    assert [e["request"] for e in bundle["entry"]] == [  # type: ignore[attr-defined]
        {"method": "POST", "url": "DocumentReference"}, {"method": "POST", "url": "Binary"}]
    assert [e["fullUrl"] for e in bundle["entry"]] == [f"urn:uuid:{document['id']}", f"urn:uuid:{binary['id']}"]  # type: ignore[attr-defined]


@pytest.mark.parametrize("size", [1, 2, 3, 1000, 10**6])
async def test_streamed_xml_is_the_xml_of_the_whole_bundle(size: int) -> None:
    payload = os.urandom(10_001)
    bundle = binary_bundle("application/octet-stream")
    whole = json.loads(json.dumps(bundle))
    whole["entry"][1]["resource"]["data"] = base64.b64encode(payload).decode()
    assert await streamed(bundle, payload, size) == to_xml(whole)


@pytest.mark.usefixtures("codec")
def test_base64_encoder_of_any_split_is_base64() -> None:
    data = os.urandom(1000)
    for size in (1, 2, 4, 999):
        encoder = Base64Encoder()
        out = b"".join(encoder.update(data[i:i + size]) for i in range(0, len(data), size)) + encoder.finalize()
        assert out == base64.b64encode(data)


# -- receiving ---------------------------------------------------------------------------------


def extract(xml: bytes, directory: Path, size: int = 997) -> tuple[dict[str, object], dict[int, Path]]:
    extractor = Extractor(directory)
    for i in range(0, len(xml), size):
        extractor(xml[i:i + size])
    return read_skeleton(extractor.close())


@pytest.mark.usefixtures("codec")
@pytest.mark.parametrize("size", [1, 5, 13, 997, 10**6])
@pytest.mark.parametrize("payload", [CSV, b"", os.urandom(50_000)], ids=["csv", "empty", "random"])
async def test_extracting_gives_back_bundle_and_bytes(tmp_path: Path, payload: bytes, size: int) -> None:
    bundle = binary_bundle()
    xml = await streamed(bundle, payload)
    found, files = extract(xml, tmp_path, size)
    assert list(files) == [1] and files[1].read_bytes() == payload
    assert found == bundle  # the Binary without its data: that is in the file
    assert len((tmp_path / "skeleton.xml").read_bytes()) < 2000


@pytest.mark.usefixtures("codec")
def test_a_java_serialised_bundle_with_single_quotes_and_namespaces(tmp_path: Path) -> None:
    data = base64.b64encode(CSV).decode()
    xml = (f"<Bundle xmlns=\"http://hl7.org/fhir\"><type value=\"transaction\"/><entry><fullUrl value=\"urn:uuid:a\"/>"
           f"<resource><Binary xmlns=\"http://hl7.org/fhir\"><contentType value=\"text/csv\"/><data value='{data[:8]}\n"
           f"{data[8:]}'/></Binary></resource><request><method value=\"POST\"/><url value=\"Binary\"/></request></entry></Bundle>")
    found, files = extract(xml.encode(), tmp_path, 7)
    assert files[1 - 1].read_bytes() == CSV
    assert found["entry"][0]["resource"] == {"resourceType": "Binary", "contentType": "text/csv"}  # type: ignore[index]


def test_data_outside_the_transferred_binary_goes_back_inline(tmp_path: Path) -> None:
    inner = {"resourceType": "Bundle", "type": "collection",
             "entry": [{"resource": {"resourceType": "Binary", "contentType": "text/plain", "data": "QUJD"}}]}
    bundle = transfer_bundle(project="P1", organization="dic.test", date=None, content_type="application/fhir+xml",
                             attachment=inner)
    found, files = extract(to_xml(bundle), tmp_path)
    assert files == {} and found == parse_xml(to_xml(bundle))


@pytest.mark.parametrize("broken", [
    b'<Bundle xmlns="http://hl7.org/fhir"><entry><resource><Binary><data value="QUJ"/></Binary></resource></entry></Bundle>',
    b'<Bundle xmlns="http://hl7.org/fhir"><entry><resource><Binary><data value="QU=DQUJD"/></Binary></resource></entry></Bundle>',
    b'<Bundle xmlns="http://hl7.org/fhir"><entry><resource><Binary><data value="QUJD',
    b'<Bundle xmlns="http://hl7.org/fhir"><entry>',
    b'not xml at all',
], ids=["short-base64", "padding-inside", "cut-in-data", "cut-in-xml", "no-xml"])
@pytest.mark.usefixtures("codec")
def test_broken_data_sets_are_refused(tmp_path: Path, broken: bytes) -> None:
    with pytest.raises(DataSetError):
        extract(broken, tmp_path, 4)


# -- MIME -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("content", "declared", "detected"), [
    (CSV, "text/csv", "text/csv"),
    (b"a;b\n", "text/plain", "text/plain"),
    (zip_bytes(), "application/zip", "application/zip"),
    (FHIR_BUNDLE, "application/fhir+json", "application/fhir+json"),
    (FHIR_BUNDLE, "application/json", "application/json"),
    (to_xml({"resourceType": "Bundle", "type": "collection"}), "application/fhir+xml", "application/fhir+xml"),
    (b'{"a":1}\n{"a":2}\n{"a":3}\n', "application/x-ndjson", "application/x-ndjson"),
    (b"%PDF-1.7\n...", "application/pdf", "application/pdf"),
])
def test_content_matching_its_declared_type_passes(content: bytes, declared: str, detected: str) -> None:
    result = mime.check(content[:mime.HEAD_SIZE], declared)
    assert result.detected == detected and result.warning is None


def test_a_different_subtype_only_warns(caplog: pytest.LogCaptureFixture) -> None:
    result = mime.check(zip_bytes(), "application/x-zip-compressed")
    assert result.detected == "application/zip"
    assert result.warning and "does not match" in caplog.text
    assert mime.check(b'{"a": 1}\n{"a": 2}\n', "application/octet-stream").detected == "application/x-ndjson"


@pytest.mark.parametrize(("content", "declared"), [
    (zip_bytes(), "text/csv"),
    (CSV, "application/zip"),
    (os.urandom(4096) + b"\0", "text/csv"),
    (CSV, ""),
    (CSV, None),
])
def test_a_different_base_type_fails(content: bytes, declared: str | None) -> None:
    with pytest.raises(mime.MimeTypeMismatch):
        mime.check(content, declared)


def test_a_multibyte_character_cut_at_the_end_of_the_head_is_still_text() -> None:
    text = ("ä" * 100).encode()
    assert mime.detect(text[:-1], "text/csv") == "text/csv"
    assert mime.detect(b"\xff\xfe\xfa" + text, "text/csv") == "application/octet-stream"
