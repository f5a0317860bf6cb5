"""Secrets at rest sealed with AES-256-GCM: each blob names the key that sealed it."""

from __future__ import annotations

import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.crypto.derivation import KEY_ID_BYTES, DerivedKey
from gateway.errors import SealError

# A blob is: format version (1 byte), key id, a random 96-bit nonce, ciphertext and GCM tag.
FORMAT = b"\x01"
NONCE_BYTES = 12
TAG_BYTES = 16
_HEADER = len(FORMAT) + KEY_ID_BYTES + NONCE_BYTES


class Sealer:
    """Seals with the current key; opens what the current or any previous key sealed.

    The associated data (``aad``) binds a blob to its place, e.g. ``b"totp:usr_1"``: a blob
    copied to another user's row does not open there.
    """

    def __init__(self, current: DerivedKey, previous: Sequence[DerivedKey] = ()) -> None:
        if any(key.purpose != current.purpose for key in previous):
            raise ValueError("every key of a sealer must serve the same purpose")
        self.current = current
        self._keys = (current, *previous)

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        sealed = AESGCM(self.current.material).encrypt(nonce, plaintext, aad)
        return FORMAT + self.current.id + nonce + sealed

    def open(self, blob: bytes, aad: bytes) -> bytes:
        """The plaintext of ``blob``; SealError if it is malformed, sealed with a key no longer
        configured, altered, or sealed for other associated data."""
        kid = self.key_id_of(blob)
        nonce, sealed = blob[len(FORMAT) + KEY_ID_BYTES : _HEADER], blob[_HEADER:]
        candidates = [key for key in self._keys if key.id == kid]
        if not candidates:
            raise SealError(
                f"the value was sealed with key id {kid.hex()}, which is neither the current"
                " [security] secret_key nor one of previous_secret_keys; add the key it was"
                " sealed with to previous_secret_keys"
            )
        for key in candidates:  # more than one only if two keys' ids collide
            try:
                return AESGCM(key.material).decrypt(nonce, sealed, aad)
            except InvalidTag:
                continue
        raise SealError(
            "the sealed value does not open: it was altered, or it belongs to another record"
        )

    def key_id_of(self, blob: bytes) -> bytes:
        """The id of the key that sealed ``blob``; SealError if it is no blob of ours."""
        if len(blob) < _HEADER + TAG_BYTES or blob[: len(FORMAT)] != FORMAT:
            raise SealError("the value is not a sealed value of this gateway (bad format)")
        return blob[len(FORMAT) : len(FORMAT) + KEY_ID_BYTES]

    def is_current(self, blob: bytes) -> bool:
        """Whether ``blob`` was sealed with the current key (else it needs sealing anew)."""
        return self.key_id_of(blob) == self.current.id
