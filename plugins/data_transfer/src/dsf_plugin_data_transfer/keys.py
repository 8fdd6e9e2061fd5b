"""The DMS key pair: read from the node's settings, published on the DMS mailbox, found there by DICs.

Settings (``api.config``; each may instead be given as ``<NAME>_FILE``, the path of a file):

* ``DE_MEDIZININFORMATIK_INITIATIVE_DMS_PRIVATE_KEY`` — the DMS's RSA-4096 private key: the path of
  an unencrypted PEM file (PKCS#8 or PKCS#1), as for the Java plugin, or the PEM itself;
* ``DE_MEDIZININFORMATIK_INITIATIVE_DMS_PUBLIC_KEY`` — its public key (PEM SubjectPublicKeyInfo);
  optional, derived from the private key when absent.

``dsf keys create`` writes such a pair. The private key is only ever read into memory for the
moment it is used: it is never logged, put into a process variable or a Task.

The public key travels as a collection Bundle on the DMS's mailbox, identified by
``http://medizininformatik-initiative.de/fhir/CodeSystem/cryptography|public-key``: a
DocumentReference (the SHA-256 of the key as ``attachment.hash``) and a Binary holding the DER
SubjectPublicKeyInfo. A DIC searches it there and checks the hash before encrypting.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

from dsf_plugin_data_transfer.crypto import RSA_KEY_BITS

__all__ = [
    "CRYPTOGRAPHY",
    "PRIVATE_KEY",
    "PUBLIC_KEY",
    "PUBLIC_KEY_IDENTIFIER",
    "KeyConfigurationError",
    "PublicKeyBundleError",
    "load_private_key",
    "load_public_key",
    "public_key_bundle",
    "public_key_der",
    "public_key_from_bundle",
    "public_key_hash",
]

PRIVATE_KEY = "DE_MEDIZININFORMATIK_INITIATIVE_DMS_PRIVATE_KEY"
PUBLIC_KEY = "DE_MEDIZININFORMATIK_INITIATIVE_DMS_PUBLIC_KEY"
CRYPTOGRAPHY = "http://medizininformatik-initiative.de/fhir/CodeSystem/cryptography"
#: ``identifier`` search value of the public-key Bundle.
PUBLIC_KEY_IDENTIFIER = f"{CRYPTOGRAPHY}|public-key"
PEM_CHAIN = "application/pem-certificate-chain"
_ORGANIZATION_IDENTIFIER = "http://dsf.dev/sid/organization-identifier"
_READ_ACCESS_ALL = {"system": "http://dsf.dev/fhir/CodeSystem/read-access-tag", "code": "ALL"}

Config = Callable[[str], str | None]


class KeyConfigurationError(Exception):
    """A key setting is missing, unreadable or not an RSA-4096 key (the message names the setting, never the key)."""


class PublicKeyBundleError(ValueError):
    """A DMS's public-key Bundle is incomplete, or its key does not match the published hash."""


def _pem(config: Config, name: str) -> bytes | None:
    value = config(name)
    if value and value.lstrip().startswith("-----BEGIN"):
        return value.encode()
    path = value or config(f"{name}_FILE")
    if not path:
        return None
    try:
        return Path(path).expanduser().read_bytes()
    except OSError as exc:
        raise KeyConfigurationError(f"{name}: cannot read {path}: {exc.strerror or exc}") from None


def _checked(key: object, name: str) -> None:
    if not isinstance(key, RSAPrivateKey | RSAPublicKey):
        raise KeyConfigurationError(f"{name}: not an RSA key")
    if key.key_size != RSA_KEY_BITS:
        raise KeyConfigurationError(f"{name}: an RSA-{RSA_KEY_BITS} key is needed, this one has {key.key_size} bits")


def load_private_key(config: Config) -> RSAPrivateKey | None:
    """The DMS private key, or None when the node has none configured."""
    pem = _pem(config, PRIVATE_KEY)
    if pem is None:
        return None
    return _private_key(pem)


@functools.lru_cache(maxsize=4)
def _private_key(pem: bytes) -> RSAPrivateKey:
    # Parsing checks the RSA-4096 key's consistency, ~0.3-0.6 s of CPU: once per key, not per data set
    # (the PEM is read each time, so a replaced key file takes effect).
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        # Never include the text: it may be a key that is merely encrypted or mangled.
        raise KeyConfigurationError(f"{PRIVATE_KEY}: not an unencrypted PEM private key") from None
    _checked(key, PRIVATE_KEY)
    assert isinstance(key, RSAPrivateKey)
    return key


