"""Running the gateway as a process: listeners up, wait for a stop signal, shut down cleanly."""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

from gateway.clock import Clock, system_clock
from gateway.config import Config
from gateway.ops.logs import configure_logging
from gateway.runtime.app import create_app, open_services
from gateway.runtime.server import ClientLimits, start_site

log = logging.getLogger(__name__)


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


async def start_gateway(
    config: Config, *, clock: Clock = system_clock
) -> tuple[web.AppRunner, int]:
    """Open the gateway's parts and start its front listener; returns (runner, bound port)."""
    services = await open_services(config, clock=clock)
    app = create_app(services)
    return await start_site(
        app,
        config.server.host,
        config.server.port,
        max_line_size=config.server.max_line_size,
        max_field_size=config.server.max_field_size,
        idle_timeout=config.server.idle_timeout,
        limits=ClientLimits.for_server(config.server, services.metrics.refuse_connection),
    )


async def serve(config: Config) -> int:
    configure_logging(config.logging.level, config.logging.format)
    runner, port = await start_gateway(config)
    log.info("gateway listening", extra={"url": f"http://{config.server.host}:{port}"})
    try:
        await wait_for_stop_signal()
    finally:
        log.info("gateway stopping")
        await runner.cleanup()
    return 0
