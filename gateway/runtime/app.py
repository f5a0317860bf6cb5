"""Wiring only: build the gateway's parts from a Config and route requests to them."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from gateway import admin
from gateway.accounts.passwords import Passwords
from gateway.clock import Clock, system_clock
from gateway.config import Config
from gateway.crypto.keys import Keys
from gateway.enforcement.decisions import Decider, PolicyBook
from gateway.errors import StoreError
from gateway.http.paths import PathRules
from gateway.ops.metrics import Metrics
from gateway.proxy.forwarder import UpstreamProxy
from gateway.services import SERVICES, CookieNames, Services
from gateway.signin.local import LocalAccounts
from gateway.signin.sessions import SessionLimits, SessionManager
from gateway.signin.throttle import ThrottleRule
from gateway.store import Store
from gateway.web import gate, interstitial, operations, pages
from gateway.web.context import add_get, add_route, require_context
from gateway.web.templating import setup_templates

SESSION_FLUSH_SECONDS = 15.0
# How soon a change made by another process (the CLI, another replica) takes effect.
REFRESH_SECONDS = 2.0
HOUSEKEEPING_SECONDS = 3600.0
# Ended sessions stay a week for investigations; the audit trail keeps the sign-ins for good.
ENDED_SESSION_KEEP_SECONDS = 7 * 24 * 3600.0

log = logging.getLogger(__name__)


async def open_services(
    config: Config, *, clock: Clock = system_clock, passwords: Passwords | None = None
) -> Services:
    """Open the store and the upstream client; the caller closes them with ``close_services``."""
    store = await Store.open(config.store.path, busy_timeout_ms=config.store.busy_timeout_ms)
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
    )
    cookies = CookieNames.for_config(config.security.cookie_secure)
    proxy = UpstreamProxy(
        config.upstream.url,
        connect_timeout=config.upstream.connect_timeout,
        read_timeout=config.upstream.read_timeout,
        max_body_size=config.server.max_body_size,
        trusted_proxies=trusted,
        on_upstream=metrics.observe_upstream,
        ws_recheck_seconds=config.upstream.websocket_recheck_seconds,
        clock=clock,
        private_cookies=(cookies.session, cookies.login_nonce),
    )
    await sessions.follow_revocations()  # from here on, every revocation is followed
    await sessions.follow_changes()  # and every second-factor check and dismissal
    book = PolicyBook(store)
    await book.refresh()
    await proxy.start()
    passwords = passwords or Passwords()
    throttle = config.throttle
    return Services(
        config=config,
        store=store,
        clock=clock,
        sessions=sessions,
        decider=Decider(book, store, clock),
        identity=LocalAccounts(store.users, passwords),
        passwords=passwords,
        proxy=proxy,
        metrics=metrics,
        keys=Keys.derive(config.security.secret_key, config.security.previous_secret_keys),
        cookies=cookies,
        public_paths=PathRules(config.upstream.public_paths),
        trusted_proxies=trusted,
        account_throttle=ThrottleRule(
            max_failures=throttle.account_failures,
            window=throttle.window_minutes * 60,
            lockout=throttle.lockout_minutes * 60,
        ),
        address_throttle=ThrottleRule(
            max_failures=throttle.address_failures,
            window=throttle.window_minutes * 60,
            lockout=throttle.lockout_minutes * 60,
        ),
    )


async def close_services(services: Services) -> None:
    await services.sessions.flush()
    await services.proxy.close()
    await services.store.close()


def create_app(services: Services) -> web.Application:
    """The front listener's application; closing it closes ``services``."""
    app = web.Application(client_max_size=64 * 1024)
    app[SERVICES] = services
    setup_templates(app)
    add_get(app, "/_gateway/login", pages.login_page)
    add_route(app, "POST", "/_gateway/login", pages.login_submit)
    add_get(app, "/_gateway/logout", pages.logout_page)
    add_route(app, "POST", "/_gateway/logout", pages.logout_submit)
    add_get(app, "/_gateway/health", operations.health)
    add_get(app, "/_gateway/metrics", operations.metrics)
    interstitial.add_routes(app)
    admin.add_routes(app)
    # [\s\S]: a decoded newline in the path is still the gateway's to answer (".*" stops at one).
    add_route(app, "*", "/_gateway/{tail:[\\s\\S]*}", operations.not_found)
    add_route(app, "*", "/{tail:[\\s\\S]*}", gate.gate)
    require_context(app)
    app.cleanup_ctx.append(_lifecycle)
    return app


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    services = app[SERVICES]
    tasks = [
        asyncio.create_task(services.sessions.run_flusher(SESSION_FLUSH_SECONDS)),
        asyncio.create_task(_housekeeping(services)),
        asyncio.create_task(_follow_other_processes(services)),
    ]
    yield
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await close_services(services)


async def follow_other_processes(services: Services) -> None:
    """Pick up what the CLI or another replica changed: policies, tenants, ended sessions,
    sessions' second-factor checks and dismissals. One statement while nothing changed;
    the reloads only when needed."""
    book, sessions = services.decider.book, services.sessions
    marks = await services.store.change_marks()
    if marks.policies != book.set_version or marks.facts != book.facts_version:
        await book.refresh()
    if marks.revocations != sessions.revocations_seen:
        await sessions.follow_revocations()
    if marks.user_changes != sessions.changes_seen:
        services.decider.forget_users(await sessions.follow_changes())


async def _follow_other_processes(services: Services) -> None:
    while True:
        await asyncio.sleep(REFRESH_SECONDS)
        try:
            await follow_other_processes(services)
        except StoreError:
            log.exception("could not refresh from the store; keeping what is in force")


async def _housekeeping(services: Services) -> None:
    while True:
        try:
            purged = await services.sessions.purge(ENDED_SESSION_KEEP_SECONDS)
            now = services.clock()
            counters = await services.store.throttle.purge(
                now=now, window=services.account_throttle.window
            )
            await services.store.revocations.purge(now - services.sessions.limits.absolute)
            await services.store.changes.purge(now - services.sessions.limits.absolute)
            if purged or counters:
                log.info("housekeeping", extra={"sessions": purged, "throttles": counters})
        except StoreError:
            log.exception("housekeeping failed; will retry")
        await asyncio.sleep(HOUSEKEEPING_SECONDS)
