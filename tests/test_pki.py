"""Tests for dsf_core.pki: real certificates, real files, real TLS handshakes."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import ipaddress
import os
import re
import ssl
import stat
import tempfile
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from dsf_core.pki import (
    DevPki,
    Issued,
    PkiError,
    certificate_from_header,
    client_ssl_context,
    client_ssl_context_from,
    create_ca,
    issue_certificate,
    issue_client_certificate,
    issue_server_certificate,
    load_certificate,
    load_certificates,
    load_key_and_certificate,
    load_private_key,
    server_ssl_context,
    server_ssl_context_from,
    thumbprint,
    thumbprint_der,
    thumbprint_pem,
    write_issued,
    write_pkcs12,
)

HEX128 = re.compile(r"[0-9a-f]{128}")
# What aiohttp raises when the peer aborts the TLS handshake; with TLS 1.3 the
# client only notices a rejected client certificate when reading the response.
HANDSHAKE_FAILURES = (
    aiohttp.ClientConnectorError,
    aiohttp.ServerDisconnectedError,
    aiohttp.ClientOSError,
)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _eku(cert: x509.Certificate) -> set[x509.ObjectIdentifier]:
    return set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def ca() -> Issued:
    return create_ca("test CA")


@pytest.fixture(scope="module")
def other_ca() -> Issued:
    return create_ca("unrelated CA")


@pytest.fixture(scope="module")
def server_cert(ca: Issued) -> Issued:
    return issue_server_certificate(ca, "server.test")


@pytest.fixture(scope="module")
def client_cert(ca: Issued) -> Issued:
    return issue_client_certificate(ca, "Test_Organization")


@pytest.fixture(scope="module")
def files(
    tmp_path_factory: pytest.TempPathFactory, ca: Issued, other_ca: Issued, server_cert: Issued, client_cert: Issued
) -> dict[str, Path]:
    """The fixtures' identities written to disk the way an operator would have them."""
    d = tmp_path_factory.mktemp("pki-files")
    write_issued(ca, d / "ca.crt", d / "ca.key")
    write_issued(other_ca, d / "other-ca.crt", d / "other-ca.key")
    write_issued(server_cert, d / "server.crt", d / "server.key")
    write_issued(client_cert, d / "client.crt", d / "client.key")
    write_pkcs12(client_cert, d / "client.p12", b"p12-secret", ca)
    return {
        "ca": d / "ca.crt",
        "other_ca": d / "other-ca.crt",
        "server_crt": d / "server.crt",
        "server_key": d / "server.key",
        "client_crt": d / "client.crt",
        "client_key": d / "client.key",
        "client_p12": d / "client.p12",
    }


# --------------------------------------------------------------------------- thumbprints


def test_thumbprint_is_lowercase_hex_sha512_of_der(client_cert: Issued) -> None:
    der = client_cert.certificate.public_bytes(serialization.Encoding.DER)
    expected = hashlib.sha512(der).hexdigest()
    assert thumbprint(client_cert.certificate) == expected
    assert thumbprint_der(der) == expected
    assert client_cert.thumbprint == expected
    assert HEX128.fullmatch(expected)


def test_thumbprint_agrees_across_pem_der_and_pkcs12(tmp_path: Path, ca: Issued, client_cert: Issued) -> None:
    expected = client_cert.thumbprint
    der_file = tmp_path / "client.der"
    der_file.write_bytes(client_cert.certificate.public_bytes(serialization.Encoding.DER))
    pem_file = tmp_path / "client.pem"
    pem_file.write_bytes(client_cert.cert_pem)
    p12_file = tmp_path / "client.p12"
    write_pkcs12(client_cert, p12_file, b"pw", ca)
    # The same PKCS#12 content without a telling suffix is detected by content.
    anonymous = tmp_path / "client.bin"
    anonymous.write_bytes(p12_file.read_bytes())

    assert thumbprint(load_certificate(pem_file)) == expected
    assert thumbprint(load_certificate(der_file)) == expected
    assert thumbprint(load_certificate(p12_file, b"pw")) == expected
    assert thumbprint(load_certificate(anonymous, b"pw")) == expected
    assert load_key_and_certificate(p12_file, b"pw").thumbprint == expected
    assert thumbprint_pem(client_cert.cert_pem) == expected
    assert thumbprint_pem(client_cert.cert_pem.decode()) == expected
    # First certificate of a bundle counts.
    assert thumbprint_pem(client_cert.cert_pem + ca.cert_pem) == expected


