"""A development CA: issuing and writing certificates and keys."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes, PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from dsf_core.pki._base import DEFAULT_CA_COMMON_NAME, PkiError, _BACKDATE, thumbprint


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
