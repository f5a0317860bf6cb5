"""Connecting an organisation to Xero, and disconnecting it: the shell around Xero's calls.

Connect (after the callback's state is spent): exchange the code with the flow's PKCE verifier,
read the consent's connections (``authEventId``) and each tenant's Organisation, and only then
store anything: the grant and its connections (the vault, one transaction), then each tenant's
facts in the tenants table (source 'xero', audited), so the policy scope follows. If anything
fails after the exchange, the fresh refresh token is revoked at Xero and whatever was stored
is marked disconnected: nothing is left half-connected.

Disconnect: delete each connection at Xero while the stored access token is valid (a refresh
would need a verified session, and the revocation removes the consent's connections anyway),
revoke the refresh token (the vault), unlink the tenants no other connection reaches, audit.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from gateway.audit import XeroConnected, XeroDisconnected
from gateway.clock import Clock
from gateway.errors import GatewayError, NotFoundError, StoreError
from gateway.store import Store
from gateway.store.records import AuditEntry
from gateway.store.xero import NewConnection, XeroGrant
from gateway.xero.authorization import Authorization
from gateway.xero.tenant_links import link_from_xero, unlink_if_unreached
from gateway.xero.tenants import OrganisationFacts, TenantConnection, TenantReader
from gateway.xero.tokens import (
    InvalidGrant,
    TokenEndpoint,
    TokenSet,
    XeroError,
    XeroRejected,
    XeroUnavailable,
)
from gateway.xero.vault import Vault

log = logging.getLogger(__name__)

ORGANISATION = "ORGANISATION"  # the tenant type that has an Organisation (not PRACTICEMANAGER)
Refresh = Callable[[], Awaitable[object]]


def consent_tenants(
    found: Sequence[TenantConnection], auth_event_id: str | None
) -> list[TenantConnection]:
    """The organisations among Xero's connections that one consent (``authEventId``) made."""
    event = auth_event_id.lower() if auth_event_id else None
    return [
        c
        for c in found
        if (event is None or c.auth_event_id.lower() == event)
        and c.tenant_type.upper() == ORGANISATION
    ]


class ConnectFailed(GatewayError):
    """The connect flow could not finish; nothing was kept. The message is for the user;
    ``status`` the HTTP status to show it with, ``slug`` the problem type."""

    def __init__(self, message: str, *, status: int, slug: str) -> None:
        super().__init__(message)
        self.status = status
        self.slug = slug


@dataclass(frozen=True, kw_only=True)
class Connected:
    """A stored consent: the grant and the facts of each tenant it connects."""

    grant: XeroGrant
    tenants: tuple[OrganisationFacts, ...]
    manual_kept: tuple[str, ...]  # tenant ids whose manual link was left as the override


def _failed_at_xero(exc: XeroError, doing: str) -> ConnectFailed:
    if isinstance(exc, XeroUnavailable):
        return ConnectFailed(
            f"Xero did not answer while {doing}; nothing was stored. Try connecting again in a"
            " moment.",
            status=503,
            slug="xero-unavailable",
        )
    if isinstance(exc, InvalidGrant):
        return ConnectFailed(
            "Xero did not accept this sign-in (it was used already or took too long); nothing"
            " was stored. Start connecting Xero again.",
            status=400,
            slug="xero-refused",
        )
    return ConnectFailed(
        f"Xero refused while {doing}; nothing was stored. Start connecting Xero again, and"
        " allow access to at least one organisation.",
        status=502,
        slug="xero-refused",
    )


