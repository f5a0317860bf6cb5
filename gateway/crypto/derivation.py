"""One key per purpose, derived from a configured secret with HKDF-SHA256, named by a key id."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

# A fixed, application-wide salt (RFC 5869 §3.1 allows one); the purpose goes in ``info``.
SALT = b"xero-gateway key derivation v1"
KEY_BYTES = 32
KEY_ID_BYTES = 8


def hkdf_sha256(ikm: bytes, *, salt: bytes | None, info: bytes, length: int) -> bytes:
    """RFC 5869 HKDF with SHA-256: extract from ``ikm`` and ``salt``, expand with ``info``."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def key_id(material: bytes) -> bytes:
    """A short public name for a key: the first bytes of a hash of it (never the key)."""
    return hashlib.sha256(b"xero-gateway key id\x00" + material).digest()[:KEY_ID_BYTES]


@dataclass(frozen=True, kw_only=True, slots=True)
class DerivedKey:
    """A key for one purpose; ``id`` says which secret it came from without revealing it."""

    purpose: str
    id: bytes
    material: bytes = field(repr=False)

    @property
    def id_hex(self) -> str:
        return self.id.hex()


def derive_key(secret: str, purpose: str) -> DerivedKey:
    """The key for ``purpose`` derived from ``secret`` (a configured secret key)."""
    if not secret:
        raise ValueError("cannot derive a key from an empty secret")
    if not purpose or "\x00" in purpose:
        raise ValueError(f"a key purpose must be a non-empty name, not {purpose!r}")
    material = hkdf_sha256(
        secret.encode("utf-8"),
        salt=SALT,
        info=b"xero-gateway/" + purpose.encode("utf-8"),
        length=KEY_BYTES,
    )
    return DerivedKey(purpose=purpose, id=key_id(material), material=material)
