"""Run an aiohttp app on a TCP port with deliberate HTTP parser limits and honest error codes."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from aiohttp import hdrs, web
from aiohttp.web_urldispatcher import UrlMappingMatchInfo

from gateway.http.requests import DIRECT_HANDLER
from gateway.runtime.collector import tune_gc_for_serving
from gateway.runtime.internals import require_aiohttp_internals
from gateway.runtime.limits import ClientLimits, Handler, LimitedServer, kept_trailers
from gateway.runtime.quiet import quiet
from gateway.runtime.targets import origin_form_only


class GatewayAppRunner(web.AppRunner):
    """An ``AppRunner`` serving through :class:`LimitedServer`; otherwise unchanged.

    ``_make_server`` is the documented-by-abstract-method hook every runner implements; the
    app's own server is built first (startup signals, freezing, handler_args all as usual)
    and then rebuilt with the same handler, factory and settings.
    """

    def __init__(self, app: web.Application, *, limits: ClientLimits, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._limits = limits

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()
        handler = plain.request_handler
        if DIRECT_HANDLER in self.app:
            handler = _direct(self.app, handler)
        return LimitedServer(
            origin_form_only(kept_trailers(handler)),
            request_factory=quiet(plain.request_factory),
            handler_cancellation=plain.handler_cancellation,
            limits=self._limits,
            **plain._kwargs,
        )


def _direct(app: web.Application, routed: Handler) -> Handler:
    """``app``'s requests straight to its ``DIRECT_HANDLER``, as its one catch-all route would
    route them (the same match for every request) but without resolving a route and building
    the middleware chain on each. A request with an ``Expect`` header takes the routed path,
    where the route answers ``100-continue``."""
    (route,) = app.router.routes()
    match = UrlMappingMatchInfo({}, route)
    match.add_app(app)
    match.freeze()
    direct = app[DIRECT_HANDLER]

    def handle(request: web.BaseRequest) -> Awaitable[web.StreamResponse]:
        if hdrs.EXPECT in request.headers or not isinstance(request, web.Request):
            return routed(request)
        request._match_info = match
        return direct(request)

    return handle


async def start_site(
    app: web.Application,
    host: str,
    port: int,
    *,
    max_line_size: int,
    max_field_size: int,
    idle_timeout: float = 75.0,
    shutdown_timeout: float = 10.0,
    limits: ClientLimits | None = None,
) -> tuple[web.AppRunner, int]:
    """Serve ``app`` on ``host:port`` (0 picks a free port); returns (runner, bound port).

    A request line over ``max_line_size`` bytes or a header field over ``max_field_size``
    gets 431; malformed framing (Content-Length with Transfer-Encoding, duplicate
    Content-Length, unknown codings) gets 400. Both close the connection. A connection with
    no complete request head for ``idle_timeout`` seconds, from its start or since its last
    response, is closed: aiohttp's keep-alive timer, which a client trickling a head byte
    by byte does not reset (slowloris). A request head over ``limits.max_head_size`` bytes in
    all (or trailers after a chunked body that take it past that) gets 431 and a closed
    connection; a connection past ``limits.max_connections`` open
    at once gets 503 and is closed before anything is read. No response names the server
    software, and CONNECT or a target that is not a path (``OPTIONS *``) gets a problem
    with a request id and a closed connection. The caller stops the site with
    ``await runner.cleanup()``. The first call in a process also tunes the garbage
    collector for serving (:func:`tune_gc_for_serving`).

    Raises :class:`~gateway.runtime.internals.AiohttpUnsupported`, before anything is
    bound, when the installed aiohttp lacks a private name the limits rely on.
    """
    require_aiohttp_internals()
    runner = GatewayAppRunner(
        app,
        limits=limits or ClientLimits(),
        max_line_size=max_line_size,
        max_field_size=max_field_size,
        keepalive_timeout=idle_timeout,
        shutdown_timeout=shutdown_timeout,
        # The request context writes the access log (JSON, with request ids); aiohttp's own
        # would only repeat it, and costs each connection a logger of its own.
        access_log=None,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = runner.addresses[0][1]
    tune_gc_for_serving()
    return runner, int(bound)
