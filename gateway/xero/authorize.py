"""The first leg of connecting Xero: the authorize URL, with a PKCE (S256) challenge and a state."""

from __future__ import annotations

from yarl import URL

from gateway.config import XeroConfig
from gateway.xero.pkce import METHOD

OFFLINE_ACCESS = "offline_access"  # without it Xero issues no refresh token


def requested_scopes(config: XeroConfig) -> tuple[str, ...]:
    """The configured scopes, in order, once each, always with ``offline_access``."""
    scopes = dict.fromkeys(config.scopes)
    scopes.setdefault(OFFLINE_ACCESS)
    return tuple(scopes)


def authorize_url(config: XeroConfig, *, state: str, code_challenge: str) -> str:
    """Where to send the browser to ask for consent (``[xero] authorize_url``); ``code_challenge``
    is the S256 challenge of the flow's PKCE verifier (``pkce.s256_challenge``)."""
    query = {
        "response_type": "code",
        "client_id": config.client_id,
        "redirect_uri": config.redirect_uri,
        "scope": " ".join(requested_scopes(config)),
        "state": state,
        "code_challenge": code_challenge,
        "code_challenge_method": METHOD,
    }
    return str(URL(config.authorize_url).update_query(query))
