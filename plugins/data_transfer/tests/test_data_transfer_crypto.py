"""The data set encryption (§2.5 of the reference): byte compatibility with the MII Java scheme both
ways, streaming, and every way a data set must fail to decrypt.

The "Java side" here is a few lines of ``cryptography`` written straight from the scheme
(RSA/ECB/PKCS1Padding of a fresh AES-256 key, 12-byte IV, AES-256-GCM with a 128-bit tag appended,
AAD ``"<sender>|<receiver>"``, wrapped key ‖ IV ‖ ciphertext+tag), independent of the plugin's code.
"""

from __future__ import annotations

import io
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from dsf_plugin_data_transfer import crypto, keys

SENDER, RECEIVER = "dic.test", "dms.test"


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=4096)


@pytest.fixture(scope="module")
def other() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=4096)


# -- the scheme, written independently ---------------------------------------------------------


def reference_encrypt(public_key: rsa.RSAPublicKey, plaintext: bytes, sender: str, receiver: str) -> bytes:
    aes_key, iv = AESGCM.generate_key(bit_length=256), os.urandom(12)
    wrapped = public_key.encrypt(aes_key, padding.PKCS1v15())
    return wrapped + iv + AESGCM(aes_key).encrypt(iv, plaintext, f"{sender}|{receiver}".encode())


def reference_decrypt(private_key: rsa.RSAPrivateKey, blob: bytes, sender: str, receiver: str) -> bytes:
    aes_key = private_key.decrypt(blob[:512], padding.PKCS1v15())
    return AESGCM(aes_key).decrypt(blob[512:524], blob[524:], f"{sender}|{receiver}".encode())


# -- ours ------------------------------------------------------------------------------------


def encrypt_in_pieces(public_key: rsa.RSAPublicKey, plaintext: bytes, piece: int = 7777) -> bytes:
    encryptor = crypto.Encryptor(public_key, SENDER, RECEIVER)
    out = [encryptor.header()]
    out += [encryptor.update(plaintext[i:i + piece]) for i in range(0, len(plaintext), piece)]
    out.append(encryptor.finalize())
    return b"".join(out)


def decrypt(private_key: rsa.RSAPrivateKey, blob: bytes, sender: str = SENDER, receiver: str = RECEIVER,
            chunk_size: int = 4096) -> bytes:
    pieces: list[bytes] = []
    length = crypto.decrypt(io.BytesIO(blob), pieces.append, private_key, sender, receiver, chunk_size=chunk_size)
    assert length == len(b"".join(pieces))
    return b"".join(pieces)


PLAINTEXTS = [b"", b"x", b"<Bundle xmlns=\"http://hl7.org/fhir\"/>", os.urandom(100_003)]


@pytest.mark.parametrize("plaintext", PLAINTEXTS, ids=["empty", "one-byte", "xml", "100k"])
def test_ours_decrypts_what_the_reference_encrypts(key: rsa.RSAPrivateKey, plaintext: bytes) -> None:
    blob = reference_encrypt(key.public_key(), plaintext, SENDER, RECEIVER)
    assert decrypt(key, blob) == plaintext
    assert decrypt(key, blob, chunk_size=5) == plaintext  # the tag split over several reads


@pytest.mark.parametrize("plaintext", PLAINTEXTS, ids=["empty", "one-byte", "xml", "100k"])
def test_the_reference_decrypts_what_ours_encrypts(key: rsa.RSAPrivateKey, plaintext: bytes) -> None:
    blob = encrypt_in_pieces(key.public_key(), plaintext)
    assert len(blob) == 512 + 12 + len(plaintext) + 16 == len(plaintext) + crypto.OVERHEAD
    assert reference_decrypt(key, blob, SENDER, RECEIVER) == plaintext
    assert crypto.encrypt(key.public_key(), plaintext, SENDER, RECEIVER) != blob  # fresh key and IV each time


def test_each_data_set_gets_a_fresh_key_and_iv(key: rsa.RSAPrivateKey) -> None:
    first, second = (crypto.encrypt(key.public_key(), b"same", SENDER, RECEIVER) for _ in range(2))
    assert first[:512] != second[:512] and first[512:524] != second[512:524]


def _flip(blob: bytes, index: int) -> bytes:
    return blob[:index] + bytes([blob[index] ^ 1]) + blob[index + 1:]


@pytest.mark.parametrize("where", ["wrapped key", "iv", "ciphertext", "tag"])
def test_a_tampered_data_set_does_not_decrypt(key: rsa.RSAPrivateKey, where: str) -> None:
    blob = reference_encrypt(key.public_key(), b"a,b\n1,2\n" * 100, SENDER, RECEIVER)
    index = {"wrapped key": 100, "iv": 515, "ciphertext": 600, "tag": len(blob) - 1}[where]
    with pytest.raises(crypto.DecryptionError):
        decrypt(key, _flip(blob, index))


def test_a_data_set_for_another_key_does_not_decrypt(key: rsa.RSAPrivateKey, other: rsa.RSAPrivateKey) -> None:
    blob = reference_encrypt(other.public_key(), b"secret", SENDER, RECEIVER)
    with pytest.raises(crypto.DecryptionError):
        decrypt(key, blob)