def test_thumbprint_pem_rejects_garbage() -> None:
    with pytest.raises(PkiError):
        thumbprint_pem("not a certificate")


# --------------------------------------------------------------------------- issuing


def test_ca_certificate(ca: Issued) -> None:
    cert = ca.certificate
    assert cert.subject == cert.issuer
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign and not ku.value.digital_signature
    cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert isinstance(ca.private_key, ec.EllipticCurvePrivateKey)
    assert ca.private_key.curve.name == "secp384r1"
    cert.verify_directly_issued_by(cert)


@pytest.mark.parametrize(
    ("server", "client", "expected"),
    [
        (True, False, {ExtendedKeyUsageOID.SERVER_AUTH}),
        (False, True, {ExtendedKeyUsageOID.CLIENT_AUTH}),
        (True, True, {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}),
    ],
)
def test_leaf_certificate_extensions(ca: Issued, server: bool, client: bool, expected: set[object]) -> None:
    leaf = issue_certificate(
        ca,
        "node.test",
        server=server,
        client=client,
        dns_names=("node.test", "localhost"),
        ip_addresses=("127.0.0.1", "::1"),
        organization="Test Org",
    )
    cert = leaf.certificate
    cert.verify_directly_issued_by(ca.certificate)
    assert _eku(cert) == expected
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and not bc.value.ca
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature and not ku.key_encipherment and not ku.key_cert_sign
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["node.test", "localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ca_ski = ca.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ca_ski.digest
    cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "node.test"
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "Test Org"
    assert isinstance(leaf.private_key, ec.EllipticCurvePrivateKey)
    assert leaf.private_key.curve.name == "secp256r1"


def test_client_certificate_has_no_san_and_random_serial(ca: Issued) -> None:
    a = issue_client_certificate(ca, "org")
    b = issue_client_certificate(ca, "org")
    with pytest.raises(x509.ExtensionNotFound):
        a.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert a.certificate.serial_number != b.certificate.serial_number
    assert a.thumbprint != b.thumbprint


def test_certificate_needs_a_usage(ca: Issued) -> None:
    with pytest.raises(ValueError, match="server and/or client"):
        issue_certificate(ca, "nothing")


def test_validity_window_and_clamping(ca: Issued) -> None:
    now = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)
    short_ca = create_ca("short", days=10, now=now)
    leaf = issue_certificate(short_ca, "leaf", client=True, days=825, now=now)
    assert leaf.certificate.not_valid_before_utc <= now
    # A leaf cannot usefully outlive its CA, so its validity is cut to the CA's.
    assert leaf.certificate.not_valid_after_utc == short_ca.certificate.not_valid_after_utc
    normal = issue_certificate(ca, "leaf", client=True, days=30)
    lifetime = normal.certificate.not_valid_after_utc - normal.certificate.not_valid_before_utc
    assert dt.timedelta(days=30) <= lifetime <= dt.timedelta(days=30, hours=1)


def test_rsa_keys() -> None:
    rsa_ca = create_ca("rsa CA", key_type="rsa", rsa_key_size=2048)
    leaf = issue_certificate(rsa_ca, "rsa leaf", server=True, key_type="rsa", rsa_key_size=2048)
    assert isinstance(leaf.private_key, rsa.RSAPrivateKey)
    assert leaf.private_key.key_size == 2048
    assert leaf.certificate.extensions.get_extension_for_class(x509.KeyUsage).value.key_encipherment
    leaf.certificate.verify_directly_issued_by(rsa_ca.certificate)
    with pytest.raises(ValueError, match="key_type"):
        create_ca(key_type="dsa")


def test_invalid_ip_address_is_rejected(ca: Issued) -> None:
    with pytest.raises(ValueError):
        issue_certificate(ca, "x", server=True, ip_addresses=("not-an-ip",))


# --------------------------------------------------------------------------- writing


