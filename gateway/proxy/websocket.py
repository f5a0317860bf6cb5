"""WebSockets through the proxy: telling an upgrade apart, and relaying both ways until one
side closes or the user may no longer use the socket."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp import WSMsgType, web
from multidict import MultiMapping

from gateway.proxy.close_codes import GOING_AWAY, SIGNED_OUT, close_received, closing_plan

# Asked while a relayed WebSocket is open, with when its client last sent anything: may its
# user still use it?
StillAllowed = Callable[[float], Awaitable[bool]]


def is_websocket_upgrade(method: str, headers: MultiMapping[str]) -> bool:
    """True for a request asking to become a WebSocket (a GET with both upgrade headers)."""
    if method != "GET" or "Upgrade" not in headers:
        return False
    upgrade = {t.strip().lower() for v in headers.getall("Upgrade", []) for t in v.split(",")}
    connection = {t.strip().lower() for v in headers.getall("Connection", []) for t in v.split(",")}
    return "websocket" in upgrade and "upgrade" in connection


WebSocket = web.WebSocketResponse | aiohttp.ClientWebSocketResponse


async def _pump(
    source: WebSocket, sink: WebSocket, on_message: Callable[[], None] | None = None
) -> tuple[int, str]:
    """Copy messages from ``source`` to ``sink`` until ``source`` closes; return its close."""
    while True:
        msg = await source.receive()
        try:
            if msg.type is WSMsgType.TEXT:
                await sink.send_str(msg.data)
            elif msg.type is WSMsgType.BINARY:
                await sink.send_bytes(msg.data)
            else:
                ended = close_received(msg.type, msg.data, msg.extra)
                if ended is not None:
                    return ended
                continue  # PING and PONG are answered by each side's autoping
            if on_message is not None:
                on_message()
        except ConnectionError:
            return GOING_AWAY


class _Activity:
    """When the client last sent a message, on the gateway's clock."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self.last = clock()

    def touch(self) -> None:
        self.last = self._clock()


async def _watch(
    still_allowed: StillAllowed, activity: _Activity, interval: float
) -> tuple[int, str]:
    """Return once the user may no longer use the socket (signed out, expired, idle, blocked)."""
    while True:
        await asyncio.sleep(interval)
        if not await still_allowed(activity.last):
            return SIGNED_OUT


async def relay_websocket(
    client_ws: web.WebSocketResponse,
    upstream_ws: aiohttp.ClientWebSocketResponse,
    still_allowed: StillAllowed | None = None,
    recheck_seconds: float = 15.0,
    clock: Callable[[], float] = time.time,
) -> None:
    """Pump both ways; when one side closes, pass its close code on to the other. A socket
    outlives no session: ``still_allowed`` is re-asked and closes both sides with 1008."""
    # Only what the client sends shows that someone is there; the app's pushes do not.
    activity = _Activity(clock)
    to_upstream = asyncio.create_task(_pump(client_ws, upstream_ws, activity.touch))
    to_client = asyncio.create_task(_pump(upstream_ws, client_ws))
    tasks = {to_upstream, to_client}
    watcher = None
    if still_allowed is not None:
        watcher = asyncio.create_task(_watch(still_allowed, activity, recheck_seconds))
        tasks.add(watcher)
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        if watcher is not None and watcher in done:
            plan = closing_plan("watcher", *watcher.result())
        elif to_upstream in done:
            plan = closing_plan("client", *to_upstream.result())
        else:
            plan = closing_plan("upstream", *to_client.result())
        for close in plan:
            ws: WebSocket = client_ws if close.side == "client" else upstream_ws
            await ws.close(code=close.code, message=close.message)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
