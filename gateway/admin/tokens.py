"""Admin API tokens: minted once, stored as a SHA-256 hash, scoped, expiring and revocable."""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable

from gateway.audit import AdminTokenCreated, AdminTokenRevoked
from gateway.errors import GatewayError
from gateway.store import AdminToken, Store

TOKEN_PREFIX = "xgw_"  # noqa: S105 - a prefix that marks the token as ours, not a secret
# token_urlsafe(32) is 43 characters of the URL-safe base64 alphabet (256 random bits).
_TOKEN_SHAPE = re.compile(r"xgw_[A-Za-z0-9_-]{43}")

POLICIES_READ = "policies:read"
POLICIES_WRITE = "policies:write"
ORGS_WRITE = "orgs:write"
REPORTS_READ = "reports:read"
AUDIT_READ = "audit:read"
USERS_WRITE = "users:write"  # support actions on a user's account, such as a 2FA reset
ADMIN = "admin"  # every scope, including ones added later
SCOPES = frozenset(
    {POLICIES_READ, POLICIES_WRITE, ORGS_WRITE, REPORTS_READ, AUDIT_READ, USERS_WRITE}
)
# A writer must read the policy (and its ETag) before it can change it.
_IMPLIED = {POLICIES_WRITE: frozenset({POLICIES_READ})}

MAX_TTL_SECONDS = 365 * 24 * 3600
MIN_TTL_SECONDS = 60
MAX_NAME = 64
# last_used_at is for "is this token still in use?", so minute precision is plenty; touching at
# most once a minute keeps a polling script from turning every read into a write.
TOUCH_INTERVAL_SECONDS = 60.0


class AdminTokenError(GatewayError):
    """An admin token cannot be minted as asked (bad name, scope or lifetime)."""


def hash_token(raw: str) -> str:
    """The stored form of a raw token: SHA-256 in hex.

    A slow KDF would add nothing: the token carries 256 random bits, so there is no dictionary
    to try, and a fast hash lets the store look the token up by an index.
    """
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def granted(token: AdminToken) -> frozenset[str]:
    """Every scope the token grants, implied ones included."""
    if ADMIN in token.scopes:
        return SCOPES
    scopes = set(token.scopes & SCOPES)
    for scope in list(scopes):
        scopes |= _IMPLIED.get(scope, frozenset())
    return frozenset(scopes)


def allows(token: AdminToken, any_of: Iterable[str]) -> bool:
    """Whether the token grants at least one of the scopes ``any_of``."""
    return not granted(token).isdisjoint(any_of)


def actor(token: AdminToken) -> str:
    """How the audit trail and policy history name a change made with this token."""
    return f"{token.id} ({token.name})"


def _check(name: str, scopes: frozenset[str], ttl_seconds: float) -> list[str]:
    problems = []
    if not name.strip() or len(name) > MAX_NAME or not name.isprintable():
        problems.append(f"name must be 1 to {MAX_NAME} printable characters")
    if not scopes:
        problems.append("scopes must name at least one scope")
    unknown = sorted(scopes - SCOPES - {ADMIN})
    if unknown:
        known = ", ".join(sorted(SCOPES | {ADMIN}))
        problems.append(f"unknown scope(s) {', '.join(unknown)}; use {known}")
    if not MIN_TTL_SECONDS <= ttl_seconds <= MAX_TTL_SECONDS:
        problems.append(
            f"ttl_seconds must be from {MIN_TTL_SECONDS} to {MAX_TTL_SECONDS} (365 days);"
            " mint a new token rather than keep one for ever"
        )
    return problems


async def create_admin_token(
    store: Store,
    *,
    name: str,
    scopes: Iterable[str],
    ttl_seconds: float,
    now: float,
    by: str,
) -> tuple[str, AdminToken]:
    """Mint a token; returns the raw token (shown this once, never stored) and its record.

    AdminTokenError if the name, scopes or lifetime are unacceptable.
    """
    scope_set = frozenset(scopes)
    problems = _check(name, scope_set, ttl_seconds)
    if problems:
        raise AdminTokenError("; ".join(problems))
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = await store.admin_tokens.add(
        token_hash=hash_token(raw),
        name=name,
        scopes=scope_set,
        expires_at=now + ttl_seconds,
        now=now,
        by=by,
    )
    created = AdminTokenCreated(
        token_id=token.id, name=name, scopes=tuple(sorted(scope_set)), expires_at=token.expires_at
    )
    await store.audit.record(created, at=now, actor=by)
    return raw, token


async def revoke_admin_token(store: Store, token_id: str, *, now: float, by: str) -> None:
    """Revoke a token for good (NotFoundError if there is none), and audit it."""
    await store.admin_tokens.revoke(token_id, now)
    await store.audit.record(AdminTokenRevoked(token_id=token_id), at=now, actor=by)


async def authenticate(store: Store, raw: str, now: float) -> AdminToken | None:
    """The usable token ``raw`` names, or None (unknown, malformed, revoked or expired).

    Safe against timing attacks by design: the raw token is never compared, only its hash is
    looked up, and an attacker cannot steer a hash towards a stored one byte by byte.
    """
    if not _TOKEN_SHAPE.fullmatch(raw):
        return None  # not one of ours: no need to ask the store
    token = await store.admin_tokens.find_by_hash(hash_token(raw))
    if token is None or not token.usable(now):
        return None
    if token.last_used_at is None or now - token.last_used_at >= TOUCH_INTERVAL_SECONDS:
        await store.admin_tokens.touch(token.id, now)
    return token