@pytest.mark.parametrize(("sender", "receiver"), [(RECEIVER, SENDER), ("other.test", RECEIVER), (SENDER, "other.test")])
def test_the_aad_binds_sender_and_receiver(key: rsa.RSAPrivateKey, sender: str, receiver: str) -> None:
    blob = reference_encrypt(key.public_key(), b"secret", SENDER, RECEIVER)
    with pytest.raises(crypto.DecryptionError, match="GCM tag"):
        decrypt(key, blob, sender, receiver)


@pytest.mark.parametrize("length", [0, 100, 524, 539])
def test_a_truncated_data_set_does_not_decrypt(key: rsa.RSAPrivateKey, length: int) -> None:
    blob = reference_encrypt(key.public_key(), b"secret", SENDER, RECEIVER)
    with pytest.raises(crypto.DecryptionError):
        decrypt(key, blob[:length])


def test_only_rsa_4096_keys() -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(ValueError, match="RSA-4096"):
        crypto.Encryptor(small.public_key(), SENDER, RECEIVER)
    with pytest.raises(crypto.DecryptionError, match="RSA-4096"):
        decrypt(small, b"\0" * 600)


# -- keys from settings and the public-key Bundle --------------------------------------------------


def _pem(key: rsa.RSAPrivateKey, traditional: bool = False) -> bytes:
    fmt = serialization.PrivateFormat.TraditionalOpenSSL if traditional else serialization.PrivateFormat.PKCS8
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())


def _public_pem(key: rsa.RSAPublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.mark.parametrize("how", ["path", "file", "inline", "pkcs1"])
def test_keys_load_from_a_path_a_file_setting_or_inline(key: rsa.RSAPrivateKey, tmp_path: Path, how: str) -> None:
    path = tmp_path / "dms.key"
    path.write_bytes(_pem(key, traditional=how == "pkcs1"))
    settings = {
        "path": {keys.PRIVATE_KEY: str(path)},
        "pkcs1": {keys.PRIVATE_KEY: str(path)},
        "file": {f"{keys.PRIVATE_KEY}_FILE": str(path)},
        "inline": {keys.PRIVATE_KEY: _pem(key).decode()},
    }[how]
    loaded = keys.load_private_key(settings.get)
    assert loaded is not None and keys.public_key_der(loaded.public_key()) == keys.public_key_der(key.public_key())
    public = keys.load_public_key(settings.get)  # derived from the private key
    assert public is not None and keys.public_key_hash(public) == keys.public_key_hash(key.public_key())


def test_no_key_configured_is_none() -> None:
    assert keys.load_private_key({}.get) is None and keys.load_public_key({}.get) is None


def test_a_configured_public_key_must_belong_to_the_private_key(key: rsa.RSAPrivateKey, other: rsa.RSAPrivateKey) -> None:
    settings = {keys.PRIVATE_KEY: _pem(key).decode(), keys.PUBLIC_KEY: _public_pem(other.public_key()).decode()}
    with pytest.raises(keys.KeyConfigurationError, match="does not belong"):
        keys.load_public_key(settings.get)
    settings[keys.PUBLIC_KEY] = _public_pem(key.public_key()).decode()
    assert keys.load_public_key(settings.get) is not None


def test_key_errors_name_the_setting_never_the_key(key: rsa.RSAPrivateKey, tmp_path: Path) -> None:
    pem = _pem(key).decode()
    mangled = pem.replace("\n", "").replace("-----BEGINPRIVATE", "-----BEGIN PRIVATE")[:-40] + "-----END PRIVATE KEY-----"
    with pytest.raises(keys.KeyConfigurationError) as error:
        keys.load_private_key({keys.PRIVATE_KEY: mangled}.get)
    assert keys.PRIVATE_KEY in str(error.value) and pem.splitlines()[1][:20] not in str(error.value)
    with pytest.raises(keys.KeyConfigurationError, match="cannot read"):
        keys.load_private_key({f"{keys.PRIVATE_KEY}_FILE": str(tmp_path / "missing.pem")}.get)
    small = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(keys.KeyConfigurationError, match="RSA-4096"):
        keys.load_private_key({keys.PRIVATE_KEY: _pem(small).decode()}.get)


def test_the_public_key_bundle_round_trips_and_checks_its_hash(key: rsa.RSAPrivateKey, other: rsa.RSAPrivateKey) -> None:
    bundle = keys.public_key_bundle(key.public_key(), RECEIVER, datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert bundle["identifier"] == {"system": keys.CRYPTOGRAPHY, "value": "public-key"}
    assert bundle["type"] == "collection"
    document, binary = (e["resource"] for e in bundle["entry"])
    assert document["masterIdentifier"] == bundle["identifier"]
    assert document["author"][0]["identifier"]["value"] == RECEIVER
    attachment = document["content"][0]["attachment"]
    assert attachment["contentType"] == binary["contentType"] == "application/pem-certificate-chain"
    assert attachment["url"] == bundle["entry"][1]["fullUrl"]
    found = keys.public_key_from_bundle(bundle)
    assert keys.public_key_der(found) == keys.public_key_der(key.public_key())
    binary["data"] = keys.public_key_bundle(other.public_key(), RECEIVER, datetime.now(UTC))["entry"][1]["resource"]["data"]
    with pytest.raises(keys.PublicKeyBundleError, match="does not match"):
        keys.public_key_from_bundle(bundle)
    with pytest.raises(keys.PublicKeyBundleError, match="no Binary"):
        keys.public_key_from_bundle({"entry": [bundle["entry"][0]]})
