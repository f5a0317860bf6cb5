"""The emulator's JWTs: access and id tokens signed with its own key (HS256), and their checks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Any

from gateway.sandbox.xero_emulator.fixtures import EmulatedUser
from gateway.sandbox.xero_emulator.grants import ACCESS_LIFETIME, Grant

ISSUER = "https://identity.xero.com"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, kw_only=True)
class Bearer:
    """A checked access token's claims, as the API routes need them."""

    user_id: str
    client_id: str
    auth_event_id: str
    scopes: tuple[str, ...]


class Signer:
    """Signs and checks the emulator's tokens with a key of its own."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key or secrets.token_bytes(32)

    def _sign(self, claims: dict[str, Any]) -> str:
        header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "emulator"}).encode())
        payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
        mac = hmac.new(self._key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        return f"{header}.{payload}.{_b64(mac)}"

    def access_token(self, grant: Grant, *, now: float) -> str:
        """An access token shaped like Xero's: 30 minutes, naming the consent and the user."""
        return self._sign(
            {
                "nbf": int(now),
                "exp": int(now) + ACCESS_LIFETIME,
                "iss": ISSUER,
                "aud": f"{ISSUER}/resources",
                "client_id": grant.client_id,
                "sub": grant.user_id.replace("-", ""),
                "auth_time": int(grant.auth_time),
                "xero_userid": grant.user_id,
                "global_session_id": secrets.token_hex(16),
                "jti": secrets.token_hex(16),
                "authentication_event_id": grant.auth_event_id,
                "scope": list(grant.scopes),
            }
        )

    def id_token(self, grant: Grant, user: EmulatedUser, *, now: float) -> str:
        return self._sign(
            {
                "nbf": int(now),
                "exp": int(now) + 300,
                "iss": ISSUER,
                "aud": grant.client_id,
                "iat": int(now),
                "sub": user.user_id.replace("-", ""),
                "auth_time": int(grant.auth_time),
                "xero_userid": user.user_id,
                "preferred_username": user.email,
                "email": user.email,
                "given_name": user.given_name,
                "family_name": user.family_name,
            }
        )

    def check(self, token: str, *, now: float) -> Bearer | None:
        """The claims of a well-signed, unexpired access token; None for anything else."""
        parts = token.split(".")
        if len(parts) != 3:
            return None
        mac = hmac.new(self._key, f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest()
        try:
            if not hmac.compare_digest(_unb64(parts[2]), mac):
                return None
            claims = json.loads(_unb64(parts[1]))
        except ValueError:
            return None
        if not isinstance(claims, dict) or not claims.get("nbf", 0) <= now < claims.get("exp", 0):
            return None
        scope = claims.get("scope")
        return Bearer(
            user_id=str(claims.get("xero_userid", "")),
            client_id=str(claims.get("client_id", "")),
            auth_event_id=str(claims.get("authentication_event_id", "")),
            scopes=tuple(str(s) for s in scope) if isinstance(scope, list) else (),
        )
