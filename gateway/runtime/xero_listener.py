"""Wiring the Xero listener (C5) from a Config: the token vault, the rate governor and its
retry loop, the client sessions to Xero, and the listener on ``[xero_proxy]`` host and port.

The runtime serves it beside the front listener when ``[xero] client_id`` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from dataclasses import dataclass

import aiohttp

from gateway.clock import Clock
from gateway.errors import StoreError
from gateway.proxy.client import open_upstream_session
from gateway.runtime.listeners import HttpListener
from gateway.services import Services
from gateway.store import CountedBudget, Store
from gateway.xero.calls import RetryingCaller
from gateway.xero.governor import Governor, GovernorSettings, Sleeper
from gateway.xero.identity import IdentityClient
from gateway.xero.overview import budget_words
from gateway.xero.retries import RetryPolicy
from gateway.xero.vault import Vault
from gateway.xero_api.callers import Callers
from gateway.xero_api.listener import XeroApi, create_xero_app

log = logging.getLogger(__name__)

# How often a listener writes to the store the rate budgets of the tenants it called since.
BUDGET_KEEP_SECONDS = 15.0


@dataclass(frozen=True, kw_only=True)
class XeroCustody:
    """The parts the Xero listener works with (tests reach in to watch them)."""

    vault: Vault
    governor: Governor
    caller: RetryingCaller
    api: XeroApi


class XeroListener:
    """The Xero listener: an HTTP listener that, while it runs, keeps its rate governor's
    budgets in the store for other processes to show (every ``BUDGET_KEEP_SECONDS``, and at
    shutdown), and
    once stopped also closes the governor (its waiting callers are refused) and its client
    sessions to Xero."""

    def __init__(
        self,
        http: HttpListener,
        custody: XeroCustody,
        clients: tuple[aiohttp.ClientSession, ...],
        *,
        store: Store,
        clock: Clock,
        sleep: Sleeper,
    ) -> None:
        self.http = http
        self.custody = custody
        self._clients = clients
        self._store = store
        self._clock = clock
        self._sleep = sleep
        self._kept: dict[str, int] = {}  # by tenant id: its calls started when last written
        self._keeper: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return self.http.name

    @property
    def url(self) -> str:
        return self.http.url

    @property
    def addresses(self) -> tuple[tuple[str, int], ...]:
        return self.http.addresses

    def rate_budget(self, tenant_id: str) -> str:
        """The tenant's budget as this listener's rate governor counts it, in words."""
        return budget_words(self.custody.governor.budget(tenant_id))

    async def start(self) -> None:
        await self.http.start()
        self._keeper = asyncio.create_task(self._keep_budgets())

    async def stop(self) -> None:
        try:
            if self._keeper is not None:
                self._keeper.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._keeper
                self._keeper = None
            await self.http.stop()
            await self.keep_budgets()
        finally:
            await self.custody.governor.close()
            for client in self._clients:
                await client.close()

    async def keep_budgets(self) -> None:
        """Write to the store the budgets of the tenants this listener called since it last
        wrote them (a listener that no longer calls a tenant leaves alone what a busier one
        wrote); a store failure is logged and tried again next time."""
        now = self._clock()
        due = [
            budget
            for budget in self.custody.governor.budgets()
            if self._kept.get(budget.tenant_id) != budget.started
        ]
        counted = [
            CountedBudget(tenant_id=b.tenant_id, words=budget_words(b), counted_at=now) for b in due
        ]
        try:
            await self._store.xero_budgets.save(counted)
        except StoreError as exc:
            log.warning("could not keep the Xero rate budgets in the store: %s", exc)
            return
        self._kept.update((b.tenant_id, b.started) for b in due)

    async def _keep_budgets(self) -> None:
        while True:
            await self._sleep(BUDGET_KEEP_SECONDS)
            try:
                await self.keep_budgets()
            except Exception:  # never let one surprise end the keeping for good
                log.exception("keeping the Xero rate budgets failed; trying again later")


def xero_listener(
    services: Services,
    *,
    clock: Clock | None = None,
    sleep: Sleeper = asyncio.sleep,
    port: int | None = None,
    governor: GovernorSettings | None = None,
) -> XeroListener:
    """Build the Xero listener over ``services``; call inside the running event loop.

    ``clock`` and ``sleep`` drive the governor, the retry loop and the vault (the services'
    clock and real sleeps unless given); ``port`` overrides ``[xero_proxy] port``;
    ``governor`` the limits and tiers from ``[xero_proxy]`` (Xero's own limits, unless a
    benchmark lifts them to measure the listener's own cost).
    """
    config = services.config
    clock = clock or services.clock
    identity_http = aiohttp.ClientSession()
    api_http = open_upstream_session(
        connect_timeout=config.upstream.connect_timeout,
        read_timeout=config.upstream.read_timeout,
    )
    # One vault per process, so one refresh per grant however many callers: the services'
    # own, unless a test drives the listener on a clock of its own.
    vault = services.xero_vault
    if clock is not services.clock:
        book = services.decider.book
        vault = Vault(
            store=services.store,
            endpoint=IdentityClient(config.xero, identity_http),
            sealer=services.keys.at_rest,
            clock=clock,
            service_refresh_window=lambda org_id: book.service_refresh_window(
                org_id, services.policy_clock()
            ),
            email=services.sending.email,
            metrics=services.metrics,
        )
    proxy = config.xero_proxy
    settings = governor if governor is not None else GovernorSettings.from_config(proxy)
    rates = Governor(settings, clock=clock, sleep=sleep, metrics=services.metrics)
    caller = RetryingCaller(
        rates, RetryPolicy.from_config(proxy), clock=clock, sleep=sleep, random=random.random
    )
    api = XeroApi(
        store=services.store,
        callers=Callers(
            services.store,
            services.sessions,
            services.keys.service_keys,
            clock,
            services.decider,
        ),
        vault=vault,
        caller=caller,
        client=api_http,
        api_url=config.xero.api_url,
        clock=clock,
        metrics=services.metrics,
        max_wait=proxy.max_wait,
        max_body_size=config.server.max_body_size,
    )
    server = config.server
    http = HttpListener(
        "xero",
        create_xero_app(api, services.metrics, max_body_size=server.max_body_size),
        host=proxy.host,
        port=proxy.port if port is None else port,
        max_line_size=server.max_line_size,
        max_field_size=server.max_field_size,
        idle_timeout=server.idle_timeout,
    )
    custody = XeroCustody(vault=vault, governor=rates, caller=caller, api=api)
    return XeroListener(
        http, custody, (identity_http, api_http), store=services.store, clock=clock, sleep=sleep
    )
