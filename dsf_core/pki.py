"""Development PKI and TLS helpers.

The DSF identifies an organisation by the SHA-512 thumbprint of the client
certificate it presents over mutual TLS (the Java DSF keeps the thumbprints in
an extension of the Organization resource and looks the caller up by them).
This module provides everything dsf-py needs around that:

* thumbprints of certificates (objects, PEM/DER/PKCS#12 files, and the PEM a
  reverse proxy forwards in a request header),
* a small certificate authority for development and tests (``create_ca``,
  ``issue_certificate``, ``DevPki``),
* writing and loading keys/certificates with strict file permissions and error
  messages that name the offending file (``PkiError``),
* ``ssl.SSLContext`` factories for aiohttp servers and clients, accepting PEM
  files, PKCS#12 files or in-memory ``Issued`` objects.

Only ``cryptography`` and the standard ``ssl`` module are used.  Keys generated
here are meant for development: production deployments bring certificates from
a real CA and only use the loading and SSL-context functions.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import hashlib
import ipaddress
import os
import re
import secrets
import shutil
import ssl
import tempfile
import urllib.parse
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    PrivateKeyTypes,
    PublicKeyTypes,
)
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "DEFAULT_CA_COMMON_NAME",
    "DevPki",
    "Issued",
    "IssuedFiles",
    "OrganizationFiles",
    "PkiError",
    "certificate_from_header",
    "client_ssl_context",
    "client_ssl_context_from",
    "create_ca",
    "issue_certificate",
    "issue_client_certificate",
    "issue_server_certificate",
    "load_certificate",
    "load_certificates",
    "load_key_and_certificate",
    "load_private_key",
    "server_ssl_context",
    "server_ssl_context_from",
    "thumbprint",
    "thumbprint_der",
    "thumbprint_pem",
    "write_issued",
    "write_pkcs12",
]

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


# --------------------------------------------------------------------------- issuing


@dataclass(frozen=True)
class Issued:
    """A certificate with its private key (and optionally chain certificates).

    ``chain`` holds further certificates that came with the identity, e.g. the
    intermediate CAs of a PKCS#12 file; TLS servers send them after the leaf.
    """

    certificate: x509.Certificate
    private_key: PrivateKeyTypes
    chain: tuple[x509.Certificate, ...] = field(default=())

    @property
    def cert_pem(self) -> bytes:
        """The certificate alone, PEM encoded."""
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def fullchain_pem(self) -> bytes:
        """The certificate followed by the chain certificates, PEM encoded."""
        parts = [self.cert_pem]
        parts.extend(c.public_bytes(serialization.Encoding.PEM) for c in self.chain)
        return b"".join(parts)

    @property
    def key_pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM."""
        return self.private_key_pem()

    @property
    def thumbprint(self) -> str:
        """The DSF thumbprint of the certificate."""
        return thumbprint(self.certificate)

    @property
    def common_name(self) -> str | None:
        """The subject's first common name, if any."""
        return _common_name(self.certificate)

    def private_key_pem(self, password: bytes | None = None) -> bytes:
        """The private key as PKCS#8 PEM, encrypted with *password* if given."""
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(password)
            if password
            else serialization.NoEncryption()
        )
        return self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )


def _common_name(cert: x509.Certificate) -> str | None:
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not attrs:
        return None
    value = attrs[0].value
    return value.decode() if isinstance(value, bytes) else value


def _utc(now: dt.datetime | None) -> dt.datetime:
    if now is None:
        return dt.datetime.now(dt.timezone.utc)
    # A naive datetime is taken as UTC; x509 validity is always UTC.
    return now.replace(tzinfo=dt.timezone.utc) if now.tzinfo is None else now


def _generate_key(key_type: str, *, curve: ec.EllipticCurve, rsa_key_size: int) -> CertificateIssuerPrivateKeyTypes:
    if key_type == "ec":
        return ec.generate_private_key(curve)
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=rsa_key_size)
    raise ValueError(f"unsupported key_type {key_type!r} (expected 'ec' or 'rsa')")


def _signature_hash(key: PrivateKeyTypes) -> hashes.SHA256 | hashes.SHA384:
    # Match the hash strength to the signing key (P-384 -> SHA-384).
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size >= 384:
        return hashes.SHA384()
    return hashes.SHA256()


