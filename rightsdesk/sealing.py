"""Sealing response packages at rest: AES-256-GCM, a key per package, wrapped by the desk's key.

The desk's package key comes only from the environment (`RIGHTSDESK_PORTAL__PACKAGE_KEY`) or a
file (`portal.package_key_file`), never from the config file or the data folder: a copy of the
database or of the data folder alone discloses nothing. Every sealed piece carries, as
associated data, what it is (`package:<id>` for a wrapped key, `package:<id>:file:<sha256>`
for a file, by the digest of its plaintext), so a piece moved to another package or another
file's row does not open.
"""

from __future__ import annotations

import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_BYTES = 12
MIN_SECRET_CHARS = 32


class SealingError(Exception):
    """No usable package key, or a sealed piece that does not open (altered, wrong key)."""


class PackageKey:
    """The desk's key-wrapping key, derived from the configured secret."""

    def __init__(self, secret: str) -> None:
        if len(secret) < MIN_SECRET_CHARS:
            raise SealingError(
                f"portal.package_key must be at least {MIN_SECRET_CHARS} characters "
                "(e.g. `openssl rand -hex 32`)"
            )
        # A fixed, labelled derivation: the secret may be any string, the key is 256 bits.
        self._kek = AESGCM(hashlib.sha256(b"rightsdesk package key\0" + secret.encode()).digest())

    def new_package_key(self, package_id: int) -> tuple[bytes, bytes]:
        """(the package's own key, that key wrapped for storage)."""
        key = AESGCM.generate_key(bit_length=256)
        nonce = os.urandom(NONCE_BYTES)
        wrapped = nonce + self._kek.encrypt(nonce, key, f"package:{package_id}".encode())
        return key, wrapped

    def unwrap(self, package_id: int, wrapped: bytes) -> bytes:
        nonce, body = wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:]
        try:
            return self._kek.decrypt(nonce, body, f"package:{package_id}".encode())
        except InvalidTag:
            raise SealingError(
                f"package {package_id}: its key does not open with this package key"
            ) from None


def _aad(package_id: int, slot: str) -> bytes:
    return f"package:{package_id}:file:{slot}".encode()


def seal(key: bytes, package_id: int, slot: str, plaintext: bytes) -> tuple[bytes, bytes]:
    """(nonce, ciphertext with its tag). CPU-bound for large files: call it off the loop."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce, AESGCM(key).encrypt(nonce, plaintext, _aad(package_id, slot))


def unseal(key: bytes, package_id: int, slot: str, nonce: bytes, sealed: bytes) -> bytes:
    try:
        return AESGCM(key).decrypt(nonce, sealed, _aad(package_id, slot))
    except InvalidTag:
        raise SealingError(f"package {package_id}: a file was altered") from None
