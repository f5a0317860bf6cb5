"""A Xero token set, the ways Xero's token endpoint can fail, and what the vault asks of it.

The vault and the connect flow speak to Xero's token endpoint through ``TokenEndpoint``; the
identity client implements it over HTTP, and tests point it at the Xero emulator.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Protocol

from gateway.errors import GatewayError

ACCESS_TOKEN_LIFETIME = 30 * 60  # seconds Xero's access tokens last
REFRESH_TOKEN_IDLE_LIFETIME = 60 * 24 * 3600  # seconds an unused refresh token lives
REFRESH_MARGIN = 60  # seconds before expiry an access token counts as needing a refresh


class XeroError(GatewayError):
    """Xero could not do what was asked; the message says what happened (never a token)."""


class InvalidGrant(XeroError):
    """The token endpoint answered ``invalid_grant``: the refresh token is spent, expired or
    revoked (or an authorization code was reused); only a new consent brings the connection
    back."""


class XeroUnavailable(XeroError):
    """Xero timed out, could not be reached, or answered 5xx; nothing was changed on our side.

    ``retry_after`` is Xero's ``Retry-After`` in seconds when it sent one.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class XeroRejected(XeroError):
    """Xero refused the request for a reason a retry will not mend (4xx other than
    ``invalid_grant``); ``status`` is its HTTP status."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, kw_only=True)
class TokenSet:
    """What the token endpoint returns, with the expiry made absolute (Unix seconds)."""

    access_token: str
    refresh_token: str
    expires_at: float
    scopes: tuple[str, ...]
    id_token: str | None = None

    def __repr__(self) -> str:  # tokens never reach a log through a repr
        return f"TokenSet(expires_at={self.expires_at!r}, scopes={self.scopes!r})"

    def needs_refresh(self, now: float) -> bool:
        """Whether the access token expires within ``REFRESH_MARGIN`` seconds of ``now``."""
        return self.expires_at - now <= REFRESH_MARGIN

    @property
    def auth_event_id(self) -> str | None:
        """The consent that produced this token set: the access token's
        ``authentication_event_id`` claim, or None if the token is not a JWT that carries it."""
        return jwt_claims(self.access_token).get("authentication_event_id")


def jwt_claims(token: str) -> dict[str, str]:
    """The string claims of a JWT's payload, read without checking its signature (the token
    came straight from Xero's token endpoint over TLS); {} for anything that is not a JWT."""
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (binascii.Error, ValueError):
        return {}
    if not isinstance(claims, dict):
        return {}
    return {k: v for k, v in claims.items() if isinstance(k, str) and isinstance(v, str)}


class TokenEndpoint(Protocol):
    """Xero's token endpoint, as the vault and the connect flow need it."""

    async def exchange_code(self, *, code: str, code_verifier: str, now: float) -> TokenSet:
        """Trade an authorization code (PKCE) for a token set."""
        ...

    async def refresh(self, refresh_token: str, *, now: float) -> TokenSet:
        """Spend a refresh token for a new token set; InvalidGrant, XeroUnavailable or
        XeroRejected when that fails."""
        ...

    async def revoke(self, refresh_token: str) -> None:
        """Revoke a refresh token (Xero also removes the consent's connections)."""
        ...
