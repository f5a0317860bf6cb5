"""Who may use, and who may refresh, a Xero token set: the pure rule behind the vault.

A still-valid access token is handed to any authenticated caller. A refresh (the access token
expires within ``REFRESH_MARGIN`` seconds) is allowed only for an MFA-verified session (a
remembered device counts), or for a service key of the grant's organisation within the
policy's ``service_refresh_window`` after a verified member last used the grant. Everyone else
gets MfaRequired once the token needs a refresh.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import Enum

from gateway.errors import GatewayError


@dataclass(frozen=True, kw_only=True)
class _Session:
    """A signed-in session; ``session_ref`` names it in the audit trail (a short prefix of
    its stored hash, never the cookie)."""

    user_id: str
    org_id: str
    session_ref: str

    @property
    def actor(self) -> str:
        return f"session:{self.session_ref} (user {self.user_id})"


@dataclass(frozen=True, kw_only=True)
class VerifiedSession(_Session):
    """A session that passed a second-factor check (a remembered device counts)."""


@dataclass(frozen=True, kw_only=True)
class UnverifiedSession(_Session):
    """A session with no second-factor check behind it. ``held_back``: the policy in force
    asks it for a second factor now (2FA set up and not passed, or not set up past the
    deadline), as the front would before letting it reach the app; it may not use Xero."""

    held_back: bool = False


@dataclass(frozen=True, kw_only=True)
class ServiceKeyAuthority:
    """A background job presenting one of its organisation's service keys."""

    key_id: str
    org_id: str

    @property
    def actor(self) -> str:
        return f"service-key:{self.key_id}"


Authority = VerifiedSession | UnverifiedSession | ServiceKeyAuthority


class Verdict(Enum):
    USE = "use"  # the access token is valid: hand it out
    REFRESH = "refresh"  # it needs a refresh, and this caller may trigger one
    MFA_REQUIRED = "mfa_required"  # it needs a refresh this caller may not trigger


class MfaRequired(GatewayError):
    """The access token needs a refresh, and only an MFA-verified session (or a service key
    soon after a verified member's use) may trigger one: the listener answers 403
    ``…/mfa-required``."""


class NeedsReconnect(GatewayError):
    """Xero refused the grant's refresh token (or it was marked so before): only a new consent
    by a principal brings it back; the listener answers 409 ``…/connection-needs-reconnect``."""


class ConnectionGone(GatewayError):
    """The grant was disconnected; it is never used again."""


class ForeignGrant(GatewayError):
    """The caller's organisation is not the grant's: it may not use it."""


def verdict(
    authority: Authority,
    *,
    needs_refresh: bool,
    verified_use_at: float | None,
    service_refresh_window: timedelta | None,
    now: float,
) -> Verdict:
    """What the caller may do with a token set at ``now``.

    ``service_refresh_window`` is the strictest window of the policies that apply to the
    grant's organisation; None when none applies, and then a service key never refreshes.
    """
    if not needs_refresh:
        return Verdict.USE
    if isinstance(authority, VerifiedSession):
        return Verdict.REFRESH
    if (
        isinstance(authority, ServiceKeyAuthority)
        and service_refresh_window is not None
        and verified_use_at is not None
        and verified_use_at <= now < verified_use_at + service_refresh_window.total_seconds()
    ):
        return Verdict.REFRESH
    return Verdict.MFA_REQUIRED


def refusal(authority: Authority) -> str:
    """Why a caller may not trigger a refresh, in words for the problem body."""
    if isinstance(authority, ServiceKeyAuthority):
        return (
            "The Xero access token has expired, and no MFA-verified member of the organisation"
            " has used this connection within the policy's service refresh window; a member"
            " must sign in with their second factor and use it first."
        )
    return "The Xero access token has expired; complete your second-factor check to refresh it."