def _issuer_key(issued: Issued) -> CertificateIssuerPrivateKeyTypes:
    key = issued.private_key
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        raise PkiError(f"CA key type {type(key).__name__} is not supported for signing")
    return key


def create_ca(
    common_name: str = DEFAULT_CA_COMMON_NAME,
    *,
    key_type: str = "ec",
    days: int = 3650,
    now: dt.datetime | None = None,
    rsa_key_size: int = 3072,
) -> Issued:
    """Create a self-signed root CA for development.

    ``key_type`` "ec" uses P-384, "rsa" an RSA key of ``rsa_key_size`` bits.
    The certificate carries critical BasicConstraints (CA, no path length
    limit), critical KeyUsage keyCertSign+cRLSign and a SubjectKeyIdentifier.
    """
    key = _generate_key(key_type, curve=ec.SECP384R1(), rsa_key_size=rsa_key_size)
    start = _utc(now)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - _BACKDATE)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, _signature_hash(key))
    )
    return Issued(cert, key)


def issue_certificate(
    ca: Issued,
    common_name: str,
    *,
    server: bool = False,
    client: bool = False,
    dns_names: Sequence[str] = (),
    ip_addresses: Sequence[str] = (),
    key_type: str = "ec",
    days: int = 825,
    now: dt.datetime | None = None,
    organization: str | None = None,
    rsa_key_size: int = 3072,
) -> Issued:
    """Issue a leaf certificate signed by *ca*.

    At least one of *server* (EKU serverAuth) and *client* (EKU clientAuth)
    must be set.  "ec" keys are P-256.  The validity ends at the CA's expiry
    at the latest, since a leaf cannot outlive its issuer anyway.
    Raises ``ValueError`` for invalid arguments (including bad IP addresses).
    """
    if not (server or client):
        raise ValueError("a certificate needs server and/or client usage")
    ips = [ipaddress.ip_address(a) for a in ip_addresses]
    signing_key = _issuer_key(ca)
    key = _generate_key(key_type, curve=ec.SECP256R1(), rsa_key_size=rsa_key_size)
    start = _utc(now)
    end = min(start + dt.timedelta(days=days), ca.certificate.not_valid_after_utc)

    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + (
        [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
    )
    try:
        ca_ski = ca.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski)
    except x509.ExtensionNotFound:
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(signing_key.public_key())

    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(attributes))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - _BACKDATE)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                # RSA key exchange (TLS 1.2 without ECDHE) encrypts to the key.
                key_encipherment=isinstance(key, rsa.RSAPrivateKey),
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(aki, critical=False)
    )
    general_names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    general_names += [x509.IPAddress(ip) for ip in ips]
    if general_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(general_names), critical=False)
    cert = builder.sign(signing_key, _signature_hash(signing_key))
    return Issued(cert, key)


def issue_server_certificate(
    ca: Issued,
    common_name: str,
    *,
    dns_names: Sequence[str] = ("localhost",),
    ip_addresses: Sequence[str] = ("127.0.0.1",),
    key_type: str = "ec",
) -> Issued:
    """Issue a TLS server certificate (EKU serverAuth) for *dns_names*/*ip_addresses*."""
    return issue_certificate(
        ca, common_name, server=True, dns_names=dns_names, ip_addresses=ip_addresses, key_type=key_type
    )


def issue_client_certificate(ca: Issued, common_name: str, *, key_type: str = "ec") -> Issued:
    """Issue a TLS client certificate (EKU clientAuth, no SAN)."""
    return issue_certificate(ca, common_name, client=True, key_type=key_type)


# --------------------------------------------------------------------------- writing


def _write_file(path: Path, data: bytes, mode: int) -> None:
    # The mode is given to os.open so a new file never exists with wider
    # permissions, and fchmod'ed before writing so an existing file (possibly
    # 0644) is tightened before the secret goes in.  fchmod also undoes umask.
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fd = -1  # now owned by fh
            fh.write(data)
    finally:
        if fd >= 0:
            os.close(fd)


