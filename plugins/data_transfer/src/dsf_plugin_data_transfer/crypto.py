"""End-to-end encryption of a data set for the DMS, byte-compatible with the MII Java plugins.

Layout of an encrypted data set::

    RSA/ECB/PKCS1Padding(AES key)   512 bytes (RSA-4096)
    IV                              12 random bytes
    AES-256-GCM(plaintext)          ciphertext, then the 16-byte tag

The associated data is the UTF-8 of ``"<sending organisation>|<receiving organisation>"``, so a
data set only decrypts for the pair it was made for. Both directions stream: :class:`Encryptor`
takes the plaintext in pieces; :class:`Decryptor` takes the ciphertext in pieces (as it arrives)
and hands the plaintext to a sink as it goes. The sink must keep what it gets unused (e.g. in a
private temporary file) until :meth:`Decryptor.finalize` has returned, which it does only once
the GCM tag verified: before that, the plaintext may be forged.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from cryptography.hazmat.primitives.ciphers import Cipher
from cryptography.hazmat.primitives.ciphers.algorithms import AES
from cryptography.hazmat.primitives.ciphers.modes import GCM

__all__ = [
    "CHUNK_SIZE",
    "IV_LENGTH",
    "OVERHEAD",
    "RSA_KEY_BITS",
    "TAG_LENGTH",
    "WRAPPED_KEY_LENGTH",
    "DecryptionError",
    "Decryptor",
    "Encryptor",
    "aad",
    "decrypt",
    "encrypt",
]

RSA_KEY_BITS = 4096
WRAPPED_KEY_LENGTH = RSA_KEY_BITS // 8
IV_LENGTH = 12
TAG_LENGTH = 16
AES_KEY_LENGTH = 32
#: Bytes an encrypted data set has beyond its plaintext.
OVERHEAD = WRAPPED_KEY_LENGTH + IV_LENGTH + TAG_LENGTH
#: Pieces read and written at a time (bounded memory whatever the data set's size).
CHUNK_SIZE = 1024 * 1024


class DecryptionError(Exception):
    """The data set does not decrypt: wrong key, wrong sender/receiver, tampered or truncated."""


def aad(sender: str, receiver: str) -> bytes:
    """The associated data binding a data set to its sending and receiving organisation."""
    return f"{sender}|{receiver}".encode()


class Encryptor:
    """Encrypts one data set for ``public_key``: ``header()``, then ``update()`` per piece, then ``finalize()``."""

    def __init__(self, public_key: RSAPublicKey, sender: str, receiver: str) -> None:
        if public_key.key_size != RSA_KEY_BITS:
            raise ValueError(f"the DMS key must be an RSA-{RSA_KEY_BITS} key, not RSA-{public_key.key_size}")
        key = os.urandom(AES_KEY_LENGTH)
        iv = os.urandom(IV_LENGTH)
        self._header = public_key.encrypt(key, PKCS1v15()) + iv
        self._context = Cipher(AES(key), GCM(iv)).encryptor()
        self._context.authenticate_additional_data(aad(sender, receiver))

    def header(self) -> bytes:
        """The wrapped key and the IV: the first bytes of the encrypted data set."""
        return self._header

    def update(self, plaintext: bytes) -> bytes:
        return self._context.update(plaintext)

    def finalize(self) -> bytes:
        """The last ciphertext bytes and the tag."""
        return self._context.finalize() + self._context.tag


def encrypt(public_key: RSAPublicKey, plaintext: bytes, sender: str, receiver: str) -> bytes:
    """A whole (small) data set at once."""
    encryptor = Encryptor(public_key, sender, receiver)
    return encryptor.header() + encryptor.update(plaintext) + encryptor.finalize()


class Decryptor:
    """Decrypts one data set piece by piece into ``sink``: ``update()`` with the encrypted bytes as they
    come, then ``finalize()``, which raises :class:`DecryptionError` unless the tag verifies."""

    def __init__(self, private_key: RSAPrivateKey, sender: str, receiver: str, sink: Callable[[bytes], object]) -> None:
        if private_key.key_size != RSA_KEY_BITS:
            raise DecryptionError(f"the DMS key must be an RSA-{RSA_KEY_BITS} key, not RSA-{private_key.key_size}")
        self._key, self._aad, self._sink = private_key, aad(sender, receiver), sink
        self._header = b""
        self._context: Any = None
        self._held = b""  # the last TAG_LENGTH bytes seen so far: the tag once the data set ends
        self.length = 0

    def update(self, data: bytes) -> None:
        if self._context is None:
            self._header += data
            if len(self._header) < WRAPPED_KEY_LENGTH + IV_LENGTH:
                return
            data = self._header[WRAPPED_KEY_LENGTH + IV_LENGTH:]
            self._start(self._header[:WRAPPED_KEY_LENGTH], self._header[WRAPPED_KEY_LENGTH:WRAPPED_KEY_LENGTH + IV_LENGTH])
        data = self._held + data
        self._held, data = data[-TAG_LENGTH:], data[:-TAG_LENGTH]
        if data:
            plaintext = self._context.update(data)
            self.length += len(plaintext)
            self._sink(plaintext)

    def _start(self, wrapped: bytes, iv: bytes) -> None:
        try:
            key = self._key.decrypt(wrapped, PKCS1v15())
        except ValueError as exc:
            raise DecryptionError("the AES key does not unwrap with this private key") from exc
        if len(key) not in (16, 24, 32):
            # OpenSSL's implicit rejection answers a wrong key with random bytes, not an error.
            raise DecryptionError("the AES key does not unwrap with this private key")
        self._context = Cipher(AES(key), GCM(iv)).decryptor()
        self._context.authenticate_additional_data(self._aad)

    def finalize(self) -> int:
        """Verify the tag; returns the plaintext length."""
        if self._context is None or len(self._held) != TAG_LENGTH:
            raise DecryptionError("encrypted data set too short")
        try:
            self._sink(self._context.finalize_with_tag(self._held))
        except InvalidTag as exc:
            raise DecryptionError("the GCM tag does not verify: wrong key, wrong sender or receiver, or tampered") from exc
        return self.length


def decrypt(
    source: BinaryIO,
    sink: Callable[[bytes], object],
    private_key: RSAPrivateKey,
    sender: str,
    receiver: str,
    *,
    chunk_size: int = CHUNK_SIZE,
) -> int:
    """Decrypt ``source`` (read to its end) piece by piece into ``sink``; returns the plaintext length.

    Raises :class:`DecryptionError` for anything that makes the data set unusable; what the sink
    got by then must be thrown away.
    """
    decryptor = Decryptor(private_key, sender, receiver, sink)
    while piece := source.read(chunk_size):
        decryptor.update(piece)
    return decryptor.finalize()