class Connector:
    """Connects and disconnects an organisation's Xero tenants (one per process).

    ``refresh`` is called after any change to tenant facts (the policy book's refresh), so this
    process decides with them at once; other processes follow the facts version.
    """

    def __init__(
        self,
        *,
        store: Store,
        vault: Vault,
        endpoint: TokenEndpoint,
        reader: TenantReader,
        clock: Clock,
        refresh: Refresh | None = None,
    ) -> None:
        self._store = store
        self._vault = vault
        self._endpoint = endpoint
        self._reader = reader
        self._clock = clock
        self._refresh = refresh

    async def connect(
        self, authorization: Authorization, code: str, *, audit: AuditEntry
    ) -> Connected:
        """Finish a consent for the organisation that began it; ConnectFailed if it cannot."""
        now = self._clock()
        try:
            tokens = await self._endpoint.exchange_code(
                code=code, code_verifier=authorization.code_verifier, now=now
            )
        except XeroError as exc:
            raise _failed_at_xero(exc, "exchanging the sign-in code") from None
        try:
            listed, facts = await self._read_consent(tokens)
            connected = await self._keep(authorization, tokens, listed, facts, audit=audit)
        except BaseException:
            await self._revoke_quietly(tokens)
            raise
        await self._facts_changed()
        return connected

    async def _read_consent(
        self, tokens: TokenSet
    ) -> tuple[list[TenantConnection], list[OrganisationFacts]]:
        event = tokens.auth_event_id
        try:
            found = await self._reader.connections(tokens.access_token, auth_event_id=event)
        except XeroError as exc:
            raise _failed_at_xero(exc, "listing the connected organisations") from None
        listed = consent_tenants(found, event)
        if not listed:
            raise ConnectFailed(
                "No Xero organisation was connected: choose at least one organisation on"
                " Xero's consent page. Nothing was stored.",
                status=400,
                slug="xero-no-organisation",
            )
        facts = []
        for connection in listed:
            try:
                facts.append(
                    await self._reader.organisation(tokens.access_token, connection.tenant_id)
                )
            except XeroError as exc:
                doing = f"reading the organisation {connection.tenant_name or 'connected'}"
                raise _failed_at_xero(exc, doing) from None
        return listed, facts

    async def _keep(
        self,
        authorization: Authorization,
        tokens: TokenSet,
        listed: Sequence[TenantConnection],
        facts: Sequence[OrganisationFacts],
        *,
        audit: AuditEntry,
    ) -> Connected:
        org_id, now = authorization.org_id, self._clock()
        before = {c.id: c.grant_id for c in await self._store.xero.connections_for_org(org_id)}
        try:
            grant = await self._vault.connect(
                org_id=org_id,
                connected_by=authorization.user_id,
                tokens=tokens,
                connections=[
                    NewConnection(
                        id=c.id,
                        tenant_id=c.tenant_id,
                        tenant_type=c.tenant_type,
                        tenant_name=f.name or c.tenant_name,
                    )
                    for c, f in zip(listed, facts, strict=True)
                ],
                now=now,
                take_over=True,
            )
        except StoreError as exc:
            log.error("a Xero consent could not be stored: %s", exc)
            raise ConnectFailed(
                "The connection could not be saved (it may belong to another organisation here);"
                " nothing was kept.",
                status=409,
                slug="xero-not-saved",
            ) from None
        replaced = tuple(sorted({before[c.id] for c in listed if c.id in before}))
        for old in replaced:
            self._vault.forget(old)
        try:
            kept = [
                await link_from_xero(self._store, org_id=org_id, facts=f, now=now, audit=audit)
                for f in facts
            ]
            event = XeroConnected(
                grant_id=grant.id,
                org_id=org_id,
                connected_by=authorization.user_id,
                tenants=tuple(f.tenant_id for f in facts),
                countries=tuple(f.country_code for f in facts),
                replaced=replaced,
            )
            await self._store.audit.record(
                event, at=now, actor=audit.actor, client_addr=audit.client_addr
            )
        except BaseException:
            await self._undo(grant, facts, now=now, audit=audit)
            raise
        manual = tuple(f.tenant_id for f, linked in zip(facts, kept, strict=True) if not linked)
        return Connected(grant=grant, tenants=tuple(facts), manual_kept=manual)

    async def _undo(
        self,
        grant: XeroGrant,
        facts: Sequence[OrganisationFacts],
        *,
        now: float,
        audit: AuditEntry,
    ) -> None:
        """A stored consent whose tenants could not all be linked: mark it disconnected and
        unlink what was linked (best effort; the caller revokes the token at Xero)."""
        self._vault.forget(grant.id)
        with contextlib.suppress(StoreError):
            await self._store.xero.mark(grant.id, "disconnected", now=now)
            for f in facts:
                await unlink_if_unreached(
                    self._store, org_id=grant.org_id, tenant_id=f.tenant_id, now=now, audit=audit
                )

    async def _revoke_quietly(self, tokens: TokenSet) -> None:
        try:
            await self._endpoint.revoke(tokens.refresh_token)
        except XeroError as exc:
            # Unused, it dies in 60 days; nothing here refers to it.
            log.warning("could not revoke an unstored Xero consent: %s", exc)

    async def _facts_changed(self) -> None:
        if self._refresh is not None:
            await self._refresh()

    async def disconnect(
        self, grant_id: str, *, audit: AuditEntry, org_id: str | None = None
    ) -> bool:
        """Disconnect a grant (of ``org_id`` when given, else NotFoundError); True if this call
        did. XeroUnavailable leaves it connected (try again)."""
        grant = await self._store.xero.get(grant_id)
        if grant is None or (org_id is not None and grant.org_id != org_id):
            raise NotFoundError(f"no Xero connection has id {grant_id!r}")
        now = self._clock()
        connections = await self._store.xero.connections(grant.id)
        deleted: list[str] = []
        if grant.status == "active":
            tokens = self._vault.open(grant)
            if not tokens.needs_refresh(now):
                for c in connections:
                    if c.status != "active":
                        continue
                    try:
                        if await self._reader.disconnect(tokens.access_token, c.id):
                            deleted.append(c.id)
                    except XeroRejected as exc:
                        # The token no longer reaches it: the revocation below settles it.
                        log.info("Xero refused to delete connection %s: %s", c.id, exc)
        if not await self._vault.disconnect(grant.id, now=now):
            return False
        unlinked = [
            c.tenant_id
            for c in connections
            if await unlink_if_unreached(
                self._store, org_id=grant.org_id, tenant_id=c.tenant_id, now=now, audit=audit
            )
        ]
        event = XeroDisconnected(
            grant_id=grant.id,
            org_id=grant.org_id,
            tenants=tuple(unlinked),
            deleted_at_xero=tuple(deleted),
        )
        await self._store.audit.record(
            event, at=now, actor=audit.actor, client_addr=audit.client_addr
        )
        await self._facts_changed()
        return True
