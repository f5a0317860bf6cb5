"""Running the gateway: the shared parts, their background tasks and the listeners, started
and stopped in order; as a process, until a stop signal."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal

import aiohttp

from gateway.accounts.passwords import Passwords
from gateway.clock import Clock, system_clock
from gateway.config import Config
from gateway.ops.logs import configure_logging
from gateway.proxy.client import open_upstream_session
from gateway.runtime.app import close_services, front_listener, open_services
from gateway.runtime.background import BackgroundTasks
from gateway.runtime.listeners import HttpListener, Listener
from gateway.runtime.xero_listener import XeroListener, xero_listener
from gateway.services import Services
from gateway.xero.governor import GovernorSettings

log = logging.getLogger(__name__)


class Gateway:
    """The running gateway. It owns what its listeners share (the services with the store
    and caches, the upstream client session, the background tasks) and its listeners, the
    front listener first.

    ``start`` starts the background tasks, then each listener in turn. ``stop`` stops every
    listener (no new requests; those in flight finish, within the listener's shutdown
    timeout), then the background tasks (the session flusher writes once more), then closes
    the shared parts. A gateway runs once: after ``stop`` it cannot be started again.
    """

    def __init__(
        self,
        services: Services,
        front: HttpListener,
        *,
        clients: tuple[aiohttp.ClientSession, ...] = (),
    ) -> None:
        self.services = services
        self.front = front
        self._listeners: list[Listener] = [front]
        self._clients = clients
        self._background = BackgroundTasks(services)
        self._started = False
        self._stopped = False

    @classmethod
    async def open(
        cls,
        config: Config,
        *,
        clock: Clock = system_clock,
        passwords: Passwords | None = None,
        policy_clock: Clock | None = None,
        xero_governor: GovernorSettings | None = None,
    ) -> Gateway:
        """Open the shared parts and build the front listener, and the Xero listener when
        ``[xero] client_id`` is set; nothing listens yet. Policies are decided at
        ``policy_clock`` (``clock`` unless given: see ``Services``); ``xero_governor``
        replaces the rate limits of ``[xero_proxy]`` (for benchmarks)."""
        upstream = open_upstream_session(
            connect_timeout=config.upstream.connect_timeout,
            read_timeout=config.upstream.read_timeout,
        )
        # Xero's identity endpoints get a client of their own: the upstream one is tuned to
        # the app (its timeouts, its connection limits), and Xero's calls bound themselves.
        xero_client = aiohttp.ClientSession()
        try:
            services = await open_services(
                config,
                upstream=upstream,
                clock=clock,
                passwords=passwords,
                policy_clock=policy_clock,
                xero_client=xero_client,
            )
        except BaseException:
            await upstream.close()
            await xero_client.close()
            raise
        xero = None
        if config.xero.client_id:
            # Xero custody is configured: the app's backend reaches Xero through the gateway,
            # and the connections page shows this process's rate governor's budgets.
            xero = xero_listener(services, governor=xero_governor)
            services = dataclasses.replace(services, xero_rate_budget=xero.rate_budget)
        gateway = cls(services, front_listener(services), clients=(upstream, xero_client))
        if xero is not None:
            gateway.add_listener(xero)
        return gateway

    @property
    def xero(self) -> XeroListener | None:
        """The Xero listener, when Xero custody is configured."""
        for listener in self._listeners:
            if isinstance(listener, XeroListener):
                return listener
        return None

    @property
    def listeners(self) -> tuple[Listener, ...]:
        return tuple(self._listeners)

    def add_listener(self, listener: Listener) -> None:
        """Serve ``listener`` too, started after those added before it."""
        if self._started:
            raise RuntimeError("listeners are added before the gateway starts")
        self._listeners.append(listener)

    async def start(self) -> None:
        """Start the background tasks and the listeners; if one cannot start (its port is
        taken), stop everything and raise its error."""
        if self._started:
            raise RuntimeError("the gateway has been started already")
        self._started = True
        await self._background.start()
        try:
            for listener in self._listeners:
                await listener.start()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        try:
            # Together: every listener stops accepting at once, then waits for its own.
            results = await asyncio.gather(
                *(listener.stop() for listener in self._listeners), return_exceptions=True
            )
            for listener, result in zip(self._listeners, results, strict=True):
                if isinstance(result, Exception):
                    log.error(
                        "the %s listener did not stop cleanly", listener.name, exc_info=result
                    )
            await self._background.stop()
        finally:
            try:
                await close_services(self.services)
            finally:
                for client in self._clients:
                    await client.close()


async def start_gateway(config: Config, *, clock: Clock = system_clock) -> Gateway:
    """Open the gateway's parts and start its listeners; the caller stops it."""
    gateway = await Gateway.open(config, clock=clock)
    await gateway.start()
    return gateway


async def wait_for_stop_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def serve(config: Config) -> int:
    configure_logging(config.logging.level, config.logging.format)
    gateway = await start_gateway(config)
    for listener in gateway.listeners:
        log.info("gateway listening", extra={"listener": listener.name, "url": listener.url})
    try:
        await wait_for_stop_signal()
    finally:
        log.info("gateway stopping")
        await gateway.stop()
    return 0
