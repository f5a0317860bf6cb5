"""Bench servers, one per process: the fixed upstream, a bare pass-through proxy, the gateway."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from aiohttp import ClientSession, ClientTimeout, TCPConnector, web
from multidict import CIMultiDict
from yarl import URL

HOST = "127.0.0.1"  # loopback only, always
BENCH_PATH = "/bench"
# A fixed 1 KiB body, the same bytes on every response.
BODY = (b"gateway-bench-" + b"x" * 49 + b"\n") * 16
assert len(BODY) == 1024

# Per-connection headers (RFC 9110 section 7.6.1); a proxy never relays them.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "transfer-encoding",
        "upgrade",
        "trailer",
        "proxy-authenticate",
        "proxy-authorization",
    }
)

CLIENT = web.AppKey("client", ClientSession)


def create_upstream_app() -> web.Application:
    """GET /bench answers 200 with BODY; nothing else is routed."""

    async def bench(_request: web.Request) -> web.Response:
        return web.Response(body=BODY, content_type="text/plain")

    app = web.Application()
    app.router.add_get(BENCH_PATH, bench)
    return app


def create_bare_proxy_app(upstream_url: str) -> web.Application:
    """The least a streaming aiohttp reverse proxy does: no auth, no logging, no metrics."""
    base = upstream_url.rstrip("/")

    async def client_ctx(app: web.Application) -> AsyncIterator[None]:
        async with ClientSession(
            auto_decompress=False,
            connector=TCPConnector(limit=0),
            timeout=ClientTimeout(total=None, sock_connect=5, sock_read=60),
        ) as client:
            app[CLIENT] = client
            yield

    async def forward(request: web.Request) -> web.StreamResponse:
        headers = CIMultiDict(
            (k, v)
            for k, v in request.headers.items()
            if k.lower() not in HOP_BY_HOP and k.lower() != "host"
        )
        async with request.app[CLIENT].request(
            request.method,
            URL(base + request.raw_path, encoded=True),
            headers=headers,
            data=request.content if request.body_exists else None,
            allow_redirects=False,
        ) as upstream:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for name, value in upstream.headers.items():
                if name.lower() not in HOP_BY_HOP:
                    response.headers.add(name, value)
            try:
                await response.prepare(request)
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
            except ConnectionError:
                # The client went away (wrk closes its connections mid-request when its time
                # is up); never return a half-read upstream connection to the pool.
                upstream.close()
            return response

    app = web.Application()
    app.cleanup_ctx.append(client_ctx)
    app.router.add_route("*", "/{tail:.*}", forward)
    return app


Stop = Callable[[], Awaitable[None]]


async def serve_plain(app: web.Application) -> tuple[Stop, int]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0)
    await site.start()
    port = int(runner.addresses[0][1])
    return runner.cleanup, port


async def start_upstream(_args: argparse.Namespace) -> tuple[Stop, int, str]:
    stop, port = await serve_plain(create_upstream_app())
    return stop, port, ""


async def start_bare(args: argparse.Namespace) -> tuple[Stop, int, str]:
    stop, port = await serve_plain(create_bare_proxy_app(args.upstream))
    return stop, port, ""


async def start_gateway_role(args: argparse.Namespace) -> tuple[Stop, int, str]:
    # Imported here so the upstream and the bare proxy start even while the gateway does not.
    from gateway.accounts.passwords import Passwords
    from gateway.clock import system_clock
    from gateway.ops.logs import configure_logging
    from gateway.runtime.background import SESSION_FLUSH_SECONDS
    from gateway.runtime.runner import start_gateway
    from gateway.sandbox.demo import demo_config, seed_demo, seed_demo_xero
    from gateway.store import Store

    workdir = Path(args.workdir)
    config = demo_config(host=HOST, port=0, upstream_url=args.upstream, workdir=workdir)
    # WARNING: the per-request access log (INFO) stays off, as in the demo.
    quiet = dataclasses.replace(config.logging, level="WARNING")
    config = dataclasses.replace(config, logging=quiet)
    configure_logging(config.logging.level, config.logging.format)
    if not args.seeded:
        store = await Store.open(config.store.path)
        try:
            await seed_demo(store, Passwords(), system_clock())
            # The shipped policy and the AU tenant: the bench user is in scope, so every
            # request goes through a real policy decision (a prompt, let through in grace).
            await seed_demo_xero(store, system_clock())
        finally:
            await store.close()
    gateway = await start_gateway(config)
    extra = f"flush_seconds={SESSION_FLUSH_SECONDS} log_level={config.logging.level}"
    return gateway.stop, gateway.front.port, extra


async def start_xero_emulator(_args: argparse.Namespace) -> tuple[Stop, int, str]:
    """The Xero emulator with its rate limits lifted (the bench measures throughput)."""
    from xero_world import lift_emulator_limits

    from gateway.sandbox.xero_emulator import XeroEmulator

    emulator = XeroEmulator(host=HOST)
    lift_emulator_limits(emulator)
    await emulator.start()
    return emulator.stop, emulator.port, ""


async def start_xero_gateway(args: argparse.Namespace) -> tuple[Stop, int, str]:
    """The gateway with its Xero listener (limits lifted) in front of the emulator at
    ``--upstream``; prints the listener's port, the front's, and the tokens to call with."""
    from xero_world import NO_LIMITS, bench_config, open_world

    from gateway.ops.logs import configure_logging

    config = bench_config(Path(args.workdir), emulator_url=args.upstream, app_url=args.upstream)
    configure_logging("WARNING", config.logging.format)
    world = await open_world(config, governor=NO_LIMITS)
    extra = (
        f"front={world.gateway.front.port} gateway_token={world.gateway_token}"
        f" access_token={world.access_token}"
    )
    port = int(world.listener_url.rsplit(":", 1)[1])
    return world.gateway.stop, port, extra


Starter = Callable[[argparse.Namespace], Awaitable[tuple[Stop, int, str]]]
ROLES: dict[str, Starter] = {
    "upstream": start_upstream,
    "bare": start_bare,
    "gateway": start_gateway_role,
    "xero-emulator": start_xero_emulator,
    "xero-gateway": start_xero_gateway,
}


async def wait_until_stopped(max_seconds: float) -> str:
    """Block until SIGTERM/SIGINT, the parent process going away, or ``max_seconds``."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    parent = os.getppid()
    deadline = loop.time() + max_seconds
    while not stop.is_set():
        if os.getppid() != parent:
            return "parent exited"
        if loop.time() >= deadline:
            return "time limit reached"
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)
    return "signal"


async def run(args: argparse.Namespace) -> int:
    stop, port, extra = await ROLES[args.role](args)
    try:
        # The parent reads this one line to learn the bound port.
        print(f"READY {port} {extra}".rstrip(), flush=True)
        why = await wait_until_stopped(args.max_seconds)
        if why != "signal":
            print(f"bench {args.role}: stopping ({why})", file=sys.stderr, flush=True)
    finally:
        await stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("role", choices=sorted(ROLES))
    parser.add_argument("--upstream", default="", help="upstream base URL (bare, gateway)")
    parser.add_argument("--workdir", default="", help="directory for the gateway's database")
    parser.add_argument("--max-seconds", type=float, default=600.0, help="stop after this long")
    parser.add_argument(
        "--seeded",
        action="store_true",
        help="gateway: the database in --workdir is seeded already (by an earlier start)",
    )
    args = parser.parse_args(argv)
    if args.role not in ("upstream", "xero-emulator") and not args.upstream.startswith(
        f"http://{HOST}:"
    ):
        parser.error(f"--upstream must be an http://{HOST}:PORT URL")
    if args.role in ("gateway", "xero-gateway") and not args.workdir:
        parser.error("--workdir is required for the gateway")
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
