"""The connect flow's authorization state: a single-use ``state`` bound to the session that
began the flow, with the PKCE verifier to redeem the code and where to return afterwards.

``begin`` mints a state and a verifier and stores the state's keyed hash (``Keys.xero_states``)
and the verifier sealed at rest; the authorize URL carries the state and the verifier's S256
challenge. ``complete`` takes the state back from the callback: it succeeds once, for the same
session, within ``lifetime``; anything else raises :class:`StateRefused` with its reason.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Literal

from gateway.crypto.sealing import Sealer
from gateway.crypto.signing import Signer
from gateway.errors import GatewayError
from gateway.http.redirects import safe_next
from gateway.store.xero_authorizations import (
    AuthorizationRecord,
    AuthorizationRepository,
    verifier_aad,
)
from gateway.xero.pkce import METHOD, new_verifier, s256_challenge

STATE_LIFETIME = 10 * 60.0  # seconds from the authorize redirect to the callback
STATE_BYTES = 32
MAX_STATE_LENGTH = 128  # a longer value is no state of ours: refused without a lookup
CONNECTIONS_PAGE = "/_gateway/xero"  # where the flow returns unless told a path of the app

Reason = Literal["unknown", "other-session", "expired", "used"]
_DETAIL: dict[Reason, str] = {
    "unknown": "The sign-in with Xero was not started here, or was started too long ago.",
    "other-session": "The sign-in with Xero was started in another session.",
    "expired": "The sign-in with Xero took too long.",
    "used": "This sign-in with Xero has already been completed.",
}


class StateRefused(GatewayError):
    """A callback's ``state`` does not complete a flow: ``reason`` says why (``unknown``: forged
    or purged; ``other-session``; ``expired``; ``used``: a replay). The message is fit to show
    the user, with a suggestion to start again."""

    def __init__(self, reason: Reason) -> None:
        super().__init__(f"{_DETAIL[reason]} Start connecting Xero again.")
        self.reason: Reason = reason


@dataclass(frozen=True, kw_only=True)
class StartedAuthorization:
    """What the authorize URL needs: the state and the PKCE challenge (never the verifier)."""

    state: str = field(repr=False)
    code_challenge: str
    code_challenge_method: str = METHOD
    expires_at: float


@dataclass(frozen=True, kw_only=True)
class Authorization:
    """A completed state: who began the flow, the verifier to redeem the code with, and the
    same-origin path to return to."""

    user_id: str
    org_id: str
    session_hash: str
    next_path: str
    code_verifier: str = field(repr=False)
    started_at: float


class AuthorizationStates:
    """Begins and completes connect flows over the store's ``xero_authorizations``."""

    def __init__(
        self,
        repository: AuthorizationRepository,
        *,
        sealer: Sealer,
        hasher: Signer,
        lifetime: float = STATE_LIFETIME,
    ) -> None:
        self._repository = repository
        self._sealer = sealer
        self._hasher = hasher
        self.lifetime = lifetime

    def _hashes(self, state: str) -> list[str]:
        """The state's keyed hash under every key in rotation, the current key's first."""
        message = state.encode("utf-8")
        return [Signer(key).sign(message) for key in self._hasher.keys]

    async def begin(
        self, *, session_hash: str, user_id: str, org_id: str, next_path: str | None, now: float
    ) -> StartedAuthorization:
        """Start a flow for the signed-in session: store it and return the state and challenge.
        ``next_path`` is kept only if it is a same-origin path of the app (see ``safe_next``);
        otherwise the flow returns to the connections page."""
        state = secrets.token_urlsafe(STATE_BYTES)
        verifier = new_verifier()
        state_hash = self._hasher.sign(state.encode("utf-8"))
        expires_at = now + self.lifetime
        await self._repository.add(
            AuthorizationRecord(
                state_hash=state_hash,
                session_hash=session_hash,
                user_id=user_id,
                org_id=org_id,
                sealed_verifier=self._sealer.seal(
                    verifier.encode("ascii"), verifier_aad(state_hash, session_hash)
                ),
                next_path=safe_next(next_path, CONNECTIONS_PAGE),
                created_at=now,
                expires_at=expires_at,
                used_at=None,
            )
        )
        return StartedAuthorization(
            state=state, code_challenge=s256_challenge(verifier), expires_at=expires_at
        )

    async def complete(self, state: str, *, session_hash: str, now: float) -> Authorization:
        """Spend ``state`` for the session presenting it; StateRefused unless this is its first
        use, by the session that began it, within its lifetime. A state presented by another
        session is left unspent (the session that began the flow may still finish it)."""
        if not state or len(state) > MAX_STATE_LENGTH:
            raise StateRefused("unknown")
        record = await self._repository.find(self._hashes(state))
        if record is None:
            raise StateRefused("unknown")
        if record.session_hash != session_hash:
            raise StateRefused("other-session")
        if record.used_at is not None:
            raise StateRefused("used")
        if record.expires_at <= now:
            raise StateRefused("expired")
        if not await self._repository.consume(record.state_hash, session_hash, now=now):
            raise StateRefused("used")  # another callback with this state won the race
        aad = verifier_aad(record.state_hash, record.session_hash)
        verifier = self._sealer.open(record.sealed_verifier, aad).decode("ascii")
        return Authorization(
            user_id=record.user_id,
            org_id=record.org_id,
            session_hash=record.session_hash,
            next_path=record.next_path,
            code_verifier=verifier,
            started_at=record.created_at,
        )

    async def purge(self, *, before: float) -> int:
        """Forget flows that expired before ``before``."""
        return await self._repository.purge(before=before)
