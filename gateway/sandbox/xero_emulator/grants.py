"""Xero's identity rules as state: codes, consents, rotating refresh tokens and connections.

Time is passed in; nothing here does I/O. The rules followed (from Xero's documentation):
codes are single-use and short-lived, refresh tokens rotate on every refresh and die after 60
days unused, and a spent refresh token answers ``invalid_grant``, except that the one spent
just before may be retried for 30 minutes while its successor is still unused (a response
that was lost), which voids that successor.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass, field

CODE_LIFETIME = 5 * 60  # seconds an authorization code lives
ACCESS_LIFETIME = 30 * 60
REFRESH_IDLE_LIFETIME = 60 * 24 * 3600
GRACE = 30 * 60  # seconds a refresh token spent just before may be retried


class GrantError(Exception):
    """The token endpoint's OAuth error: ``code`` is its ``error`` field (RFC 6749 §5.2)."""

    def __init__(self, code: str, description: str) -> None:
        super().__init__(description)
        self.code = code
        self.description = description


@dataclass(frozen=True, kw_only=True)
class PendingCode:
    client_id: str
    redirect_uri: str
    code_challenge: str | None
    scopes: tuple[str, ...]
    user_id: str
    tenant_ids: tuple[str, ...]
    issued_at: float


@dataclass
class Grant:
    """One consent (Xero's authentication event) and its refresh-token chain."""

    auth_event_id: str
    client_id: str
    user_id: str
    scopes: tuple[str, ...]
    auth_time: float
    current: str
    current_issued_at: float
    previous: str | None = None
    previous_spent_at: float = 0.0


@dataclass
class Connection:
    """A tenant connected to an app for a user, by the consent that last connected it."""

    id: str
    tenant_id: str
    auth_event_id: str
    user_id: str
    client_id: str
    created_at: float
    updated_at: float


@dataclass(frozen=True, kw_only=True)
class Issued:
    """What a successful grant hands to the token endpoint to sign and send."""

    grant: Grant
    refresh_token: str

    @property
    def with_id_token(self) -> bool:
        return "openid" in self.grant.scopes


def s256(verifier: str) -> str:
    """The PKCE S256 challenge of a verifier (RFC 7636 §4.2)."""
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _new_refresh_token() -> str:
    return secrets.token_hex(32)


@dataclass
class Grants:
    """Every code, consent, refresh token and connection the emulator knows."""

    codes: dict[str, PendingCode] = field(default_factory=dict)
    spent_codes: set[str] = field(default_factory=set)
    grants: dict[str, Grant] = field(default_factory=dict)  # by auth_event_id
    by_refresh: dict[str, str] = field(default_factory=dict)  # live token -> auth_event_id
    connections: dict[str, Connection] = field(default_factory=dict)  # by connection id

    def issue_code(self, pending: PendingCode) -> str:
        code = secrets.token_urlsafe(32)
        self.codes[code] = pending
        return code

    def exchange_code(
        self, *, code: str, client_id: str, redirect_uri: str, verifier: str | None, now: float
    ) -> Issued:
        """Spend an authorization code: a new consent, its connections and refresh token."""
        if code in self.spent_codes:
            raise GrantError("invalid_grant", "the code was used already")
        pending = self.codes.pop(code, None)
        if pending is None or now - pending.issued_at > CODE_LIFETIME:
            raise GrantError("invalid_grant", "unknown or expired code")
        self.spent_codes.add(code)
        if pending.client_id != client_id or pending.redirect_uri != redirect_uri:
            raise GrantError("invalid_grant", "the code was issued to another client or URI")
        if pending.code_challenge is not None and not (
            verifier and hmac.compare_digest(s256(verifier), pending.code_challenge)
        ):
            raise GrantError("invalid_grant", "the code_verifier does not match")
        grant = Grant(
            auth_event_id=str(uuid.uuid4()),
            client_id=client_id,
            user_id=pending.user_id,
            scopes=pending.scopes,
            auth_time=now,
            current=_new_refresh_token(),
            current_issued_at=now,
        )
        self.grants[grant.auth_event_id] = grant
        self.by_refresh[grant.current] = grant.auth_event_id
        for tenant_id in pending.tenant_ids:
            self._connect(grant, tenant_id, now)
        return Issued(grant=grant, refresh_token=grant.current)

    def _connect(self, grant: Grant, tenant_id: str, now: float) -> None:
        for existing in self.connections.values():
            if (existing.tenant_id, existing.user_id, existing.client_id) == (
                tenant_id,
                grant.user_id,
                grant.client_id,
            ):
                existing.auth_event_id = grant.auth_event_id
                existing.updated_at = now
                return
        connection = Connection(
            id=str(uuid.uuid4()),
            tenant_id=tenant_id,
            auth_event_id=grant.auth_event_id,
            user_id=grant.user_id,
            client_id=grant.client_id,
            created_at=now,
            updated_at=now,
        )
        self.connections[connection.id] = connection

    def refresh(self, *, refresh_token: str, client_id: str, now: float) -> Issued:
        """Spend a refresh token for its successor, by the rules in the module docstring."""
        event = self.by_refresh.get(refresh_token)
        grant = self.grants.get(event) if event else None
        if grant is None or grant.client_id != client_id:
            raise GrantError("invalid_grant", "unknown, spent or revoked refresh token")
        if refresh_token == grant.current:
            if now - grant.current_issued_at > REFRESH_IDLE_LIFETIME:
                raise GrantError("invalid_grant", "the refresh token expired unused")
            if grant.previous is not None:
                del self.by_refresh[grant.previous]
            grant.previous, grant.previous_spent_at = grant.current, now
        else:  # the one spent just before: a retry after a lost response
            if now - grant.previous_spent_at > GRACE:
                raise GrantError("invalid_grant", "the refresh token was spent")
            del self.by_refresh[grant.current]  # its successor, never used, is void
        grant.current, grant.current_issued_at = _new_refresh_token(), now
        self.by_refresh[grant.current] = grant.auth_event_id
        return Issued(grant=grant, refresh_token=grant.current)

    def revoke(self, *, token: str, client_id: str) -> bool:
        """Remove the consent a refresh token belongs to, and its connections."""
        event = self.by_refresh.get(token)
        grant = self.grants.get(event) if event else None
        if grant is None or grant.client_id != client_id:
            return False
        del self.grants[grant.auth_event_id]
        for live in (grant.current, grant.previous):
            if live is not None:
                self.by_refresh.pop(live, None)
        for connection_id, connection in list(self.connections.items()):
            if connection.auth_event_id == grant.auth_event_id:
                del self.connections[connection_id]
        return True

    def connections_of(
        self, *, user_id: str, client_id: str, auth_event_id: str | None = None
    ) -> list[Connection]:
        """The user's connections to the app (of one consent if ``auth_event_id`` is given)."""
        return sorted(
            (
                c
                for c in self.connections.values()
                if c.user_id == user_id
                and c.client_id == client_id
                and (auth_event_id is None or c.auth_event_id.lower() == auth_event_id.lower())
            ),
            key=lambda c: c.created_at,
        )

    def disconnect(self, *, connection_id: str, user_id: str, client_id: str) -> bool:
        connection = self.connections.get(connection_id.lower())
        if connection is None or (connection.user_id, connection.client_id) != (user_id, client_id):
            return False
        del self.connections[connection.id]
        return True

    def reaches(self, *, tenant_id: str, auth_event_id: str) -> bool:
        """Whether the consent that produced an access token connects ``tenant_id`` now."""
        return any(
            c.tenant_id == tenant_id.lower() and c.auth_event_id == auth_event_id
            for c in self.connections.values()
        )
