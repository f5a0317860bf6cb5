"""Service keys: how an organisation's background jobs call Xero through the gateway.

A key is 256 random bits, shown once when made; the store keeps only its keyed hash
(HMAC-SHA256 under ``Keys.service_keys``). A key is found by the hash of what was presented,
never by comparing secrets, and the hash found is compared again in constant time. A key made
under a secret that has since left ``previous_secret_keys`` no longer matches: make a new one.
"""

from __future__ import annotations

import hmac
import re
import secrets

from gateway.audit import ServiceKeyCreated, ServiceKeyRevoked
from gateway.crypto.signing import Signer
from gateway.errors import GatewayError
from gateway.store import Store
from gateway.store.service_keys import ServiceKey
from gateway.xero.custody import ServiceKeyAuthority

KEY_PREFIX = "xsk_"  # marks the key as ours; not a secret
# token_urlsafe(32) is 43 characters of the URL-safe base64 alphabet (256 random bits).
_KEY_SHAPE = re.compile(r"xsk_[A-Za-z0-9_-]{43}")
MAX_NAME = 64
# last_used_at answers "is this key still in use?": minute precision is plenty, and a busy job
# does not turn every call into a write.
TOUCH_INTERVAL_SECONDS = 60.0


class ServiceKeyError(GatewayError):
    """A service key cannot be made as asked (a bad name)."""


def looks_like_service_key(raw: str) -> bool:
    """Whether ``raw`` has the shape of a service key (so a listener knows which to check)."""
    return _KEY_SHAPE.fullmatch(raw) is not None


async def create_service_key(
    store: Store, signer: Signer, *, org_id: str, name: str, now: float, by: str
) -> tuple[str, ServiceKey]:
    """Make a key for the organisation; returns the raw key (shown this once) and its record.

    ServiceKeyError for a bad name; NotFoundError for an unknown organisation.
    """
    if not name.strip() or len(name) > MAX_NAME or not name.isprintable():
        raise ServiceKeyError(f"a service key's name must be 1 to {MAX_NAME} printable characters")
    await store.organisations.get(org_id)
    raw = KEY_PREFIX + secrets.token_urlsafe(32)
    key = await store.service_keys.add(
        org_id=org_id, name=name, key_hash=signer.sign(raw.encode()), now=now, by=by
    )
    event = ServiceKeyCreated(key_id=key.id, org_id=org_id, name=name)
    await store.audit.record(event, at=now, actor=by)
    return raw, key


async def authenticate_service_key(
    store: Store, signer: Signer, raw: str, now: float
) -> ServiceKeyAuthority | None:
    """The authority a presented key carries, or None (malformed, unknown or revoked)."""
    if not looks_like_service_key(raw):
        return None  # not one of ours: no need to ask the store
    hashes = signer.tags(raw.encode())
    found = await store.service_keys.find_by_hashes(hashes)
    if found is None:
        return None
    key, stored_hash = found
    matched = False
    for candidate in hashes:  # every one compared, so the time does not say which matched
        matched |= hmac.compare_digest(candidate.encode(), stored_hash.encode())
    if not matched or key.revoked_at is not None:
        return None
    if key.last_used_at is None or now - key.last_used_at >= TOUCH_INTERVAL_SECONDS:
        await store.service_keys.touch(key.id, now)
    return ServiceKeyAuthority(key_id=key.id, org_id=key.org_id)


async def revoke_service_key(
    store: Store, key_id: str, *, org_id: str, now: float, by: str
) -> bool:
    """Revoke the organisation's key for good and audit it (NotFoundError if it has none by
    that id); False if it was revoked already (nothing is recorded again)."""
    revoked = await store.service_keys.revoke(key_id, org_id=org_id, now=now)
    if revoked:
        await store.audit.record(ServiceKeyRevoked(key_id=key_id, org_id=org_id), at=now, actor=by)
    return revoked