def write_issued(
    issued: Issued,
    cert_path: Path,
    key_path: Path,
    *,
    password: bytes | None = None,
    include_chain: bool = False,
) -> None:
    """Write the certificate (PEM, mode 0644) and private key (PKCS#8 PEM, mode 0600).

    The key is encrypted when *password* is given.  With *include_chain* the
    certificate file also holds ``issued.chain`` after the leaf.
    """
    cert_path, key_path = Path(cert_path), Path(key_path)
    _write_file(key_path, issued.private_key_pem(password), 0o600)
    _write_file(cert_path, issued.fullchain_pem if include_chain else issued.cert_pem, 0o644)


def write_pkcs12(issued: Issued, path: Path, password: bytes | None, ca: Issued | None = None) -> None:
    """Write *issued* as a PKCS#12 file (mode 0600), including the CA certificate if given.

    Without a password the file is unencrypted (only sensible for tests).
    """
    cas = list(issued.chain)
    if ca is not None and ca.certificate not in cas:
        cas.append(ca.certificate)
    key = issued.private_key
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        raise PkiError(f"{path}: key type {type(key).__name__} is not supported here (RSA or EC only)")
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    )
    name = (issued.common_name or "dsf").encode()
    data = pkcs12.serialize_key_and_certificates(name, key, issued.certificate, cas or None, encryption)
    _write_file(Path(path), data, 0o600)


# --------------------------------------------------------------------------- loading


