"""Wiring only: build the gateway's shared parts from a Config, and the front listener that
routes requests to them."""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Callable

import aiohttp
from aiohttp import web
from multidict import CIMultiDictProxy

from gateway.accounts.passwords import Passwords
from gateway.admin import api as admin_api
from gateway.admin import audit_pages, console, dashboard, people_pages, policy_pages
from gateway.clock import Clock, system_clock
from gateway.config import Config
from gateway.crypto.keys import Keys
from gateway.delivery.sender import Sender
from gateway.enforcement.decisions import Decider, PolicyBook
from gateway.http.paths import HEALTH_PATH, PathRules
from gateway.ops.metrics import Metrics
from gateway.proxy.forwarder import Answered, ExchangeObserver, UpstreamProxy
from gateway.runtime.limits import ClientLimits
from gateway.runtime.listeners import HttpListener
from gateway.secondfactor.service import SecondFactors, recovery_keys
from gateway.sending.service import open_code_sender
from gateway.services import SERVICES, CookieNames, Services
from gateway.signin.local import LocalAccounts
from gateway.signin.sessions import SessionLimits, SessionManager
from gateway.store import Store
from gateway.throttle import ThrottleRule
from gateway.web import (
    challenge_pages,
    gate,
    interstitial,
    operations,
    pages,
    password_api,
    password_pages,
    second_factor,
    settings_pages,
    team,
    user_routes,
    xero_connect,
    xero_webhooks,
)
from gateway.web.context import add_get, add_route, require_context
from gateway.web.templating import setup_templates
from gateway.xero.authorization import AuthorizationStates
from gateway.xero.connect import Connector
from gateway.xero.forwarding import WebhookForwarder
from gateway.xero.identity import IdentityClient
from gateway.xero.tenants import TenantReader
from gateway.xero.vault import Vault


async def open_services(
    config: Config,
    *,
    upstream: aiohttp.ClientSession,
    clock: Clock = system_clock,
    passwords: Passwords | None = None,
    policy_clock: Clock | None = None,
    xero_client: aiohttp.ClientSession | None = None,
) -> Services:
    """Open the store and build the parts every listener shares; the front listener's proxy
    sends through ``upstream``, calls to Xero's identity endpoints through ``xero_client``
    (``upstream`` unless given). Policies are decided at ``policy_clock`` (``clock`` unless
    given). The caller closes them with ``close_services``."""
    store = await Store.open(config.store.path, busy_timeout_ms=config.store.busy_timeout_ms)
    try:
        return await _build_services(
            config,
            store,
            upstream,
            clock,
            passwords or Passwords(),
            policy_clock or clock,
            xero_client or upstream,
        )
    except BaseException:
        await store.close()
        raise


async def _build_services(
    config: Config,
    store: Store,
    upstream: aiohttp.ClientSession,
    clock: Clock,
    passwords: Passwords,
    policy_clock: Clock,
    xero_client: aiohttp.ClientSession,
) -> Services:
    trusted = tuple(ipaddress.ip_network(n, strict=False) for n in config.security.trusted_proxies)
    sessions = SessionManager(
        store,
        SessionLimits(
            idle=config.session.idle_timeout_minutes * 60,
            absolute=config.session.absolute_timeout_hours * 3600,
        ),
        clock,
    )
    metrics = Metrics(
        sessions=lambda: float(sessions.cached_count()),
        statements=lambda: float(store.db.statement_count),
        xero_tenants=config.xero_proxy.metrics_tenants,
    )
    cookies = CookieNames.for_config(config.security.cookie_secure)
    proxy = UpstreamProxy(
        upstream,
        config.upstream.url,
        max_body_size=config.server.max_body_size,
        trusted_proxies=trusted,
        forwarding=True,
        observer=ExchangeObserver(answered=_upstream_latency(metrics.observe_upstream)),
        ws_recheck_seconds=config.upstream.websocket_recheck_seconds,
        clock=clock,
        private_cookies=cookies.private,
        drop_underscore_headers=config.upstream.drop_underscore_headers,
    )
    await sessions.follow_revocations()  # from here on, every revocation is followed
    await sessions.follow_changes()  # and every second-factor check and dismissal
    book = PolicyBook(store)
    await book.refresh()
    throttle = config.throttle
    security = config.security
    keys = Keys.derive(security.secret_key, security.previous_secret_keys)
    sending = open_code_sender(config, store=store, clock=clock, keys=keys)
    xero = _xero_parts(
        config,
        store,
        xero_client,
        keys=keys,
        clock=clock,
        policy_clock=policy_clock,
        book=book,
        email=sending.email,
        metrics=metrics,
    )
    return Services(
        config=config,
        store=store,
        clock=clock,
        policy_clock=policy_clock,
        sessions=sessions,
        decider=Decider(book, store, policy_clock),
        second_factors=SecondFactors(
            store,
            sealer=keys.at_rest,
            recovery_keys=recovery_keys(security.secret_key, security.previous_secret_keys),
            clock=clock,
            sending=sending,
            issuer=security.totp_issuer,
        ),
        identity=LocalAccounts(store.users, passwords),
        passwords=passwords,
        proxy=proxy,
        metrics=metrics,
        keys=keys,
        cookies=cookies,
        public_paths=PathRules(config.upstream.public_paths),
        trusted_proxies=trusted,
        account_throttle=ThrottleRule(
            max_failures=throttle.account_failures,
            window=throttle.window_minutes * 60,
            lockout=throttle.lockout_minutes * 60,
            slowdown=min(throttle.slowdown_seconds, throttle.lockout_minutes * 60),
        ),
        address_throttle=ThrottleRule(
            max_failures=throttle.address_failures,
            window=throttle.window_minutes * 60,
            lockout=throttle.lockout_minutes * 60,
        ),
        sending=sending,
        xero_authorizations=AuthorizationStates(
            store.xero_authorizations, sealer=keys.at_rest, hasher=keys.xero_states
        ),
        xero_webhooks=_webhook_forwarder(config, store, upstream, keys, clock, metrics),
        xero_tokens=xero.tokens,
        xero_tenants=xero.tenants,
        xero_vault=xero.vault,
        xero_connector=xero.connector,
    )


