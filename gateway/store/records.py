"""The store's plain records: immutable snapshots of rows, handed to and from repositories."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

ROLES = ("principal", "member")


def new_id(prefix: str) -> str:
    """A fresh random identifier such as ``usr_1f2e3d4c5b6a7988``."""
    return f"{prefix}_{secrets.token_hex(8)}"


@dataclass(frozen=True, kw_only=True, slots=True)
class Organisation:
    id: str
    name: str
    created_at: float


@dataclass(frozen=True, kw_only=True, slots=True)
class User:
    id: str
    org_id: str
    email: str
    display_name: str
    role: str
    password_hash: str
    disabled: bool
    created_at: float


@dataclass(frozen=True, kw_only=True, slots=True)
class NewUser:
    """A user not yet stored: one row of a bulk import."""

    org_id: str
    email: str
    display_name: str
    role: str
    password_hash: str


# How a second factor was checked: an authenticator app, a code by SMS or email, a recovery
# code, or a remembered device.
MFA_METHODS = ("totp", "sms", "email", "recovery", "device")


@dataclass(frozen=True, kw_only=True, slots=True)
class SecondFactor:
    """The last second-factor check a session passed: how, and when."""

    method: str
    at: float

    def __post_init__(self) -> None:
        if self.method not in MFA_METHODS:
            raise ValueError(
                f"unknown second-factor method {self.method!r}; use one of {', '.join(MFA_METHODS)}"
            )

    def fresh(self, max_age: float, now: float) -> bool:
        """Whether a factor was presented within ``max_age`` seconds of ``now``, as a step-up
        demands. A remembered device lets a sign-in through without a code, but it is not a
        factor presented, so it never makes a step-up fresh."""
        return self.method != "device" and self.at >= now - max_age


@dataclass(frozen=True, kw_only=True, slots=True)
class SessionRecord:
    """A sign-in session; only the hash of its id is ever stored."""

    id_hash: str
    user_id: str
    created_at: float
    last_seen_at: float
    expires_at: float
    csrf_secret: str
    client_addr: str | None
    ended_at: float | None
    # None until the session passes a second-factor check.
    second_factor: SecondFactor | None = None
    # When "Remind me later" was chosen in this session (it lasts for the session).
    prompt_dismissed_at: float | None = None
    # SHA-256 of the session's gateway token (None for a session older than gateway tokens).
    gateway_token_hash: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class AuditEvent:
    id: int
    at: float
    kind: str
    actor: str | None
    subject: str | None
    org_id: str | None
    client_addr: str | None
    detail: dict[str, Any]


@dataclass(frozen=True, kw_only=True, slots=True)
class ThrottleState:
    """Failed attempts counted against one key (a user, an address...) and any lock-out."""

    failures: int
    window_started_at: float
    locked_until: float


POLICY_CHANGES = ("create", "replace", "enable", "disable", "delete")


@dataclass(frozen=True, kw_only=True, slots=True)
class StoredPolicy:
    """A policy as it stands now; ``document`` is the decoded canonical JSON."""

    id: str
    version: int
    enabled: bool
    document: dict[str, Any]
    updated_at: float
    updated_by: str


@dataclass(frozen=True, kw_only=True, slots=True)
class PolicyVersion:
    """One entry of a policy's history: the change made and the state it left behind."""

    policy_id: str
    version: int
    change: str
    document: dict[str, Any]
    enabled: bool
    at: float
    by: str


@dataclass(frozen=True, kw_only=True, slots=True)
class PolicyChange:
    """What a policy write found and left: ``before`` is None for a create.

    ``after`` is ``before`` itself when the write changed nothing (the same document and flag).
    """

    before: StoredPolicy | None
    after: StoredPolicy

    @property
    def changed(self) -> bool:
        """Whether the write made a new version; a write that did not was not audited."""
        return self.before is None or self.before.version != self.after.version


TENANT_SOURCES = ("manual", "xero")


@dataclass(frozen=True, kw_only=True, slots=True)
class Tenant:
    """A Xero tenant (connection) linked to an organisation."""

    org_id: str
    tenant_id: str
    name: str
    country_code: str
    active: bool
    linked_at: float
    checked_at: float
    source: str


def tenant_facts(tenant: Tenant) -> tuple[str, str, bool, str]:
    """What a tenant change is judged on: everything but the timestamps."""
    return (tenant.name, tenant.country_code, tenant.active, tenant.source)


@dataclass(frozen=True, kw_only=True, slots=True)
class TenantChange:
    """What a link or unlink found and left: ``before`` is None when the tenant was never linked.

    A link that only confirms the tenant as it stands (a new ``checked_at``) is no change.
    """

    before: Tenant | None
    after: Tenant

    @property
    def created(self) -> bool:
        """Whether the tenant had never been linked to the organisation before."""
        return self.before is None

    @property
    def changed(self) -> bool:
        """Whether the tenant's facts changed (and the facts version with them)."""
        return self.before is None or tenant_facts(self.before) != tenant_facts(self.after)


@dataclass(frozen=True, kw_only=True, slots=True)
class AuditEntry:
    """Who asks for a store change, for the audit event written in the change's own transaction.

    The repository making the change supplies the rest of the event: its kind (which depends
    on what the transaction found), time, subject, and the ``before``/``after`` it saw; ``detail``
    adds to that (a request id, say). A write that changes nothing records no event.
    """

    actor: str
    client_addr: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True, slots=True)
class AdminToken:
    """An admin API token; the hash it is looked up by never leaves the store."""

    id: str
    name: str
    scopes: frozenset[str]
    created_at: float
    expires_at: float
    created_by: str
    revoked_at: float | None
    last_used_at: float | None

    def usable(self, now: float) -> bool:
        """Whether the token is neither revoked nor expired at ``now``."""
        return self.revoked_at is None and now < self.expires_at


# What the user-state feed says changed: a session passed a second-factor check, a session
# dismissed the prompt (and the user's dismissal count moved), or the user's factors changed.
USER_CHANGE_KINDS = ("mfa", "dismissal", "enrolment")


@dataclass(frozen=True, kw_only=True, slots=True)
class UserChange:
    """One entry of the user-state feed, which every process follows to refresh its caches."""

    id: int
    kind: str
    user_id: str
    session_hash: str | None