def _read(path: Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise PkiError(f"{path}: {what} file not found") from None
    except IsADirectoryError:
        raise PkiError(f"{path}: is a directory, expected a {what} file") from None
    except OSError as exc:
        raise PkiError(f"{path}: cannot read {what} file: {exc.strerror or exc}") from exc


def _is_pem(data: bytes) -> bool:
    return _PEM_MARKER in data


def _looks_like_pkcs12(path: Path, data: bytes) -> bool:
    """PKCS#12 by file name, or binary content that is not a DER certificate.

    PEM content wins over a misleading file name.
    """
    if _is_pem(data):
        return False
    if Path(path).suffix.lower() in _PKCS12_SUFFIXES:
        return True
    try:
        x509.load_der_x509_certificate(data)
    except ValueError:
        return True
    return False


def _load_pkcs12(path: Path, data: bytes, password: bytes | None) -> pkcs12.PKCS12KeyAndCertificates:
    try:
        return pkcs12.load_pkcs12(data, password)
    except ValueError as exc:
        # cryptography distinguishes unparseable data from a failed MAC/decryption.
        if "password" in str(exc).lower():
            if password:
                raise PkiError(f"{path}: wrong password for PKCS#12 file") from None
            raise PkiError(f"{path}: PKCS#12 file is password protected; a password is required") from None
        raise PkiError(f"{path}: not a certificate, PEM or PKCS#12 file") from None


def load_certificates(path: Path) -> list[x509.Certificate]:
    """Load all certificates of a PEM bundle (or the single certificate of a DER file)."""
    data = _read(path, "certificate")
    try:
        if _is_pem(data):
            return x509.load_pem_x509_certificates(data)
        return [x509.load_der_x509_certificate(data)]
    except ValueError as exc:
        raise PkiError(f"{path}: not a certificate file ({exc})") from None


def load_certificate(path: Path, password: bytes | None = None) -> x509.Certificate:
    """Load the (first) certificate from a PEM, DER or PKCS#12 file (auto-detected).

    *password* is only used for PKCS#12 files.
    """
    data = _read(path, "certificate")
    if _is_pem(data):
        try:
            return x509.load_pem_x509_certificate(data)
        except ValueError:
            raise PkiError(f"{path}: PEM file does not contain a valid certificate") from None
    if _looks_like_pkcs12(path, data):
        bundle = _load_pkcs12(path, data, password)
        if bundle.cert is None:
            raise PkiError(f"{path}: PKCS#12 file contains no certificate")
        return bundle.cert.certificate
    return x509.load_der_x509_certificate(data)  # _looks_like_pkcs12 just parsed it


def _parse_private_key(path: Path, data: bytes, password: bytes | None) -> PrivateKeyTypes:
    loader = serialization.load_pem_private_key if _is_pem(data) else serialization.load_der_private_key
    try:
        return loader(data, password or None)
    except TypeError as exc:
        # cryptography signals password presence mismatches with TypeError.
        if "not encrypted" in str(exc):
            # A password was given for a plain key: harmless, load without it.
            return loader(data, None)
        raise PkiError(f"{path}: private key is encrypted; a password is required") from None
    except ValueError as exc:
        if "password" in str(exc).lower() or "decrypt" in str(exc).lower():
            raise PkiError(f"{path}: wrong password for private key") from None
        raise PkiError(f"{path}: not a private key file (or unsupported key type)") from None
    except UnsupportedAlgorithm as exc:
        raise PkiError(f"{path}: cannot load private key: {exc}") from None


def load_private_key(path: Path, password: bytes | None = None) -> PrivateKeyTypes:
    """Load a private key from a PEM (PKCS#8 or traditional) or DER file."""
    return _parse_private_key(path, _read(path, "private key"), password)


def _public_key_der(key: PublicKeyTypes) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _check_pair(cert: x509.Certificate, key: PrivateKeyTypes, cert_path: Path, key_path: Path) -> None:
    if _public_key_der(cert.public_key()) != _public_key_der(key.public_key()):
        where = str(key_path) if key_path == cert_path else f"{key_path} and {cert_path}"
        raise PkiError(f"{where}: private key does not match certificate")


def load_key_and_certificate(
    path: Path, password: bytes | None = None, *, key_path: Path | None = None
) -> Issued:
    """Load a certificate with its private key.

    *path* is either a PKCS#12 file (``.p12``/``.pfx`` or detected by content;
    further certificates become ``Issued.chain``) or a PEM file whose first
    certificate is the leaf and whose further certificates become the chain.
    The key is read from *key_path*, or from *path* itself when omitted.
    *password* decrypts the PKCS#12 file or the private key.
    Raises :class:`PkiError` naming the file on any problem, including a key
    that does not belong to the certificate.
    """
    path = Path(path)
    data = _read(path, "certificate")
    if key_path is None and _looks_like_pkcs12(path, data):
        bundle = _load_pkcs12(path, data, password)
        if bundle.cert is None:
            raise PkiError(f"{path}: PKCS#12 file contains no certificate")
        if bundle.key is None:
            raise PkiError(f"{path}: PKCS#12 file contains no private key")
        cert = bundle.cert.certificate
        _check_pair(cert, bundle.key, path, path)
        chain = tuple(c.certificate for c in bundle.additional_certs)
        return Issued(cert, bundle.key, chain)

    certs = load_certificates(path)
    if not certs:
        raise PkiError(f"{path}: no certificate found")
    if key_path is None:
        key_path = path
        if b"PRIVATE KEY-----" not in data:
            raise PkiError(f"{path}: contains no private key and no key file was given")
        key = _parse_private_key(path, data, password)
    else:
        key = load_private_key(Path(key_path), password)
    _check_pair(certs[0], key, path, Path(key_path))
    return Issued(certs[0], key, tuple(certs[1:]))


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


# --------------------------------------------------------------------------- DevPki


@dataclass(frozen=True)
class IssuedFiles:
    """Where an issued certificate and key were written, and the certificate's thumbprint."""

    cert_path: Path
    key_path: Path
    thumbprint: str


@dataclass(frozen=True)
class OrganizationFiles:
    """The server and client certificates of one organisation in a :class:`DevPki`."""

    identifier: str
    server: IssuedFiles
    client: IssuedFiles

    @property
    def client_thumbprint(self) -> str:
        """The thumbprint other DSF nodes use to recognise this organisation."""
        return self.client.thumbprint


def _safe_name(name: str, what: str) -> str:
    # Names become file/directory names inside the PKI directory; refuse
    # anything that could escape it or clobber the CA files.
    if (
        not name
        or name in {".", ".."}
        or name.startswith(".")
        or "/" in name
        or "\\" in name
        or "\0" in name
    ):
        raise PkiError(f"invalid {what} {name!r}: must be a plain file name")
    return name


class DevPki:
    """A development PKI kept in a directory: ``ca.crt``/``ca.key`` plus issued certificates.

    Layout: ``DIR/ca.crt``, ``DIR/ca.key``, ``DIR/<name>.crt|.key`` from
    :meth:`issue`, and ``DIR/<identifier>/server.crt|.key`` and
    ``client.crt|.key`` from :meth:`issue_organization`.  Keys are unencrypted
    PEM with mode 0600; re-issuing a name replaces its files.
    """

    CA_CERT = "ca.crt"
    CA_KEY = "ca.key"

    def __init__(self, directory: Path, ca: Issued) -> None:
        self.directory = Path(directory)
        self.ca = ca

    @property
    def ca_cert_path(self) -> Path:
        """Path of the CA certificate (the trust anchor to configure on every node)."""
        return self.directory / self.CA_CERT

    @property
    def ca_key_path(self) -> Path:
        """Path of the CA private key."""
        return self.directory / self.CA_KEY

    @classmethod
    def init(
        cls,
        directory: Path,
        *,
        common_name: str = DEFAULT_CA_COMMON_NAME,
        overwrite: bool = False,
        key_type: str = "ec",
    ) -> DevPki:
        """Create a new CA in *directory* (created if needed).

        Refuses to replace an existing ``ca.crt``/``ca.key`` unless *overwrite*:
        a new CA invalidates every certificate issued by the old one.
        """
        directory = Path(directory)
        if directory.exists() and not directory.is_dir():
            raise PkiError(f"{directory}: exists and is not a directory")
        if not overwrite:
            existing = [p for p in (directory / cls.CA_CERT, directory / cls.CA_KEY) if p.exists()]
            if existing:
                names = ", ".join(str(p) for p in existing)
                raise PkiError(f"{names}: already exists; refusing to overwrite an existing CA")
        directory.mkdir(parents=True, exist_ok=True)
        ca = create_ca(common_name, key_type=key_type)
        pki = cls(directory, ca)
        write_issued(ca, pki.ca_cert_path, pki.ca_key_path)
        return pki

    @classmethod
    def open(cls, directory: Path) -> DevPki:
        """Load the CA of an existing development PKI directory."""
        directory = Path(directory)
        cert_path = directory / cls.CA_CERT
        if not cert_path.exists():
            raise PkiError(f"{cert_path}: not found; is {directory} a PKI directory created with init?")
        ca = load_key_and_certificate(cert_path, key_path=directory / cls.CA_KEY)
        return cls(directory, ca)

    def _write(self, issued: Issued, cert_path: Path, key_path: Path) -> IssuedFiles:
        cert_path.parent.mkdir(parents=True, exist_ok=True)
        write_issued(issued, cert_path, key_path)
        return IssuedFiles(cert_path, key_path, issued.thumbprint)

    def issue(
        self,
        name: str,
        *,
        server: bool,
        client: bool,
        dns_names: Sequence[str] = ("localhost",),
        ip_addresses: Sequence[str] = ("127.0.0.1",),
    ) -> IssuedFiles:
        """Issue ``DIR/<name>.crt`` and ``DIR/<name>.key`` with CN = *name*.

        SANs are only added for server certificates; client-only certificates
        are identified by thumbprint and need none.
        """
        _safe_name(name, "certificate name")
        if name in {Path(self.CA_CERT).stem, Path(self.CA_KEY).stem}:
            raise PkiError(f"certificate name {name!r} is reserved for the CA")
        issued = issue_certificate(
            self.ca,
            name,
            server=server,
            client=client,
            dns_names=dns_names if server else (),
            ip_addresses=ip_addresses if server else (),
        )
        return self._write(issued, self.directory / f"{name}.crt", self.directory / f"{name}.key")

    def issue_organization(
        self,
        identifier: str,
        *,
        dns_names: Sequence[str] = ("localhost",),
        ip_addresses: Sequence[str] = ("127.0.0.1",),
    ) -> OrganizationFiles:
        """Issue the server and client certificates of organisation *identifier*.

        Writes ``DIR/<identifier>/server.crt|.key`` (serverAuth, SANs) and
        ``DIR/<identifier>/client.crt|.key`` (clientAuth), both with CN = *identifier*.
        """
        _safe_name(identifier, "organization identifier")
        org_dir = self.directory / identifier
        server = issue_certificate(
            self.ca, identifier, server=True, dns_names=dns_names, ip_addresses=ip_addresses
        )
        client = issue_certificate(self.ca, identifier, client=True)
        return OrganizationFiles(
            identifier=identifier,
            server=self._write(server, org_dir / "server.crt", org_dir / "server.key"),
            client=self._write(client, org_dir / "client.crt", org_dir / "client.key"),
        )
