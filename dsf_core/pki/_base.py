"""Constants, the error type, thumbprints and certificates forwarded by a proxy."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import re
import urllib.parse

from cryptography import x509
from cryptography.hazmat.primitives import serialization



DEFAULT_CA_COMMON_NAME = "dsf-py development CA"

# Certificates start slightly in the past so that peers whose clocks lag a
# little behind (containers, VMs) do not reject a freshly issued certificate.
_BACKDATE = dt.timedelta(minutes=5)
_PKCS12_SUFFIXES = frozenset({".p12", ".pfx"})
_PEM_CERT_RE = re.compile(
    rb"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", re.DOTALL
)
_PEM_MARKER = b"-----BEGIN "


class PkiError(Exception):
    """A certificate, key or PKI directory cannot be used; the message says which and why."""


# --------------------------------------------------------------------------- thumbprints


def thumbprint_der(der: bytes) -> str:
    """Return the lower-case hex SHA-512 digest of DER-encoded certificate bytes."""
    return hashlib.sha512(der).hexdigest()


def thumbprint(cert: x509.Certificate) -> str:
    """Return the DSF thumbprint of *cert*: lower-case hex SHA-512 over its DER encoding."""
    return thumbprint_der(cert.public_bytes(serialization.Encoding.DER))


def thumbprint_pem(pem: bytes | str) -> str:
    """Return the thumbprint of the first certificate in PEM text *pem*."""
    data = pem.encode("ascii", "replace") if isinstance(pem, str) else pem
    try:
        cert = x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        raise PkiError(f"PEM text does not contain a valid certificate: {exc}") from exc
    return thumbprint(cert)


def certificate_from_header(value: str) -> x509.Certificate:
    """Parse a client certificate forwarded by a TLS-terminating reverse proxy.

    Accepted forms: PEM with real newlines; URL-encoded PEM (nginx
    ``$ssl_client_escaped_cert``); PEM whose newlines were replaced by spaces
    (what some proxies do because header values cannot contain newlines);
    bare base64 of the DER encoding.  Raises :class:`PkiError` on anything else.
    """
    text = value.strip()
    if not text:
        raise PkiError("client certificate header is empty")
    # Neither PEM nor base64 contains '%', so its presence means URL encoding.
    # unquote (not unquote_plus): a literal '+' is a valid base64 character.
    if "%" in text:
        text = urllib.parse.unquote(text)
    raw = text.encode("ascii", "replace")
    match = _PEM_CERT_RE.search(raw)
    if match is not None:
        body = match.group(1)
    elif _PEM_MARKER in raw:
        raise PkiError("client certificate header contains PEM data that is not a certificate")
    else:
        body = raw
    # Decoding the base64 body ourselves copes with newlines, spaces or tabs
    # between the lines, whichever the proxy produced.
    try:
        der = base64.b64decode(b"".join(body.split()), validate=True)
        return x509.load_der_x509_certificate(der)
    except (binascii.Error, ValueError) as exc:
        raise PkiError(f"client certificate header is not a certificate: {exc}") from exc
