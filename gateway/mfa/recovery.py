"""Recovery codes: ten readable codes shown once, kept as keyed hashes, each usable once.

A code is ten characters of Crockford's base32 (no i, l, o or u; 50 bits from ``secrets``),
shown as ``xxxxx-xxxxx``. Typed codes are read leniently: any case, spaces and dashes
dropped, and o/i/l read as 0/1/1, as Crockford's alphabet intends.

They are hashed with HMAC-SHA256 under the server's code key, bound to the user, not with a
slow KDF: 50 random bits cannot be guessed offline without the key, which lives outside the
database; the digest of a typed code is one fixed value, so the store finds it with one
indexed lookup and spends it with one conditional UPDATE (``used_at IS NULL``), which keeps
single use atomic when two attempts race; and an attempt costs one HMAC, not ten Argon2
verifications, so guessing cannot be turned into a CPU drain.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from gateway.mfa.digests import bound_digest, digests_match

ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford's base32, lower case
CODE_COUNT = 10
CODE_LENGTH = 10  # 50 bits
_READ_AS = str.maketrans({"o": "0", "i": "1", "l": "1", "-": None, " ": None})


@dataclass(frozen=True, kw_only=True)
class RecoveryCodes:
    """A new set: ``codes`` are shown once (and offered as a file); ``digests`` are stored."""

    codes: tuple[str, ...]
    digests: tuple[str, ...]


def _new_code() -> str:
    raw = "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))
    return f"{raw[:5]}-{raw[5:]}"


def normalise_recovery_code(typed: str) -> str | None:
    """A typed code in its stored form (``xxxxx-xxxxx``), or None if it cannot be one."""
    raw = "".join(typed.lower().split()).translate(_READ_AS)
    if len(raw) != CODE_LENGTH or any(c not in ALPHABET for c in raw):
        return None
    return f"{raw[:5]}-{raw[5:]}"


def recovery_digest(*, key: bytes, user_id: str, code: str) -> str:
    """The digest kept for one of ``user_id``'s codes (``code`` in its normal form)."""
    return bound_digest(key, code, "recovery", user_id)


def issue_recovery_codes(*, key: bytes, user_id: str, count: int = CODE_COUNT) -> RecoveryCodes:
    """``count`` distinct new codes for ``user_id``, with their digests."""
    codes: list[str] = []
    while len(codes) < count:
        code = _new_code()
        if code not in codes:
            codes.append(code)
    return RecoveryCodes(
        codes=tuple(codes),
        digests=tuple(recovery_digest(key=key, user_id=user_id, code=c) for c in codes),
    )


def candidate_digests(*, keys: Sequence[bytes], user_id: str, typed: str) -> tuple[str, ...]:
    """The digests ``typed`` would be stored under, one per key (the current key first, then
    keys being rotated out): what the store looks up. Empty when it cannot be a code."""
    code = normalise_recovery_code(typed)
    if code is None:
        return ()
    return tuple(recovery_digest(key=key, user_id=user_id, code=code) for key in keys)


def matching_digest(
    *, keys: Sequence[bytes], user_id: str, typed: str, unused: Iterable[str]
) -> str | None:
    """The stored digest ``typed`` matches among the user's unused ones, or None.

    The caller spends that digest (the store marks it used only if it still is unused).
    Every stored digest is compared with every candidate, each in constant time.
    """
    candidates = candidate_digests(keys=keys, user_id=user_id, typed=typed)
    found = None
    for digest in unused:
        for candidate in candidates:
            if digests_match(candidate, digest):
                found = digest
    return found
