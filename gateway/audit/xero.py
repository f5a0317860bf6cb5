"""Audit events of Xero custody and webhooks: never a token, only which grant and who allowed it."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.audit.event import Event

# Xero token custody: never a token, only which grant and who allowed it.


@dataclass(frozen=True, kw_only=True)
class XeroTokensRefreshed(Event):
    """A refresh of a grant's token set, whatever came of it."""

    kind = "xero.tokens_refreshed"
    subject_field = "grant_id"
    grant_id: str
    org_id: str
    outcome: str  # refreshed, invalid_grant, unavailable, rejected, lost_race
    allowed_by: str  # the session or service key whose request triggered it
    version: int  # the token-set version after the refresh (unchanged unless refreshed)


@dataclass(frozen=True, kw_only=True)
class XeroGrantNeedsReconnect(Event):
    """Xero refused a grant's refresh token: its connections wait for a new consent."""

    kind = "xero.needs_reconnect"
    subject_field = "grant_id"
    grant_id: str
    org_id: str
    tenants: tuple[str, ...]
    notified: tuple[str, ...]  # user ids of the principals told by email


@dataclass(frozen=True, kw_only=True)
class XeroConnected(Event):
    """A principal connected Xero tenants: a new consent stored as a grant."""

    kind = "xero.connected"
    subject_field = "grant_id"
    grant_id: str
    org_id: str
    connected_by: str  # the user id of the principal who consented
    tenants: tuple[str, ...]  # the tenant ids of the consent
    countries: tuple[str, ...]  # each tenant's Organisation.CountryCode, in the same order
    replaced: tuple[str, ...]  # earlier grants whose connections this consent took over


@dataclass(frozen=True, kw_only=True)
class XeroDisconnected(Event):
    """A grant was disconnected: its refresh token revoked at Xero and its tenants unlinked."""

    kind = "xero.disconnected"
    subject_field = "grant_id"
    grant_id: str
    org_id: str
    tenants: tuple[str, ...]  # tenant ids whose link (source xero) ended
    deleted_at_xero: tuple[str, ...]  # connection ids deleted at Xero before the revocation


@dataclass(frozen=True, kw_only=True)
class XeroConnectionRemoved(Event):
    """Xero no longer lists a connection (it was disconnected on Xero's side)."""

    kind = "xero.connection_removed"
    subject_field = "connection_id"
    connection_id: str
    org_id: str
    grant_id: str
    tenant_id: str


@dataclass(frozen=True, kw_only=True)
class ServiceKeyCreated(Event):
    kind = "service_key.created"
    subject_field = "key_id"
    key_id: str
    org_id: str
    name: str


@dataclass(frozen=True, kw_only=True)
class ServiceKeyRevoked(Event):
    kind = "service_key.revoked"
    subject_field = "key_id"
    key_id: str
    org_id: str


# Xero webhooks: the app could not be given an event, however often it was tried.


@dataclass(frozen=True, kw_only=True)
class WebhookAbandoned(Event):
    kind = "xero.webhook_abandoned"
    subject_field = "event_id"
    event_id: str  # the gateway's id of the event (X-Gateway-Webhook-Id)
    tenant_id: str
    event_category: str
    event_type: str
    resource_id: str
    attempts: int
    error: str  # what the last attempt met