def load_public_key(config: Config) -> RSAPublicKey | None:
    """The DMS public key (configured, or derived from the private key); None when neither is configured."""
    private = load_private_key(config)
    pem = _pem(config, PUBLIC_KEY)
    if pem is None:
        return private.public_key() if private is not None else None
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError:
        raise KeyConfigurationError(f"{PUBLIC_KEY}: not a PEM public key") from None
    _checked(key, PUBLIC_KEY)
    assert isinstance(key, RSAPublicKey)
    if private is not None and public_key_der(private.public_key()) != public_key_der(key):
        raise KeyConfigurationError(f"{PUBLIC_KEY} does not belong to {PRIVATE_KEY}")
    return key


def public_key_der(key: RSAPublicKey) -> bytes:
    """The DER SubjectPublicKeyInfo (Java's ``PublicKey.getEncoded()``)."""
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def public_key_hash(key: RSAPublicKey) -> str:
    """SHA-256 of the DER key, base64 (FHIR ``Attachment.hash``)."""
    return base64.b64encode(hashlib.sha256(public_key_der(key)).digest()).decode()


def _instant(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def public_key_bundle(key: RSAPublicKey, organization: str, now: datetime) -> dict[str, Any]:
    """The collection Bundle a DMS publishes on its mailbox (read access ``ALL``)."""
    binary_id, document_id = str(uuid.uuid4()), str(uuid.uuid4())
    system, code = PUBLIC_KEY_IDENTIFIER.split("|")
    document = {
        "resourceType": "DocumentReference",
        "masterIdentifier": {"system": system, "value": code},
        "status": "current",
        "docStatus": "final",
        "author": [{"type": "Organization", "identifier": {"system": _ORGANIZATION_IDENTIFIER, "value": organization}}],
        "date": _instant(now),
        "content": [{"attachment": {"contentType": PEM_CHAIN, "url": f"urn:uuid:{binary_id}",
                                    "hash": public_key_hash(key)}}],
    }
    binary = {
        "resourceType": "Binary",
        "contentType": PEM_CHAIN,
        "data": base64.b64encode(public_key_der(key)).decode(),
    }
    return {
        "resourceType": "Bundle",
        "meta": {"tag": [_READ_ACCESS_ALL]},
        "identifier": {"system": system, "value": code},
        "type": "collection",
        "timestamp": _instant(now),
        "entry": [
            {"fullUrl": f"urn:uuid:{document_id}", "resource": document},
            {"fullUrl": f"urn:uuid:{binary_id}", "resource": binary},
        ],
    }


def _first(bundle: Mapping[str, Any], resource_type: str) -> Mapping[str, Any]:
    for entry in bundle.get("entry") or []:
        resource = entry.get("resource") or {}
        if resource.get("resourceType") == resource_type:
            return dict(resource)
    raise PublicKeyBundleError(f"the public-key Bundle has no {resource_type}")


def public_key_from_bundle(bundle: Mapping[str, Any]) -> RSAPublicKey:
    """The key of a public-key Bundle after checking it against the DocumentReference's SHA-256."""
    document, binary = _first(bundle, "DocumentReference"), _first(bundle, "Binary")
    hashes = [c["attachment"]["hash"] for c in document.get("content") or []
              if isinstance(c.get("attachment"), dict) and c["attachment"].get("hash")]
    if not hashes:
        raise PublicKeyBundleError("the public-key DocumentReference has no SHA-256 hash")
    try:
        key = serialization.load_der_public_key(base64.b64decode(binary.get("data") or "", validate=True))
    except ValueError as exc:
        raise PublicKeyBundleError(f"the public-key Binary holds no public key: {exc}") from None
    if not isinstance(key, RSAPublicKey) or key.key_size != RSA_KEY_BITS:
        raise PublicKeyBundleError(f"the published key is not an RSA-{RSA_KEY_BITS} key")
    try:
        published = base64.b64decode(hashes[0], validate=True)
    except ValueError:
        published = b""
    if published != hashlib.sha256(public_key_der(key)).digest():
        raise PublicKeyBundleError("the SHA-256 hash in the DocumentReference does not match the published key")
    return key