@dataclasses.dataclass(frozen=True, kw_only=True)
class _XeroParts:
    tokens: IdentityClient
    tenants: TenantReader
    vault: Vault
    connector: Connector


def _xero_parts(
    config: Config,
    store: Store,
    client: aiohttp.ClientSession,
    *,
    keys: Keys,
    clock: Clock,
    policy_clock: Clock,
    book: PolicyBook,
    email: Sender | None,
    metrics: Metrics,
) -> _XeroParts:
    """The Xero custody parts: the token endpoint, tenant reads, the vault and the connector.
    The vault's service refresh window is the strictest of the policies applying to the
    organisation at the time policies are decided."""
    tokens = IdentityClient(config.xero, client)
    tenants = TenantReader(config.xero)
    vault = Vault(
        store=store,
        endpoint=tokens,
        sealer=keys.at_rest,
        clock=clock,
        service_refresh_window=lambda org_id: book.service_refresh_window(org_id, policy_clock()),
        email=email,
        metrics=metrics,
    )
    connector = Connector(
        store=store, vault=vault, endpoint=tokens, reader=tenants, clock=clock, refresh=book.refresh
    )
    return _XeroParts(tokens=tokens, tenants=tenants, vault=vault, connector=connector)


def _webhook_forwarder(
    config: Config,
    store: Store,
    client: aiohttp.ClientSession,
    keys: Keys,
    clock: Clock,
    metrics: Metrics,
) -> WebhookForwarder | None:
    """What sends Xero's webhook events on to the app (through the upstream client), if the
    config names where."""
    url = config.xero.webhook_forward_url
    if not url:
        return None
    return WebhookForwarder(
        store.xero_webhooks,
        store.audit,
        client=client,
        url=url,
        signer=keys.webhook_forward,
        clock=clock,
        count=lambda result: metrics.xero_webhooks.labels(result).inc(),
    )


def _upstream_latency(observe: Callable[[int, float], None]) -> Answered:
    """The front listener's view of its exchanges: the app's latency by status, as metrics."""

    def answered(
        _request: web.Request, status: int, _headers: CIMultiDictProxy[str], seconds: float
    ) -> None:
        observe(status, seconds)

    return answered


async def close_services(services: Services) -> None:
    """Write what is held back and close the store: once no listener or task uses them.
    Sends still running are cancelled first."""
    await services.sending.close()
    await services.sessions.flush()
    await services.store.close()


def create_front_app(services: Services) -> web.Application:
    """The front listener's application: the gateway's own pages and APIs under /_gateway/,
    everything else through the gate to the app. It opens and closes nothing shared."""
    app = web.Application(client_max_size=64 * 1024)
    app[SERVICES] = services
    setup_templates(app)
    add_get(app, "/_gateway/login", pages.login_page)
    add_route(app, "POST", "/_gateway/login", pages.login_submit)
    add_get(app, "/_gateway/logout", pages.logout_page)
    add_route(app, "POST", "/_gateway/logout", pages.logout_submit)
    add_get(app, HEALTH_PATH, operations.health)
    add_get(app, "/_gateway/metrics", operations.metrics)
    add_get(app, operations.FAVICON_PATH, operations.favicon)
    interstitial.add_routes(app)
    second_factor.add_routes(app)
    challenge_pages.add_routes(app)
    team.add_routes(app)
    settings_pages.add_routes(app)
    user_routes.add_routes(app)
    password_pages.add_routes(app)
    password_api.add_routes(app)
    xero_webhooks.add_routes(app)
    xero_connect.add_routes(app)
    admin_api.add_routes(app)
    console.add_routes(app)
    dashboard.add_routes(app)
    policy_pages.add_routes(app)
    people_pages.add_routes(app)
    audit_pages.add_routes(app)
    # [\s\S]: a decoded newline in the path is still the gateway's to answer (".*" stops at one).
    add_route(app, "*", "/_gateway/{tail:[\\s\\S]*}", operations.not_found)
    add_route(app, "*", "/{tail:[\\s\\S]*}", gate.gate)
    require_context(app)
    return app


def front_listener(services: Services) -> HttpListener:
    """The listener browsers reach: ``[server]`` host, port and limits."""
    server = services.config.server
    return HttpListener(
        "front",
        create_front_app(services),
        host=server.host,
        port=server.port,
        max_line_size=server.max_line_size,
        max_field_size=server.max_field_size,
        idle_timeout=server.idle_timeout,
        limits=ClientLimits.for_server(server, services.metrics.refuse_connection),
    )
