"""The first leg of connecting Xero: the authorize URL, with PKCE (S256) and a state."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets

from yarl import URL

from gateway.config import XeroConfig

OFFLINE_ACCESS = "offline_access"  # without it Xero issues no refresh token
_VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")  # RFC 7636 §4.1


def new_code_verifier() -> str:
    """A fresh PKCE verifier: 64 characters from 48 random bytes."""
    return secrets.token_urlsafe(48)


def code_challenge(verifier: str) -> str:
    """The S256 challenge of ``verifier``: BASE64URL(SHA256(verifier)) without padding."""
    if not _VERIFIER.fullmatch(verifier):
        raise ValueError("a PKCE verifier is 43-128 characters of A-Z, a-z, 0-9, '-._~'")
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def requested_scopes(config: XeroConfig) -> tuple[str, ...]:
    """The configured scopes, in order, once each, always with ``offline_access``."""
    scopes = dict.fromkeys(config.scopes)
    scopes.setdefault(OFFLINE_ACCESS)
    return tuple(scopes)


def authorize_url(config: XeroConfig, *, state: str, code_verifier: str) -> str:
    """Where to send the browser to ask for consent (``[xero] authorize_url``)."""
    query = {
        "response_type": "code",
        "client_id": config.client_id,
        "redirect_uri": config.redirect_uri,
        "scope": " ".join(requested_scopes(config)),
        "state": state,
        "code_challenge": code_challenge(code_verifier),
        "code_challenge_method": "S256",
    }
    return str(URL(config.authorize_url).update_query(query))