def test_write_issued_modes_and_roundtrip(tmp_path: Path, client_cert: Issued) -> None:
    cert_path, key_path = tmp_path / "c.crt", tmp_path / "c.key"
    old_umask = os.umask(0o077)  # a strict umask must not make the certificate unreadable
    try:
        write_issued(client_cert, cert_path, key_path)
    finally:
        os.umask(old_umask)
    assert _mode(key_path) == 0o600
    assert _mode(cert_path) == 0o644
    loaded = load_key_and_certificate(cert_path, key_path=key_path)
    assert loaded.thumbprint == client_cert.thumbprint
    assert b"ENCRYPTED" not in key_path.read_bytes()


def test_key_file_mode_is_fixed_when_overwriting(tmp_path: Path, client_cert: Issued) -> None:
    cert_path, key_path = tmp_path / "c.crt", tmp_path / "c.key"
    key_path.write_text("old")
    key_path.chmod(0o644)
    old_umask = os.umask(0)  # even a permissive umask must not widen the key file
    try:
        write_issued(client_cert, cert_path, key_path, password=b"secret")
    finally:
        os.umask(old_umask)
    assert _mode(key_path) == 0o600
    assert b"ENCRYPTED PRIVATE KEY" in key_path.read_bytes()
    assert load_key_and_certificate(cert_path, b"secret", key_path=key_path).thumbprint == client_cert.thumbprint


def test_write_pkcs12(tmp_path: Path, ca: Issued, client_cert: Issued) -> None:
    path = tmp_path / "id.p12"
    write_pkcs12(client_cert, path, b"pw", ca)
    assert _mode(path) == 0o600
    loaded = load_key_and_certificate(path, b"pw")
    assert loaded.thumbprint == client_cert.thumbprint
    assert [thumbprint(c) for c in loaded.chain] == [ca.thumbprint]


def test_combined_pem_file_with_chain(tmp_path: Path, ca: Issued, client_cert: Issued) -> None:
    path = tmp_path / "combined.pem"
    path.write_bytes(client_cert.key_pem + client_cert.cert_pem + ca.cert_pem)
    loaded = load_key_and_certificate(path)
    assert loaded.thumbprint == client_cert.thumbprint
    assert loaded.chain == (ca.certificate,)
    assert [thumbprint(c) for c in load_certificates(path)] == [client_cert.thumbprint, ca.thumbprint]


def test_der_certificate_with_separate_key(tmp_path: Path, client_cert: Issued) -> None:
    cert_path, key_path = tmp_path / "c.der", tmp_path / "c.key"
    cert_path.write_bytes(client_cert.certificate.public_bytes(serialization.Encoding.DER))
    key_path.write_bytes(client_cert.key_pem)
    assert load_key_and_certificate(cert_path, key_path=key_path).thumbprint == client_cert.thumbprint


# --------------------------------------------------------------------------- loading errors


def _assert_pki_error(path: Path, fragment: str, call: object) -> None:
    with pytest.raises(PkiError) as info:
        call()  # type: ignore[operator]
    message = str(info.value)
    assert str(path) in message
    assert fragment in message


def test_wrong_pkcs12_password(files: dict[str, Path]) -> None:
    p12 = files["client_p12"]
    _assert_pki_error(p12, "wrong password", lambda: load_key_and_certificate(p12, b"nope"))
    _assert_pki_error(p12, "password", lambda: load_key_and_certificate(p12))
    _assert_pki_error(p12, "wrong password", lambda: load_certificate(p12, b"nope"))


@pytest.mark.parametrize("name", ["garbage.pem", "garbage.p12", "garbage.bin"])
def test_garbage_file(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"this is not a certificate\x00\x01")
    _assert_pki_error(path, "not a", lambda: load_key_and_certificate(path))
    _assert_pki_error(path, "not a", lambda: load_certificate(path))
    _assert_pki_error(path, "not a", lambda: load_private_key(path))


def test_pem_without_certificate(tmp_path: Path, client_cert: Issued) -> None:
    path = tmp_path / "only-key.pem"
    path.write_bytes(client_cert.key_pem)
    _assert_pki_error(path, "certificate", lambda: load_certificate(path))
    _assert_pki_error(path, "certificate", lambda: load_key_and_certificate(path))


