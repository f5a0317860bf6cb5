"""The running gateway's parts, bundled at start-up and reached by handlers through app state."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network

from aiohttp import web

from gateway.accounts.passwords import Passwords
from gateway.clock import Clock
from gateway.config import Config
from gateway.crypto.keys import Keys
from gateway.enforcement.decisions import Decider
from gateway.http.paths import PathRules
from gateway.ops.metrics import Metrics
from gateway.proxy.forwarder import UpstreamProxy
from gateway.secondfactor.service import SecondFactors
from gateway.sending.service import CodeSender
from gateway.signin.local import IdentitySource
from gateway.signin.sessions import LiveSession, SessionManager
from gateway.store import Store
from gateway.throttle import ThrottleRule
from gateway.xero.authorization import AuthorizationStates
from gateway.xero.connect import Connector
from gateway.xero.forwarding import WebhookForwarder
from gateway.xero.overview import RateBudget
from gateway.xero.tenants import TenantReader
from gateway.xero.tokens import TokenEndpoint
from gateway.xero.vault import Vault


@dataclass(frozen=True, kw_only=True)
class CookieNames:
    session: str
    login_nonce: str
    device: str  # a known device: this browser signed in to the account before
    remembered: str  # a remembered device: "don't ask again on this device"
    password_reset: str  # a password reset link's token, out of the address bar
    admin_session: str = "gw-admin"  # a gateway admin's session, apart from users'
    admin_login: str = "gw-admin-login"  # the admin sign-in form's CSRF nonce

    @classmethod
    def for_config(cls, secure: bool) -> CookieNames:
        # With the __Host- prefix a browser refuses the cookie unless Secure, Path=/, no Domain.
        prefix = "__Host-" if secure else ""
        return cls(
            session=f"{prefix}gw-session",
            login_nonce=f"{prefix}gw-login",
            device=f"{prefix}gw-device",
            remembered=f"{prefix}gw-mfa-device",
            password_reset=f"{prefix}gw-reset",
            admin_session=f"{prefix}gw-admin",
            admin_login=f"{prefix}gw-admin-login",
        )

    @property
    def private(self) -> tuple[str, ...]:
        """The gateway's own cookies: never passed to the app, never set by it."""
        return (
            self.session,
            self.login_nonce,
            self.device,
            self.remembered,
            self.password_reset,
            self.admin_session,
            self.admin_login,
        )


@dataclass(frozen=True, kw_only=True)
class Services:
    config: Config
    store: Store
    clock: Clock  # real time: codes, sessions, cookies, limits
    # The time policies are decided at (deadline, grace, blocked): the clock, except in the
    # demo's --at, which moves only this one so a real authenticator app keeps working.
    policy_clock: Clock
    sessions: SessionManager
    decider: Decider
    second_factors: SecondFactors
    identity: IdentitySource
    passwords: Passwords
    proxy: UpstreamProxy
    metrics: Metrics
    keys: Keys
    cookies: CookieNames
    public_paths: PathRules
    trusted_proxies: tuple[IPv4Network | IPv6Network, ...]
    account_throttle: ThrottleRule
    address_throttle: ThrottleRule
    sending: CodeSender  # one-time codes by SMS and email
    xero_authorizations: AuthorizationStates  # the Xero connect flow's single-use states
    xero_webhooks: WebhookForwarder | None  # None without [xero] webhook_forward_url
    xero_tokens: TokenEndpoint  # Xero's token and revocation endpoints ([xero])
    xero_tenants: TenantReader  # Xero's /connections and Organisation, with a caller's token
    xero_vault: Vault  # stored grants: access tokens handed out under the custody rule
    xero_connector: Connector  # connecting and disconnecting tenants (the connect flow)
    # What is left of each tenant's Xero call budget, in words, for the connections page and
    # the admin API: the rate governor's to fill; None shows nothing.
    xero_rate_budget: RateBudget | None = None


SERVICES = web.AppKey("services", Services)
SESSION = web.RequestKey("session", LiveSession)
