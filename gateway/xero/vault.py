"""The token vault: Xero token sets sealed at rest, handed out by the custody rule, and
refreshed once per grant however many callers, processes or gateways ask at the same time.

Single flight has two halves. In one process, one asyncio task refreshes a grant and every
concurrent caller awaits it. Across processes sharing a database, the task first takes the
grant's refresh lease in the store (a conditional UPDATE); a process that finds the lease held
re-reads the grant until the holder's new version appears (bounded), and the new token set is
stored by a compare-and-swap on the version, so a refresh token is never spent twice.

Order of work in a refresh: lease, call Xero, store the answer (committed and durable), then
hand it out. A token response is never used before it is stored.

Crash safety: if the process dies after Xero answered but before the new set was committed,
the store still holds the previous version and the lease runs out after ``lease_seconds``;
the next refresh (in any process) spends the previous refresh token again. Xero forgives a
retry of the previous refresh token for 30 minutes when the response was lost, so the grant
recovers; ``lease_seconds`` is kept far below those 30 minutes. This is the only case the
grace period is relied on: two live refreshes never race for it, the lease and the CAS see
to that.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta

from gateway.audit import XeroGrantNeedsReconnect, XeroTokensRefreshed
from gateway.clock import Clock
from gateway.crypto.sealing import Sealer
from gateway.delivery.sender import DeliveryError, Message, Sender
from gateway.ops.metrics import Metrics
from gateway.store import Store
from gateway.store.records import new_id
from gateway.store.xero import (
    NewConnection,
    SealedTokens,
    XeroGrant,
    access_token_aad,
    refresh_token_aad,
)
from gateway.xero.custody import (
    Authority,
    ConnectionGone,
    ForeignGrant,
    MfaRequired,
    NeedsReconnect,
    Verdict,
    VerifiedSession,
    refusal,
    verdict,
)
from gateway.xero.tokens import InvalidGrant, TokenEndpoint, TokenSet, XeroRejected, XeroUnavailable

log = logging.getLogger(__name__)

LEASE_SECONDS = 60.0  # how long a refresh may hold the lease; far below Xero's 30-minute grace
POLL_SECONDS = 0.05  # how often a process waiting on another's refresh re-reads the grant
MAX_WAIT_SECONDS = 30.0  # how long it waits before giving up with XeroUnavailable
CACHE_SECONDS = 5.0  # how long a grant read from the store is trusted for a valid access token
VERIFIED_USE_INTERVAL = 60.0  # a verified use is written at most once a minute per grant

WindowLookup = Callable[[str], timedelta | None]
"""The strictest ``service_refresh_window`` of the policies applying to an organisation (by
id), or None when no policy applies (then service keys never refresh)."""


@dataclass(frozen=True, kw_only=True)
class _Held:
    """A grant as last read, with its token set opened, and when it was read."""

    grant: XeroGrant
    tokens: TokenSet
    read_at: float


class Vault:
    """Hands out access tokens of stored Xero grants and refreshes them under the custody rule.

    One per process (its ``owner`` names it in the store's refresh lease). ``sealer`` is
    ``Keys.at_rest``; ``email`` tells principals when a grant needs a new consent.
    """

    def __init__(
        self,
        *,
        store: Store,
        endpoint: TokenEndpoint,
        sealer: Sealer,
        clock: Clock,
        service_refresh_window: WindowLookup,
        email: Sender | None = None,
        metrics: Metrics | None = None,
        lease_seconds: float = LEASE_SECONDS,
        poll_seconds: float = POLL_SECONDS,
        max_wait_seconds: float = MAX_WAIT_SECONDS,
        cache_seconds: float = CACHE_SECONDS,
    ) -> None:
        self._store = store
        self._endpoint = endpoint
        self._sealer = sealer
        self._clock = clock
        self._window = service_refresh_window
        self._email = email
        self._metrics = metrics
        self._lease_seconds = lease_seconds
        self._poll_seconds = poll_seconds
        self._max_wait_seconds = max_wait_seconds
        self._cache_seconds = cache_seconds
        self.owner = f"vault-{secrets.token_hex(8)}"
        self._held: dict[str, _Held] = {}
        self._flights: dict[str, asyncio.Task[TokenSet]] = {}
        self._reads: dict[str, asyncio.Future[_Held]] = {}  # store reads under way, per grant
        self._noted: dict[str, float] = {}  # the last verified use this process wrote, per grant

    # Sealing

    def seal(self, grant_id: str, version: int, tokens: TokenSet) -> SealedTokens:
        """A token set sealed for the grant's ``version``."""
        return SealedTokens(
            access_sealed=self._sealer.seal(
                tokens.access_token.encode(), access_token_aad(grant_id, version)
            ),
            refresh_sealed=self._sealer.seal(
                tokens.refresh_token.encode(), refresh_token_aad(grant_id, version)
            ),
            expires_at=tokens.expires_at,
            scopes=tokens.scopes,
        )

    def open(self, grant: XeroGrant) -> TokenSet:
        """The grant's token set in the clear (for the vault, and a revocation at disconnect)."""
        sealed = grant.tokens
        return TokenSet(
            access_token=self._sealer.open(
                sealed.access_sealed, access_token_aad(grant.id, grant.version)
            ).decode(),
            refresh_token=self._sealer.open(
                sealed.refresh_sealed, refresh_token_aad(grant.id, grant.version)
            ).decode(),
            expires_at=sealed.expires_at,
            scopes=sealed.scopes,
        )

    # Storing a new consent

    async def connect(
        self,
        *,
        org_id: str,
        connected_by: str,
        tokens: TokenSet,
        connections: Sequence[NewConnection],
        now: float,
        take_over: bool = False,
    ) -> XeroGrant:
        """Store a new consent's token set (version 1) and its tenants in one transaction; it
        is committed before this returns, so before anyone uses it. ``take_over``: connections
        the organisation holds already move to this grant (a reconnect; see the store)."""
        grant_id = new_id("xgr")
        grant = await self._store.xero.add(
            grant_id=grant_id,
            org_id=org_id,
            auth_event_id=tokens.auth_event_id,
            connected_by=connected_by,
            tokens=self.seal(grant_id, 1, tokens),
            connections=connections,
            now=now,
            take_over=take_over,
        )
        self._held[grant.id] = _Held(grant=grant, tokens=tokens, read_at=now)
        return grant

    def forget(self, grant_id: str) -> None:
        """Drop what this process holds of a grant another path changed in the store."""
        self._held.pop(grant_id, None)

    async def disconnect(self, grant_id: str, *, now: float) -> bool:
        """Revoke the grant's refresh token at Xero (which also removes the consent's
        connections there), then mark it ``disconnected`` here; True if this call did so.

        XeroUnavailable leaves everything as it was (try again); a token Xero no longer knows
        (InvalidGrant, XeroRejected) is as good as revoked. A grant that needs a reconnect is
        marked without asking Xero. Auditing the change is the caller's job (it knows who).
        """
        grant = await self._store.xero.require(grant_id)
        if grant.status == "disconnected":
            return False
        if grant.status == "active":
            try:
                await self._endpoint.revoke(self.open(grant).refresh_token)
            except (InvalidGrant, XeroRejected) as exc:
                log.info("Xero did not know grant %s's refresh token any more: %s", grant_id, exc)
        marked = await self._store.xero.mark(grant_id, "disconnected", now=now)
        self._held.pop(grant_id, None)
        return marked

    # Handing out access tokens

    async def access_token(self, grant_id: str, authority: Authority, now: float) -> str:
        """The grant's access token for this caller at ``now``, refreshed first if it expires
        within a minute and the caller may trigger that.

        NotFoundError for an unknown grant; ForeignGrant if the caller's organisation is not
        the grant's; NeedsReconnect or ConnectionGone for a grant that is no longer active;
        MfaRequired when a refresh is needed and the caller may not trigger it; XeroUnavailable
        or XeroRejected when Xero could not refresh (the stored tokens are kept).
        """
        held = await self._read(grant_id, now)
        grant = held.grant
        _require_usable_by(grant, authority)
        if isinstance(authority, VerifiedSession) and self._use_to_note(grant, now):
            held = await self._note_verified_use(held, now)
        if not held.tokens.needs_refresh(now):
            return held.tokens.access_token  # the warm path: verdict() says USE to anyone
        decided = verdict(
            authority,
            needs_refresh=True,
            verified_use_at=held.grant.verified_use_at,
            # Only a refresh by a service key asks for it: not worked out on every call.
            service_refresh_window=self._window(grant.org_id),
            now=now,
        )
        if decided is Verdict.USE:
            return held.tokens.access_token
        if decided is Verdict.MFA_REQUIRED:
            raise MfaRequired(refusal(authority))
        return (await self._refresh_once(grant_id, authority, now)).access_token

    def warm_access_token(self, grant_id: str, authority: Authority, now: float) -> str | None:
        """``access_token`` when it needs no await: the grant read lately, no use to note and
        no refresh due. None: call ``access_token``. Raises as ``access_token`` for a grant
        the caller may not use."""
        held = self._held.get(grant_id)
        if held is None or now - held.read_at >= self._cache_seconds:
            return None
        grant = held.grant
        _require_usable_by(grant, authority)
        if isinstance(authority, VerifiedSession) and self._use_to_note(grant, now):
            return None
        if held.tokens.needs_refresh(now):
            return None
        return held.tokens.access_token

    def _use_to_note(self, grant: XeroGrant, now: float) -> bool:
        """Whether a verified use of ``grant`` at ``now`` is to be written (once a minute)."""
        last = max(grant.verified_use_at or 0.0, self._noted.get(grant.id, 0.0))
        return not last or now - last >= VERIFIED_USE_INTERVAL

    async def _read(self, grant_id: str, now: float) -> _Held:
        held = self._held.get(grant_id)
        if held is not None and now - held.read_at < self._cache_seconds:
            return held
        # One read of the store for every caller that finds the grant stale at once.
        reading = self._reads.get(grant_id)
        if reading is None:
            reading = asyncio.ensure_future(self._reread(grant_id, now))
            self._reads[grant_id] = reading
            reading.add_done_callback(lambda _t: self._reads.pop(grant_id, None))
        return await asyncio.shield(reading)

    async def _reread(self, grant_id: str, now: float) -> _Held:
        grant = await self._store.xero.require(grant_id)
        held = self._held.get(grant_id)
        if held is None or held.grant.version != grant.version:
            tokens = self.open(grant)
        else:
            tokens = held.tokens  # same version: the same tokens, no need to open them again
        fresh = _Held(grant=grant, tokens=tokens, read_at=now)
        self._held[grant_id] = fresh
        return fresh

    async def _note_verified_use(self, held: _Held, now: float) -> _Held:
        grant_id = held.grant.id
        self._noted[grant_id] = now  # before the write: concurrent callers need not repeat it
        await self._store.xero.record_verified_use(grant_id, now)
        grant = _replace_verified_use(held.grant, now)
        updated = _Held(grant=grant, tokens=held.tokens, read_at=held.read_at)
        self._held[grant.id] = updated
        return updated

    # Refreshing

    async def _refresh_once(self, grant_id: str, authority: Authority, now: float) -> TokenSet:
        """Join the refresh under way for this grant, or start one."""
        flight = self._flights.get(grant_id)
        if flight is None:
            flight = asyncio.create_task(self._refresh(grant_id, authority, now))
            self._flights[grant_id] = flight
            flight.add_done_callback(lambda _t: self._flights.pop(grant_id, None))
        # Shielded: a caller that gives up does not cancel the refresh the others wait for.
        return await asyncio.shield(flight)

    async def _refresh(self, grant_id: str, authority: Authority, now: float) -> TokenSet:
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + self._max_wait_seconds
        while True:
            held = await self._reread(grant_id, max(now, self._clock()))
            grant = held.grant
            _require_active(grant)
            if not held.tokens.needs_refresh(now):
                return held.tokens  # another process (or an earlier flight) refreshed it
            at = max(now, self._clock())
            claimed = await self._store.xero.claim_lease(
                grant_id,
                owner=self.owner,
                version=grant.version,
                now=at,
                until=at + self._lease_seconds,
            )
            if claimed:
                return await self._spend(held, authority, at)
            if loop.time() >= give_up_at:
                raise XeroUnavailable(
                    "another gateway process is refreshing this Xero connection and has not"
                    " finished; try again shortly"
                )
            await asyncio.sleep(self._poll_seconds)

    async def _spend(self, held: _Held, authority: Authority, now: float) -> TokenSet:
        """Spend the refresh token under the lease, and store the answer before returning it."""
        grant = held.grant
        try:
            # Bounded well inside the lease, so no other process takes it over mid-call.
            async with asyncio.timeout(self._lease_seconds / 2):
                fresh = await self._endpoint.refresh(held.tokens.refresh_token, now=now)
        except TimeoutError:
            await self._store.xero.release_lease(grant.id, owner=self.owner)
            await self._audit(grant, authority, "unavailable", grant.version, now)
            raise XeroUnavailable("Xero's token endpoint did not answer in time") from None
        except InvalidGrant:
            current = await self._reread(grant.id, now)
            if current.grant.version != grant.version:
                # Our lease ran out mid-call and another process refreshed: the grant is fine.
                await self._audit(grant, authority, "lost_race", grant.version, now)
                _require_active(current.grant)
                return current.tokens
            await self._needs_reconnect(grant, authority, now)
            raise NeedsReconnect(
                "Xero no longer accepts this connection's refresh token; a principal of the"
                " organisation must connect it to Xero again"
            ) from None
        except (XeroUnavailable, XeroRejected) as exc:
            outcome = "unavailable" if isinstance(exc, XeroUnavailable) else "rejected"
            await self._store.xero.release_lease(grant.id, owner=self.owner)
            await self._audit(grant, authority, outcome, grant.version, now)
            raise
        except BaseException:
            # Cancelled, or a fault of ours: no token was stored; free the lease for others.
            await asyncio.shield(self._store.xero.release_lease(grant.id, owner=self.owner))
            raise
        version = grant.version + 1
        won = await self._store.xero.swap_tokens(
            grant.id,
            expected_version=grant.version,
            tokens=self.seal(grant.id, version, fresh),
            now=now,
        )
        if not won:
            # Only if the lease ran out before Xero answered and another process refreshed:
            # its set is the one stored, and the one Xero will honour next.
            log.error("a Xero refresh lost the store's compare-and-swap (grant %s)", grant.id)
            await self._audit(grant, authority, "lost_race", grant.version, now)
            current = await self._reread(grant.id, now)
            _require_active(current.grant)
            return current.tokens
        await self._audit(grant, authority, "refreshed", version, now)
        await self._reread(grant.id, now)
        return fresh

    async def _audit(
        self, grant: XeroGrant, authority: Authority, outcome: str, version: int, now: float
    ) -> None:
        if self._metrics is not None:
            self._metrics.count_refresh(outcome)
        event = XeroTokensRefreshed(
            grant_id=grant.id,
            org_id=grant.org_id,
            outcome=outcome,
            allowed_by=authority.actor,
            version=version,
        )
        await self._store.audit.record(event, at=now, actor=authority.actor)

    async def _needs_reconnect(self, grant: XeroGrant, authority: Authority, now: float) -> None:
        """Mark the grant, tell the organisation's principals, and audit it."""
        marked = await self._store.xero.mark(
            grant.id, "needs_reconnect", now=now, version=grant.version
        )
        self._held.pop(grant.id, None)
        await self._audit(grant, authority, "invalid_grant", grant.version, now)
        if not marked:
            return  # another process got there first, and told the principals
        tenants = [c.tenant_name for c in await self._store.xero.connections(grant.id)]
        notified = await self._tell_principals(grant.org_id, tenants)
        event = XeroGrantNeedsReconnect(
            grant_id=grant.id,
            org_id=grant.org_id,
            tenants=tuple(tenants),
            notified=tuple(notified),
        )
        await self._store.audit.record(event, at=now, actor=authority.actor)

    async def _tell_principals(self, org_id: str, tenants: Sequence[str]) -> list[str]:
        if self._email is None:
            return []
        names = ", ".join(tenants) or "your Xero organisation"
        notified = []
        for user in await self._store.users.list(org_id):
            if user.role != "principal" or user.disabled:
                continue
            message = Message(
                to=user.email,
                subject="Reconnect Xero",
                body=(
                    f"The connection to {names} stopped working: Xero no longer accepts it."
                    " Sign in and connect Xero again to restore it."
                ),
            )
            try:
                await self._email.send(message)
            except DeliveryError as exc:
                log.warning("could not tell principal %s to reconnect Xero: %s", user.id, exc)
                continue
            notified.append(user.id)
        return notified


def _require_usable_by(grant: XeroGrant, authority: Authority) -> None:
    if authority.org_id != grant.org_id:
        raise ForeignGrant("this Xero connection belongs to another organisation")
    _require_active(grant)


def _require_active(grant: XeroGrant) -> None:
    if grant.status == "needs_reconnect":
        raise NeedsReconnect(
            "this Xero connection needs a new consent: a principal of the organisation must"
            " connect it to Xero again"
        )
    if grant.status != "active":
        raise ConnectionGone("this Xero connection was disconnected")


def _replace_verified_use(grant: XeroGrant, at: float) -> XeroGrant:
    return replace(grant, verified_use_at=at)