def test_missing_file(tmp_path: Path, files: dict[str, Path]) -> None:
    missing = tmp_path / "does-not-exist.crt"
    _assert_pki_error(missing, "not found", lambda: load_certificate(missing))
    _assert_pki_error(missing, "not found", lambda: load_key_and_certificate(missing))
    _assert_pki_error(missing, "not found", lambda: load_private_key(missing))
    _assert_pki_error(
        missing, "not found", lambda: load_key_and_certificate(files["client_crt"], key_path=missing)
    )


def test_key_does_not_match_certificate(files: dict[str, Path]) -> None:
    crt, key = files["client_crt"], files["server_key"]
    _assert_pki_error(
        key, "does not match", lambda: load_key_and_certificate(crt, key_path=key)
    )
    _assert_pki_error(
        crt,
        "does not match",
        lambda: server_ssl_context(crt, key, trust_cafile=None),
    )


def test_encrypted_key_password_errors(tmp_path: Path, client_cert: Issued) -> None:
    cert_path, key_path = tmp_path / "c.crt", tmp_path / "c.key"
    write_issued(client_cert, cert_path, key_path, password=b"right")
    _assert_pki_error(key_path, "password is required", lambda: load_private_key(key_path))
    _assert_pki_error(key_path, "wrong password", lambda: load_private_key(key_path, b"wrong"))


# --------------------------------------------------------------------------- proxy headers


def _header_forms(issued: Issued) -> dict[str, str]:
    pem = issued.cert_pem.decode()
    b64 = base64.b64encode(issued.certificate.public_bytes(serialization.Encoding.DER)).decode()
    return {
        "pem": pem,
        "pem-crlf": pem.replace("\n", "\r\n"),
        "url-encoded": urllib.parse.quote(pem, safe=""),
        "url-encoded-nginx": urllib.parse.quote(pem, safe="/+="),
        "spaces": pem.replace("\n", " ").strip(),
        "tabs": pem.replace("\n", "\t"),
        "base64-der": b64,
        "base64-der-padded": f"  {b64}\n",
    }


@pytest.mark.parametrize(
    "form", ["pem", "pem-crlf", "url-encoded", "url-encoded-nginx", "spaces", "tabs", "base64-der", "base64-der-padded"]
)
def test_certificate_from_header(client_cert: Issued, form: str) -> None:
    value = _header_forms(client_cert)[form]
    assert thumbprint(certificate_from_header(value)) == client_cert.thumbprint


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "garbage",
        "%ZZ%00",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        "-----BEGIN CERTIFICATE----- not base64! -----END CERTIFICATE-----",
        base64.b64encode(b"\x30\x03\x02\x01\x00").decode(),
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        "Ünïcödé",
    ],
)
def test_certificate_from_header_rejects_garbage(value: str) -> None:
    with pytest.raises(PkiError):
        certificate_from_header(value)


# --------------------------------------------------------------------------- DevPki


def test_dev_pki(tmp_path: Path) -> None:
    root = tmp_path / "pki"
    pki = DevPki.init(root, common_name="My Dev CA")
    assert pki.ca_cert_path == root / "ca.crt"
    assert _mode(root / "ca.key") == 0o600
    assert load_certificate(pki.ca_cert_path).subject.rfc4514_string() == "CN=My Dev CA"

    reopened = DevPki.open(root)
    assert reopened.ca.thumbprint == pki.ca.thumbprint

    client = reopened.issue("alice", server=False, client=True)
    assert client.cert_path == root / "alice.crt" and client.key_path == root / "alice.key"
    assert _mode(client.key_path) == 0o600
    cert = load_certificate(client.cert_path)
    assert thumbprint(cert) == client.thumbprint
    assert _eku(cert) == {ExtendedKeyUsageOID.CLIENT_AUTH}
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    cert.verify_directly_issued_by(pki.ca.certificate)

    server = reopened.issue("web", server=True, client=False)
    san = load_certificate(server.cert_path).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.value.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]


