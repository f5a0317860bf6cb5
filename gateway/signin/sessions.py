"""Signed-in sessions: opaque ids stored hashed, server-side timeouts, cached for the hot path."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass

from cachetools import LRUCache

from gateway.clock import Clock
from gateway.errors import NotFoundError
from gateway.policy import Decision
from gateway.store import Store
from gateway.store.records import SecondFactor, SessionRecord, User

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class SessionLimits:
    """Idle and absolute lifetimes in seconds."""

    idle: float
    absolute: float


def end_reason(
    record: SessionRecord, last_seen: float, limits: SessionLimits, now: float
) -> str | None:
    """Why a session is over at ``now`` ('ended', 'expired', 'idle'), or None while it lives."""
    if record.ended_at is not None:
        return "ended"
    if now >= record.expires_at:
        return "expired"
    if now - last_seen >= limits.idle:
        return "idle"
    return None


def hash_session_id(raw_id: str) -> str:
    return hashlib.sha256(raw_id.encode("utf-8", "surrogatepass")).hexdigest()


GATEWAY_TOKEN_PREFIX = "xgt_"  # noqa: S105 - marks a gateway token; not a secret
# The label that keeps a gateway token apart from every other value made from a session id.
_GATEWAY_TOKEN_LABEL = b"xero-gateway/gateway-token/v1"


def gateway_token(raw_id: str) -> str:
    """The session's gateway token: the bearer the app's backend shows the Xero listener.

    Derived from the session's random id (256 bits, known only to the browser's cookie), so
    every gateway process that sees the cookie sends the app the same token without storing
    it, and a new id (sign-in, second-factor check) gives a new token. One-way: the app
    cannot get the session id back from it, and the store keeps only its SHA-256, so neither
    the database nor the secret key can make one.
    """
    mac = hmac.new(_GATEWAY_TOKEN_LABEL, raw_id.encode("utf-8", "surrogatepass"), "sha256")
    return GATEWAY_TOKEN_PREFIX + base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode()


def hash_gateway_token(token: str) -> str:
    """What the store keeps of a gateway token, and looks it up by."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(kw_only=True)
class LiveSession:
    """A session as the hot path needs it: the record, its user, and the last use.

    Its 2FA state (the last second-factor check, a dismissed prompt) is part of the record,
    so it is stored, and a restart or another process reads it back; the record is replaced
    when that state changes here or, through the user-state feed, elsewhere.
    """

    record: SessionRecord
    user: User
    last_seen: float
    # The last policy decision for this session: (what it was made from, the decision, until
    # when it holds). Kept by the Decider, so a warm request needs no cache lookup for it.
    decided: tuple[tuple[object, ...], Decision, float] | None = None
    # The session's gateway token, once this process has seen the cookie it comes from
    # ("" until then, and for a session older than gateway tokens).
    gateway_token: str = ""

    def attach_gateway_token(self, raw_id: str) -> str:
        """Work out (once) the gateway token of this session from its raw id, if the store
        knows the session by one; the token, or ""."""
        stored = self.record.gateway_token_hash
        if not self.gateway_token and stored is not None:
            token = gateway_token(raw_id)
            if hmac.compare_digest(hash_gateway_token(token), stored):
                self.gateway_token = token
        return self.gateway_token

    @property
    def id_hash(self) -> str:
        return self.record.id_hash

    @property
    def second_factor(self) -> SecondFactor | None:
        return self.record.second_factor

    @property
    def mfa_verified(self) -> bool:
        return self.record.second_factor is not None

    @property
    def prompt_dismissed(self) -> bool:
        """Whether "Remind me later" was chosen in this session (it lasts for the session)."""
        return self.record.prompt_dismissed_at is not None


