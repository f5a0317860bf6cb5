"""PKCE (RFC 7636) for the connect flow: a random code verifier and its S256 challenge."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets

VERIFIER_MIN = 43
VERIFIER_MAX = 128
VERIFIER_BYTES = 48  # token_urlsafe(48) is 64 characters: 384 bits, well inside 43-128
METHOD = "S256"
# RFC 7636 §4.1: unreserved characters only.
_VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{%d,%d}" % (VERIFIER_MIN, VERIFIER_MAX))  # noqa: UP031


def new_verifier() -> str:
    """A fresh code verifier: 64 URL-safe characters from ``secrets``."""
    return secrets.token_urlsafe(VERIFIER_BYTES)


def is_verifier(value: str) -> bool:
    """Whether ``value`` is a well-formed code verifier (43-128 unreserved characters)."""
    return _VERIFIER.fullmatch(value) is not None


def s256_challenge(verifier: str) -> str:
    """The S256 code challenge of ``verifier``: BASE64URL(SHA256(ASCII(verifier))), unpadded."""
    if not is_verifier(verifier):
        raise ValueError(
            f"a code verifier is {VERIFIER_MIN}-{VERIFIER_MAX} characters of A-Z a-z 0-9 - . _ ~"
        )
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