def test_dev_pki_organization(tmp_path: Path) -> None:
    pki = DevPki.init(tmp_path)
    org = pki.issue_organization("Test_DIC")
    org_dir = tmp_path / "Test_DIC"
    assert (org.server.cert_path, org.server.key_path) == (org_dir / "server.crt", org_dir / "server.key")
    assert (org.client.cert_path, org.client.key_path) == (org_dir / "client.crt", org_dir / "client.key")
    assert org.client_thumbprint == org.client.thumbprint == thumbprint(load_certificate(org.client.cert_path))
    server = load_key_and_certificate(org.server.cert_path, key_path=org.server.key_path)
    client = load_key_and_certificate(org.client.cert_path, key_path=org.client.key_path)
    assert _eku(server.certificate) == {ExtendedKeyUsageOID.SERVER_AUTH}
    assert _eku(client.certificate) == {ExtendedKeyUsageOID.CLIENT_AUTH}
    for issued in (server, client):
        assert issued.common_name == "Test_DIC"
    san = server.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert _mode(org.server.key_path) == _mode(org.client.key_path) == 0o600


def test_dev_pki_refuses_to_overwrite(tmp_path: Path) -> None:
    first = DevPki.init(tmp_path)
    _assert_pki_error(tmp_path / "ca.crt", "already exists", lambda: DevPki.init(tmp_path))
    assert DevPki.open(tmp_path).ca.thumbprint == first.ca.thumbprint
    second = DevPki.init(tmp_path, overwrite=True)
    assert DevPki.open(tmp_path).ca.thumbprint == second.ca.thumbprint != first.ca.thumbprint


def test_dev_pki_errors(tmp_path: Path) -> None:
    _assert_pki_error(tmp_path / "ca.crt", "not found", lambda: DevPki.open(tmp_path))
    pki = DevPki.init(tmp_path / "pki")
    for bad in ("../escape", "a/b", ".hidden", "", "ca"):
        with pytest.raises(PkiError):
            pki.issue(bad, server=False, client=True)
    with pytest.raises(PkiError):
        pki.issue_organization("..")


# --------------------------------------------------------------------------- TLS


@contextlib.asynccontextmanager
async def serve(ssl_context: ssl.SSLContext) -> AsyncIterator[str]:
    """Run an HTTPS server answering with the thumbprint of the client certificate."""

    async def handler(request: web.Request) -> web.Response:
        assert request.transport is not None
        der = request.transport.get_extra_info("ssl_object").getpeercert(binary_form=True)
        return web.Response(text=thumbprint_der(der) if der else "anonymous")

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
        await site.start()
        port = runner.addresses[0][1]
        yield f"https://127.0.0.1:{port}/"
    finally:
        await runner.cleanup()


async def fetch(url: str, ssl_context: ssl.SSLContext) -> str:
    async with aiohttp.ClientSession() as session:
        async with session.get(url, ssl=ssl_context) as response:
            assert response.status == 200
            return await response.text()


