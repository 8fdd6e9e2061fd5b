"""``ssl.SSLContext`` factories for servers and clients (PEM, PKCS#12 or in-memory)."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import ssl
import tempfile

from collections.abc import Iterator
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from dsf_core.pki._base import PkiError
from dsf_core.pki._issue import Issued, write_issued
from dsf_core.pki._load import _is_pem, _read, load_certificates, load_key_and_certificate


# --------------------------------------------------------------------------- SSL contexts


@contextlib.contextmanager
def _pem_files(issued: Issued) -> Iterator[tuple[str, str, bytes]]:
    """Temporarily materialise *issued* as PEM files, for ``ssl`` which only reads files.

    The directory is private (mkdtemp creates it 0700), the key is encrypted
    with a random one-time password, and everything is removed on exit.
    """
    directory = tempfile.mkdtemp(prefix="dsf-tls-")
    try:
        cert_file = os.path.join(directory, "cert.pem")
        key_file = os.path.join(directory, "key.pem")
        password = secrets.token_urlsafe(32).encode()
        write_issued(issued, Path(cert_file), Path(key_file), password=password, include_chain=True)
        yield cert_file, key_file, password
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _load_issued_identity(ctx: ssl.SSLContext, issued: Issued) -> None:
    with _pem_files(issued) as (cert_file, key_file, password):
        ctx.load_cert_chain(cert_file, key_file, password=password)


def _load_identity(ctx: ssl.SSLContext, cert_file: Path, key_file: Path | None, password: bytes | None) -> None:
    data = _read(cert_file, "certificate")
    if not _is_pem(data):
        # PKCS#12 or DER: ssl cannot read these, convert via temporary PEM files.
        _load_issued_identity(ctx, load_key_and_certificate(cert_file, password, key_path=key_file))
        return
    try:
        ctx.load_cert_chain(str(cert_file), str(key_file) if key_file else None, password=password)
    except (ssl.SSLError, OSError, TypeError) as exc:
        # OpenSSL's messages ("PEM lib", "KEY_VALUES_MISMATCH") do not name the
        # file; re-check with our loader, which does.
        load_key_and_certificate(cert_file, password, key_path=key_file)
        raise PkiError(f"{cert_file}: cannot load certificate/key for TLS: {exc}") from exc


def _load_trust(ctx: ssl.SSLContext, cafile: Path) -> None:
    # Parsing ourselves gives errors that name the file (OpenSSL says "PEM lib")
    # and lets the trust file be PEM bundle or DER alike.
    certs = load_certificates(cafile)
    _load_trust_pem(ctx, b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs))


def _load_trust_pem(ctx: ssl.SSLContext, pem: bytes) -> None:
    try:
        ctx.load_verify_locations(cadata=pem.decode("ascii"))
    except (ssl.SSLError, UnicodeDecodeError) as exc:
        raise PkiError(f"cannot load CA certificates: {exc}") from exc


def _harden(ctx: ssl.SSLContext) -> None:
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_COMPRESSION
    # Every explicitly trusted certificate is an anchor, as in a Java trust
    # store (and Python >= 3.13 defaults): a trust file may hold an issuing
    # intermediate CA without its root.
    ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN


def _new_server_context(require_client_cert: bool, has_trust: bool) -> ssl.SSLContext:
    # Built directly (not create_default_context) so the server never trusts
    # the system CA store for client certificates: only the given trust anchors.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _harden(ctx)
    if has_trust:
        ctx.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    else:
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def server_ssl_context(
    cert_file: Path,
    key_file: Path | None,
    *,
    trust_cafile: Path | None,
    password: bytes | None = None,
    require_client_cert: bool = True,
) -> ssl.SSLContext:
    """Create a TLS (>= 1.2) server context for aiohttp.

    *cert_file* is a PEM certificate (chain) with the key in *key_file* (or in
    the same file), or a PKCS#12 file with *key_file* None.  Client
    certificates are verified against *trust_cafile* only (never the system
    store): required when *require_client_cert*, otherwise optional.  Without
    a trust file no client certificate is requested.
    """
    ctx = _new_server_context(require_client_cert, trust_cafile is not None)
    _load_identity(ctx, Path(cert_file), Path(key_file) if key_file else None, password)
    if trust_cafile is not None:
        _load_trust(ctx, Path(trust_cafile))
    return ctx


def server_ssl_context_from(
    issued: Issued, ca_certs_pem: bytes | None, *, require_client_cert: bool = True
) -> ssl.SSLContext:
    """Like :func:`server_ssl_context`, from an in-memory identity and PEM trust anchors."""
    ctx = _new_server_context(require_client_cert, ca_certs_pem is not None)
    _load_issued_identity(ctx, issued)
    if ca_certs_pem is not None:
        _load_trust_pem(ctx, ca_certs_pem)
    return ctx


def _new_client_context(cafile: Path | None, ca_pem: bytes | None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED + check_hostname
    _harden(ctx)
    if cafile is not None:
        _load_trust(ctx, cafile)
    elif ca_pem is not None:
        _load_trust_pem(ctx, ca_pem)
    else:
        ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    return ctx


def client_ssl_context(
    *,
    cafile: Path | None,
    cert_file: Path | None = None,
    key_file: Path | None = None,
    password: bytes | None = None,
) -> ssl.SSLContext:
    """Create a TLS (>= 1.2) client context with hostname checking.

    Servers are verified against *cafile*, or the system CA store when None.
    The optional client identity is a PEM certificate plus *key_file* (or key
    in the same file), or a PKCS#12 *cert_file* with *key_file* None.
    """
    ctx = _new_client_context(Path(cafile) if cafile is not None else None, None)
    if cert_file is not None:
        _load_identity(ctx, Path(cert_file), Path(key_file) if key_file else None, password)
    elif key_file is not None:
        raise PkiError(f"{key_file}: a key file was given without a certificate file")
    return ctx


def client_ssl_context_from(issued: Issued | None, ca_pem: bytes | None) -> ssl.SSLContext:
    """Like :func:`client_ssl_context`, from an in-memory identity and PEM trust anchors.

    *ca_pem* None means the system CA store; *issued* None means no client certificate.
    """
    ctx = _new_client_context(None, ca_pem)
    if issued is not None:
        _load_issued_identity(ctx, issued)
    return ctx
