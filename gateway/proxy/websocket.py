"""WebSockets through the proxy: telling an upgrade apart, and relaying both ways until one
side closes or the user may no longer use the socket."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp import WSMsgType, web

# Asked while a relayed WebSocket is open, with when its client last sent anything: may its
# user still use it?
StillAllowed = Callable[[float], Awaitable[bool]]

_WS_UNSENDABLE = frozenset({1004, 1005, 1006, 1015})


def is_websocket_upgrade(request: web.Request) -> bool:
    if request.method != "GET" or "Upgrade" not in request.headers:
        return False
    upgrade = {
        t.strip().lower() for v in request.headers.getall("Upgrade", []) for t in v.split(",")
    }
    connection = {
        t.strip().lower() for v in request.headers.getall("Connection", []) for t in v.split(",")
    }
    return "websocket" in upgrade and "upgrade" in connection


WebSocket = web.WebSocketResponse | aiohttp.ClientWebSocketResponse


def _close_args(code: int, reason: str) -> tuple[int, bytes]:
    if code in _WS_UNSENDABLE or not (1000 <= code < 5000):
        code = 1000
    return code, reason.encode()[:123]


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
            elif msg.type is WSMsgType.CLOSE:
                return int(msg.data), str(msg.extra or "")
            elif msg.type is WSMsgType.ERROR:
                return int(getattr(msg.data, "code", 1011)), ""
            elif msg.type in (WSMsgType.CLOSING, WSMsgType.CLOSED):
                # Gone without a close frame (or closing on our own word): "going away".
                return 1001, ""
            # PING and PONG are answered by each side's autoping; nothing to relay.
            if on_message is not None and msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                on_message()
        except ConnectionError:
            return 1001, ""


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
            return 1008, "sign-in required"


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
            code, message = _close_args(*watcher.result())
            await client_ws.close(code=code, message=message)
            await upstream_ws.close(code=1001, message=b"client signed out")
        elif to_upstream in done:
            code, message = _close_args(*to_upstream.result())
            await upstream_ws.close(code=code, message=message)
            await client_ws.close(code=code, message=message)
        else:
            code, message = _close_args(*to_client.result())
            await client_ws.close(code=code, message=message)
            await upstream_ws.close(code=code, message=message)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