@pytest.fixture
def private_tempdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Route tempfile into an empty directory so leftovers of the PEM-file technique show up."""
    directory = tmp_path / "tmp"
    directory.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    yield directory
    assert list(directory.iterdir()) == [], "temporary key material was not removed"


@pytest.fixture
def mtls_server_context(files: dict[str, Path]) -> ssl.SSLContext:
    return server_ssl_context(files["server_crt"], files["server_key"], trust_cafile=files["ca"])


async def test_mtls_round_trip(
    files: dict[str, Path], client_cert: Issued, mtls_server_context: ssl.SSLContext
) -> None:
    assert mtls_server_context.verify_mode == ssl.CERT_REQUIRED
    assert mtls_server_context.minimum_version >= ssl.TLSVersion.TLSv1_2
    client_ctx = client_ssl_context(
        cafile=files["ca"], cert_file=files["client_crt"], key_file=files["client_key"]
    )
    assert client_ctx.check_hostname and client_ctx.verify_mode == ssl.CERT_REQUIRED
    async with serve(mtls_server_context) as url:
        assert await fetch(url, client_ctx) == client_cert.thumbprint


async def test_mtls_pkcs12_client(
    files: dict[str, Path], client_cert: Issued, mtls_server_context: ssl.SSLContext, private_tempdir: Path
) -> None:
    client_ctx = client_ssl_context(cafile=files["ca"], cert_file=files["client_p12"], password=b"p12-secret")
    async with serve(mtls_server_context) as url:
        assert await fetch(url, client_ctx) == client_cert.thumbprint


async def test_mtls_pkcs12_server_and_in_memory_identities(
    tmp_path: Path, ca: Issued, server_cert: Issued, client_cert: Issued, private_tempdir: Path
) -> None:
    p12 = tmp_path / "server.pfx"
    write_pkcs12(server_cert, p12, b"pw", ca)
    server_ctx = server_ssl_context(p12, None, trust_cafile=None, password=b"pw")
    assert server_ctx.verify_mode == ssl.CERT_NONE
    async with serve(server_ctx) as url:
        assert await fetch(url, client_ssl_context_from(None, ca.cert_pem)) == "anonymous"

    server_ctx = server_ssl_context_from(server_cert, ca.cert_pem)
    async with serve(server_ctx) as url:
        assert await fetch(url, client_ssl_context_from(client_cert, ca.cert_pem)) == client_cert.thumbprint


async def test_client_certificate_from_other_ca_is_rejected(
    files: dict[str, Path], ca: Issued, other_ca: Issued, mtls_server_context: ssl.SSLContext
) -> None:
    stranger = issue_client_certificate(other_ca, "Test_Organization")
    async with serve(mtls_server_context) as url:
        with pytest.raises(HANDSHAKE_FAILURES):
            await fetch(url, client_ssl_context_from(stranger, ca.cert_pem))


async def test_server_only_certificate_cannot_authenticate_a_client(
    ca: Issued, mtls_server_context: ssl.SSLContext
) -> None:
    server_only = issue_server_certificate(ca, "Test_Organization")
    async with serve(mtls_server_context) as url:
        with pytest.raises(HANDSHAKE_FAILURES):
            await fetch(url, client_ssl_context_from(server_only, ca.cert_pem))


async def test_client_without_certificate_is_rejected_when_required(
    ca: Issued, mtls_server_context: ssl.SSLContext
) -> None:
    async with serve(mtls_server_context) as url:
        with pytest.raises(HANDSHAKE_FAILURES):
            await fetch(url, client_ssl_context_from(None, ca.cert_pem))


async def test_optional_client_certificate(files: dict[str, Path], ca: Issued, client_cert: Issued) -> None:
    server_ctx = server_ssl_context(
        files["server_crt"], files["server_key"], trust_cafile=files["ca"], require_client_cert=False
    )
    assert server_ctx.verify_mode == ssl.CERT_OPTIONAL
    async with serve(server_ctx) as url:
        assert await fetch(url, client_ssl_context_from(None, ca.cert_pem)) == "anonymous"
        assert await fetch(url, client_ssl_context_from(client_cert, ca.cert_pem)) == client_cert.thumbprint


async def test_client_rejects_server_from_unknown_ca(
    files: dict[str, Path], mtls_server_context: ssl.SSLContext
) -> None:
    client_ctx = client_ssl_context(
        cafile=files["other_ca"], cert_file=files["client_crt"], key_file=files["client_key"]
    )
    async with serve(mtls_server_context) as url:
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await fetch(url, client_ctx)


async def test_client_checks_hostname(ca: Issued, client_cert: Issued) -> None:
    elsewhere = issue_server_certificate(ca, "elsewhere", dns_names=("elsewhere.test",), ip_addresses=())
    async with serve(server_ssl_context_from(elsewhere, ca.cert_pem)) as url:
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await fetch(url, client_ssl_context_from(client_cert, ca.cert_pem))


def test_ssl_context_errors_name_the_file(tmp_path: Path, files: dict[str, Path]) -> None:
    missing = tmp_path / "missing.crt"
    _assert_pki_error(missing, "not found", lambda: client_ssl_context(cafile=missing))
    _assert_pki_error(
        files["client_p12"],
        "wrong password",
        lambda: client_ssl_context(cafile=files["ca"], cert_file=files["client_p12"], password=b"x"),
    )
    garbage = tmp_path / "ca.pem"
    garbage.write_text("nonsense")
    _assert_pki_error(garbage, "not a certificate", lambda: server_ssl_context(
        files["server_crt"], files["server_key"], trust_cafile=garbage
    ))
