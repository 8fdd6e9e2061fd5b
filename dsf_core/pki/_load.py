"""Loading certificates and keys (PEM, DER, PKCS#12) with errors naming the file."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs12

from dsf_core.pki._base import PkiError, _PEM_MARKER, _PKCS12_SUFFIXES
from dsf_core.pki._issue import Issued


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
