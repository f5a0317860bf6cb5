"""Who is calling the Xero listener: a signed-in user's session by its gateway token, or one
of an organisation's service keys; and so what the vault lets the call do."""

from __future__ import annotations

import hmac

from gateway.clock import Clock
from gateway.crypto.signing import Signer
from gateway.enforcement.decisions import Decider
from gateway.policy.decision import Decision, Outcome
from gateway.signin.sessions import (
    GATEWAY_TOKEN_PREFIX,
    SessionManager,
    hash_gateway_token,
)
from gateway.store import SessionRecord, Store, User
from gateway.xero.custody import Authority, UnverifiedSession, VerifiedSession
from gateway.xero.service_keys import authenticate_service_key, looks_like_service_key

SESSION_REF_LENGTH = 12  # characters of the session's stored hash naming it in the audit trail
_MAX_CREDENTIAL = 256
SERVICE_KEY_RECHECK_SECONDS = 5.0  # how long a service key found valid is trusted unasked


def bearer(authorization: str) -> str | None:
    """The credential of an ``Authorization: Bearer …`` header, or None."""
    scheme, _, credential = authorization.strip().partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential or len(credential) > _MAX_CREDENTIAL:
        return None
    return credential


class Callers:
    """Finds the authority behind a bearer credential.

    A gateway token is found by its hash: once per token the store names its session (the
    mapping never changes, so it is kept), then the session itself comes from the session
    manager, whose cache follows sign-outs, expiry and revocations in every process; a warm
    call runs no SQL. Using a gateway token does not count as the user's activity.

    An unverified session is held back whenever the policy decision the front would make
    for it asks for a second factor now (the decider's, remembered on the session).

    A service key found valid is trusted for ``SERVICE_KEY_RECHECK_SECONDS`` before the store
    is asked again, so a busy job's calls run no SQL either, and a revoked key stops working
    in every process within that time.
    """

    def __init__(
        self,
        store: Store,
        sessions: SessionManager,
        service_key_signer: Signer,
        clock: Clock,
        decider: Decider,
        *,
        cache_size: int = 100_000,
    ) -> None:
        self._store = store
        self._sessions = sessions
        self._signer = service_key_signer
        self._clock = clock
        self._decider = decider
        self._cache_size = cache_size
        # By gateway token: its hash and the hash of the session it names. A plain dict
        # started afresh when full (the front's cookie table does the same): an LRU's
        # bookkeeping and the token's hash on every call cost more than a miss now and then.
        # It holds tokens in memory, as the request buffers do anyway; the store sees hashes.
        self._sessions_by_token: dict[str, tuple[str, str]] = {}
        # By gateway token: the authority last found, and the session record and user it was
        # found from. The session manager replaces a record whenever its state changes, so
        # while the cached session still holds these very objects, the authority stands.
        self._found: dict[str, tuple[SessionRecord, User, Authority]] = {}
        # By service key: its authority and when the store last confirmed it.
        self._keys: dict[str, tuple[Authority, float]] = {}

    def known(self, authorization: str) -> Authority | None:
        """The authority behind a gateway token met before whose session is cached, plainly
        still on and unchanged: the warm path, without an await. None: ask ``authenticate``."""
        credential = bearer(authorization)
        if credential is None:
            return None
        found = self._found.get(credential)
        if found is None:
            key = self._keys.get(credential)
            if key is not None and self._clock() - key[1] < SERVICE_KEY_RECHECK_SECONDS:
                return key[0]
            return None
        record, user, authority = found
        live = self._sessions.warm(record.id_hash, touch=False)
        if live is None or live.record is not record or live.user is not user:
            return None
        if isinstance(authority, UnverifiedSession):
            decision = self._decider.remembered(live)
            if decision is None or _held_back(decision) != authority.held_back:
                return None
        return authority

    async def authenticate(self, authorization: str) -> Authority | None:
        """The caller's authority, or None (no credential, unknown, ended or revoked)."""
        credential = bearer(authorization)
        if credential is None:
            return None
        if credential.startswith(GATEWAY_TOKEN_PREFIX):
            return await self._session(credential)
        if looks_like_service_key(credential):
            return await self._service_key(credential)
        return None

    async def _service_key(self, raw: str) -> Authority | None:
        now = self._clock()
        authority = await authenticate_service_key(self._store, self._signer, raw, now)
        if authority is None:
            self._keys.pop(raw, None)  # only keys found valid are kept: no one can fill it
            return None
        if len(self._keys) >= self._cache_size:
            self._keys.clear()
        self._keys[raw] = (authority, now)
        return authority

    async def _session(self, token: str) -> Authority | None:
        known = self._sessions_by_token.get(token)
        if known is None:
            token_hash = hash_gateway_token(token)
            id_hash = await self._store.sessions.find_by_gateway_token(token_hash)
            if id_hash is None:
                return None
            if len(self._sessions_by_token) >= self._cache_size:
                self._sessions_by_token.clear()
            self._sessions_by_token[token] = (token_hash, id_hash)
        else:
            token_hash, id_hash = known
        # The warm path without an await; a session not cached, or perhaps over, is looked at
        # closely (and ended if it is over).
        live = self._sessions.warm(id_hash, touch=False) or await self._sessions.lookup_hash(
            id_hash, touch=False
        )
        if live is None:
            self._sessions_by_token.pop(token, None)
            self._found.pop(token, None)
            return None
        stored = live.record.gateway_token_hash
        if stored is None or not hmac.compare_digest(stored, token_hash):
            return None
        user = live.user
        ref = live.id_hash[:SESSION_REF_LENGTH]
        authority: Authority
        if live.mfa_verified:  # a remembered device is recorded as a check by "device"
            authority = VerifiedSession(user_id=user.id, org_id=user.org_id, session_ref=ref)
        else:
            held_back = _held_back(await self._decider.decide_for(live))
            authority = UnverifiedSession(
                user_id=user.id, org_id=user.org_id, session_ref=ref, held_back=held_back
            )
        if len(self._found) >= self._cache_size:
            self._found.clear()
        self._found[token] = (live.record, user, authority)
        return authority


def _held_back(decision: Decision) -> bool:
    """Whether the front would ask the session for a second factor before the app."""
    return decision.outcome in (Outcome.ENROL, Outcome.VERIFY)