class SessionManager:
    """Creates, finds and ends sessions. A warm lookup is a cache hit and runs no SQL:
    last use is kept in memory and written behind by ``flush``."""

    def __init__(
        self, store: Store, limits: SessionLimits, clock: Clock, *, cache_size: int = 100_000
    ) -> None:
        self._store = store
        self._limits = limits
        self._clock = clock
        self._cache: LRUCache[str, LiveSession] = LRUCache(maxsize=cache_size)
        self._dirty: dict[str, float] = {}
        self._revocations_seen: int | None = None
        self._changes_seen: int | None = None
        # Sessions the user-state feed named while a load from the store was under way: such
        # a load may have read the record before the change, so it reads it again.
        self._loads = 0
        self._changed_during_loads: set[str] = set()

    @property
    def limits(self) -> SessionLimits:
        return self._limits

    async def create(self, user: User, *, client_addr: str | None) -> tuple[str, LiveSession]:
        """Start a session; returns the raw id (for the cookie only) and the session."""
        now = self._clock()
        raw_id = secrets.token_urlsafe(32)
        token = gateway_token(raw_id)
        record = SessionRecord(
            id_hash=hash_session_id(raw_id),
            user_id=user.id,
            created_at=now,
            last_seen_at=now,
            expires_at=now + self._limits.absolute,
            csrf_secret=secrets.token_urlsafe(32),
            client_addr=client_addr,
            ended_at=None,
            gateway_token_hash=hash_gateway_token(token),
        )
        await self._store.sessions.add(record)
        live = LiveSession(record=record, user=user, last_seen=now, gateway_token=token)
        self._cache[record.id_hash] = live
        return raw_id, live

    async def lookup(self, raw_id: str) -> LiveSession | None:
        """The live session behind a cookie value, touched as used now; None if over or unknown."""
        return await self.lookup_hash(hash_session_id(raw_id))

    def warm(self, id_hash: str, *, touch: bool = True) -> LiveSession | None:
        """The cached session ``id_hash`` names, touched as used now (unless ``touch`` is
        false), when it is plainly still on: the warm path, answered without an await. None
        means "look closer" with :meth:`lookup_hash` (not cached, or perhaps over)."""
        live = self._cache.get(id_hash)
        if live is None:
            return None
        now = self._clock()
        if end_reason(live.record, live.last_seen, self._limits, now) is not None:
            return None
        if touch:
            self._touch(live, now)
        return live

    async def lookup_hash(self, id_hash: str, *, touch: bool = True) -> LiveSession | None:
        """As :meth:`lookup`, for the hash of the cookie value. Without ``touch`` the session
        is only looked at: this use does not count as activity (the Xero listener's calls
        are the app's, not the user's, and must not keep an idle session open)."""
        live = self.warm(id_hash, touch=touch)
        if live is not None:
            return live
        now = self._clock()
        live = self._cache.get(id_hash)
        if live is None:
            live = await self._load(id_hash)
            if live is None:
                return None
        # A session that looks over is looked at more closely, and ended.
        if not await self._still_on(live, live.last_seen, now):
            return None
        if touch:
            self._touch(live, now)
        return live

    def _touch(self, live: LiveSession, now: float) -> None:
        live.last_seen = now
        self._dirty[live.id_hash] = now

    async def _still_on(self, live: LiveSession, last_use: float, now: float) -> bool:
        """Judge ``live`` at ``now``, ending it (everywhere) if it is over. Before ending a
        session as idle, the stored last use is read back: another process may have served
        it since this one last did."""
        reason = end_reason(live.record, last_use, self._limits, now)
        if reason == "idle":
            stored = await self._store.sessions.get(live.id_hash)
            if stored is not None and stored.ended_at is None:
                live.last_seen = max(live.last_seen, stored.last_seen_at)
                reason = end_reason(live.record, max(last_use, live.last_seen), self._limits, now)
        if reason is None:
            return True
        self._cache.pop(live.id_hash, None)
        self._dirty.pop(live.id_hash, None)
        if reason != "ended":
            await self._store.sessions.end(live.id_hash, now)
        return False

    async def _load(self, id_hash: str) -> LiveSession | None:
        self._loads += 1
        try:
            live = await self._read(id_hash)
        finally:
            self._loads -= 1
            if not self._loads:
                self._changed_during_loads.clear()
        if live is not None:
            self._cache[id_hash] = live
        return live

    async def _read(self, id_hash: str) -> LiveSession | None:
        # Where the revocation feed stood before reading: an end recorded while this load
        # waits on the store is caught below instead of being cached back in.
        seen = self._revocations_seen
        self._changed_during_loads.discard(id_hash)
        record = await self._store.sessions.get(id_hash)
        if record is None or record.ended_at is not None:
            return None
        try:
            user = await self._store.users.get(record.user_id)
        except NotFoundError:
            return None
        if user.disabled:
            return None
        if seen is not None:
            for _, revoked_hash, revoked_user in await self._store.revocations.since(seen):
                if revoked_hash == id_hash or revoked_user == user.id:
                    return None
        while id_hash in self._changed_during_loads:  # its 2FA state moved meanwhile
            self._changed_during_loads.discard(id_hash)
            record = await self._store.sessions.get(id_hash)
            if record is None or record.ended_at is not None:
                return None
        # A use this process has not written yet counts too.
        last_seen = max(record.last_seen_at, self._dirty.get(id_hash, record.last_seen_at))
        return LiveSession(record=record, user=user, last_seen=last_seen)

    async def keep_alive(self, live: LiveSession, last_activity: float) -> bool:
        """For a long-lived request (a WebSocket): is ``live`` still signed in, given that its
        user was last active at ``last_activity``? Activity moves the session's last use up
        to that time, as a request would; a socket merely left open does not."""
        current = self._cache.get(live.id_hash)
        if current is None:  # evicted, or revoked by another process
            current = await self._load(live.id_hash)
            if current is None:
                return False
        last_use = max(current.last_seen, live.last_seen, last_activity)
        if not await self._still_on(current, last_use, self._clock()):
            return False
        live.last_seen = last_use
        self._touch(current, last_use)
        return True

    async def mark_verified(
        self, live: LiveSession, method: str, at: float
    ) -> tuple[str, LiveSession]:
        """Record in the store that ``live`` passed a second-factor check by ``method`` at
        ``at``, and give it a new id, as a sign-in does (an id known before the check is worth
        nothing after it). Returns the new raw id (for the cookie only) and the session under
        it; the old id is ended in every process. The absolute lifetime still counts from the
        sign-in. NotFoundError if the session is over; ValueError for an unknown method."""
        now = self._clock()
        reason = end_reason(live.record, live.last_seen, self._limits, now)
        if reason is not None:
            raise NotFoundError(f"the session is over ({reason}); sign in again")
        raw_id = secrets.token_urlsafe(32)
        token = gateway_token(raw_id)  # a new id, a new token: the old one ends with the id
        record = dataclasses.replace(
            live.record,
            id_hash=hash_session_id(raw_id),
            gateway_token_hash=hash_gateway_token(token),
            csrf_secret=secrets.token_urlsafe(32),
            last_seen_at=now,
            second_factor=SecondFactor(method=method, at=at),
        )
        try:
            await self._store.sessions.rotate_verified(live.id_hash, record, now)
        finally:  # rotated, or found over elsewhere: the old id is of no more use here
            self._cache.pop(live.id_hash, None)
            self._dirty.pop(live.id_hash, None)
        verified = LiveSession(record=record, user=live.user, last_seen=now, gateway_token=token)
        self._cache[record.id_hash] = verified
        return raw_id, verified

    async def dismiss_prompt(self, live: LiveSession, policy_key: str, *, limit: int | None) -> int:
        """Count a "Remind me later" against the user and mark ``live`` as having dismissed
        the prompt, both in the store (one transaction); returns the user's new count.
        DismissalLimitError (nothing changed) when the count had reached ``limit``."""
        now = self._clock()
        count = await self._store.dismissals.record(
            live.user.id, policy_key, now, limit=limit, session_hash=live.id_hash
        )
        live.record = dataclasses.replace(live.record, prompt_dismissed_at=now)
        return count

    async def end(self, id_hash: str) -> None:
        self._cache.pop(id_hash, None)
        self._dirty.pop(id_hash, None)
        await self._store.sessions.end(id_hash, self._clock())

    async def purge(self, keep_seconds: float) -> int:
        """Delete sessions that ended or expired more than ``keep_seconds`` ago."""
        return await self._store.sessions.purge(self._clock(), keep_seconds)

    async def follow_revocations(self) -> int:
        """Drop cached sessions that any process ended, or whose user was disabled, since the
        last call; returns how many were dropped. The first call only notes where the feed is."""
        if self._revocations_seen is None:
            self._revocations_seen = await self._store.revocations.latest()
            return 0
        entries = await self._store.revocations.since(self._revocations_seen)
        if not entries:
            return 0
        self._revocations_seen = entries[-1][0]
        hashes = {h for _, h, _ in entries if h is not None}
        users = {u for _, _, u in entries if u is not None}
        stale = [
            id_hash
            for id_hash, live in list(self._cache.items())
            if id_hash in hashes or live.user.id in users
        ]
        for id_hash in stale:
            self._cache.pop(id_hash, None)
            self._dirty.pop(id_hash, None)
        return len(stale)

    @property
    def revocations_seen(self) -> int | None:
        return self._revocations_seen

    async def follow_changes(self) -> set[str]:
        """Bring cached sessions up to date with the second-factor checks and dismissals any
        process stored since the last call; returns the ids of the users whose 2FA state
        changed, whose decisions must be made anew. The first call only notes where the
        feed is."""
        if self._changes_seen is None:
            self._changes_seen = await self._store.changes.latest()
            return set()
        changes = await self._store.changes.since(self._changes_seen)
        if not changes:
            return set()
        self._changes_seen = changes[-1].id
        named = {c.session_hash for c in changes if c.session_hash is not None}
        if self._loads:
            self._changed_during_loads |= named
        for id_hash in named:
            live = self._cache.get(id_hash)
            if live is None:
                continue
            while True:
                before = live.record
                record = await self._store.sessions.get(id_hash)
                if live.record is before:
                    break
                # Changed here while it was read: read it again, to have both changes.
            if record is None or record.ended_at is not None:
                self._cache.pop(id_hash, None)
                self._dirty.pop(id_hash, None)
            else:
                live.record = record
        return {c.user_id for c in changes}

    @property
    def changes_seen(self) -> int | None:
        return self._changes_seen

    def cached_count(self) -> int:
        return len(self._cache)

    async def flush(self) -> None:
        """Write the last-use times gathered since the previous flush."""
        if not self._dirty:
            return
        batch, self._dirty = self._dirty, {}
        try:
            await self._store.sessions.touch_many(batch)
        except BaseException:
            # Keep what was not written (newer uses win) so the next flush tries again.
            for id_hash, seen in batch.items():
                self._dirty[id_hash] = max(seen, self._dirty.get(id_hash, seen))
            raise

    async def run_flusher(self, interval: float) -> None:
        """Flush every ``interval`` seconds until cancelled; a final flush on the way out."""
        try:
            while True:
                await asyncio.sleep(interval)
                try:
                    await self.flush()
                except Exception:  # the flusher must survive a transient store error
                    log.exception("could not write session last-use times; will retry")
        finally:
            await self.flush()
