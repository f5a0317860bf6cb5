"""Keyed hashes of short secrets, bound to whose they are and what they are for.

A one-time or recovery code is stored only as HMAC-SHA256 under a server key kept outside
the database, over the code and everything it is bound to (user, purpose, destination), so a
copy of the database alone cannot test guesses, and a code typed for another user, step or
destination never matches.
"""

from __future__ import annotations

import hashlib
import hmac
import json

MIN_KEY_BYTES = 32


def bound_digest(key: bytes, code: str, *binding: str) -> str:
    """HMAC-SHA256 (hex) of ``code`` bound to ``binding``; the parts are JSON-framed, so no
    two different sets of parts hash the same input."""
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"a code key must be at least {MIN_KEY_BYTES} bytes")
    framed = json.dumps([*binding, code], ensure_ascii=False, separators=(",", ":"))
    return hmac.new(key, framed.encode("utf-8"), hashlib.sha256).hexdigest()


def digests_match(a: str, b: str) -> bool:
    """Compare two digests in constant time."""
    return hmac.compare_digest(a.encode("ascii", "replace"), b.encode("ascii", "replace"))
