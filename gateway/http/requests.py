"""What every listener knows about a request in flight: its request keys, and responses
handed on as awaitables."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

CLIENT_ADDR = web.RequestKey("client_addr", str)
REQUEST_ID = web.RequestKey("request_id", str)
OUTCOME = web.RequestKey("outcome", str)

# ``(real client address, whether the peer is a trusted proxy)`` as the request context
# (gateway.web.context) worked it out from the same request (see headers.client_address);
# the proxy works it out itself when the key is missing (a proxy used without that context).
CLIENT_SEEN = web.RequestKey[tuple[str, bool]]("client_seen")

# An application whose one catch-all route serves every request (the Xero listener's) names
# that route's handler, middleware applied, here: its server calls it without routing.
DIRECT_HANDLER = web.AppKey[Callable[[web.Request], Awaitable[web.StreamResponse]]](
    "direct_handler"
)


async def settled(response: web.StreamResponse) -> web.StreamResponse:
    """``response``, as an awaitable (for code that hands on an exchange's coroutine)."""
    return response
