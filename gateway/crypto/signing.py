"""HMAC-SHA256 tags made with the current key and accepted from any key still in rotation."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from gateway.crypto.derivation import DerivedKey


class Signer:
    """Tags messages for one purpose (form tokens, keyed names): a new tag uses the current
    key; a tag made with a previous key still verifies until that key leaves the config."""

    def __init__(self, current: DerivedKey, previous: Sequence[DerivedKey] = ()) -> None:
        if any(key.purpose != current.purpose for key in previous):
            raise ValueError("every key of a signer must serve the same purpose")
        self.current = current
        self.keys = (current, *previous)

    def sign(self, message: bytes) -> str:
        """The tag of ``message`` under the current key, as 64 hex digits."""
        return hmac.new(self.current.material, message, hashlib.sha256).hexdigest()

    def tags(self, message: bytes) -> tuple[str, ...]:
        """The tag of ``message`` under every key in rotation, the current key's first: to find
        a value stored by keyed hash whichever key made it."""
        return tuple(
            hmac.new(key.material, message, hashlib.sha256).hexdigest() for key in self.keys
        )

    def verify(self, message: bytes, presented: str) -> bool:
        """Whether ``presented`` is the tag of ``message`` under any key, compared in constant
        time (every key is tried, so the time does not say which one matched)."""
        given = presented.encode("utf-8", "replace")
        matched = False
        for key in self.keys:
            expected = hmac.new(key.material, message, hashlib.sha256).hexdigest().encode()
            matched |= hmac.compare_digest(expected, given)
        return matched
