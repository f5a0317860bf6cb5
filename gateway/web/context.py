"""Per-request context: request id, real client address, session lookup, access log, metrics.

Every route's handler is wrapped with :func:`in_context` when it is registered (use
:func:`add_route` or :func:`add_get`), rather than through an aiohttp middleware: a
middleware costs each request an extra wrapper coroutine and a response-prepare signal, on
the proxy's hot path too. :func:`require_context` refuses to start an app with a route left
unwrapped. Bodies sent to the gateway itself are read under :func:`body_deadline`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Mapping

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.http.headers import claimed_hosts, client_address, request_cookies
from gateway.http.paths import HEALTH_PATH
from gateway.http.problems import body_stalled, problem_response
from gateway.http.requests import CLIENT_ADDR, CLIENT_SEEN, OUTCOME, REQUEST_ID
from gateway.services import SERVICES, SESSION
from gateway.signin.sessions import LiveSession, hash_session_id

log = logging.getLogger("gateway.access")


class _RequestIds:
    """Random request ids, 32 hex digits like a uuid4's, cut from a pool of random bytes.

    One getrandom call per 128 ids instead of one (and a UUID object) per request; the ids
    stay unpredictable. A forked child starts its own pool, so no two processes share ids.
    """

    _POOL_IDS = 128

    def __init__(self) -> None:
        self._pool = ""
        self._at = 0
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._pool, self._at = "", 0

    def next(self) -> str:
        at = self._at
        if at >= len(self._pool):
            self._pool = os.urandom(16 * self._POOL_IDS).hex()
            at = 0
        self._at = at + 32
        return self._pool[at : at + 32]


new_request_id = _RequestIds().next


class _SessionHashes:
    """The hash of the session id in a Cookie header, remembered by header.

    A browser sends the same Cookie header request after request; parsing it and hashing
    the id each time is most of what finding a warm session costs. The answer is a function
    of the header alone, so nothing ever needs forgetting. The table is bounded in entries
    and in header size (ASCII headers of at most 1 KiB) and starts afresh when full. It
    holds cookie values in memory, as the request buffers do anyway; the store still sees
    only hashes.
    """

    MAX_ENTRIES = 10_000
    MAX_HEADER = 1024

    def __init__(self) -> None:
        self._known: dict[tuple[str, str], str | None] = {}

    def __call__(self, request: web.Request, cookie_name: str) -> str | None:
        header = request.headers.get("Cookie", "")
        key = (cookie_name, header)
        known = self._known
        try:
            return known[key]
        except KeyError:
            pass
        # The same reading as the one that takes the session out of what the app is sent.
        raw_id = request_cookies(header).get(cookie_name)
        id_hash = hash_session_id(raw_id) if raw_id else None
        if len(header) <= self.MAX_HEADER and header.isascii():  # so at most 1 KiB each
            if len(known) >= self.MAX_ENTRIES:
                known.clear()
            known[key] = id_hash
        return id_hash


_session_hash = _SessionHashes()


def _attach_gateway_token(request: web.Request, live: LiveSession, cookie_name: str) -> None:
    """Give ``live`` its gateway token from the cookie's raw id: once per session and
    process (another process, or a restart, made the session), never on a warm request."""
    raw_id = request_cookies(request.headers.get("Cookie", "")).get(cookie_name)
    if raw_id:
        live.attach_gateway_token(raw_id)


class _BodyTimedOut(Exception):
    """A request body sent to the gateway itself stopped arriving (see body_deadline)."""


@contextlib.asynccontextmanager
async def body_deadline(request: web.Request) -> AsyncIterator[None]:
    """Read a body sent to the gateway's own pages and API inside this: one that has not
    arrived within ``[server] idle_timeout`` gets 408 and a closed connection, so a client
    cannot hold a connection by trickling a form (the proxy bounds bodies bound for the app
    with its own upload timeout)."""
    try:
        async with asyncio.timeout(request.app[SERVICES].config.server.idle_timeout):
            yield
    except TimeoutError:
        raise _BodyTimedOut from None


async def read_form(request: web.Request) -> Mapping[str, object]:
    """The form posted to one of the gateway's own pages, read under :func:`body_deadline`."""
    async with body_deadline(request):
        return await request.post()


_IN_CONTEXT = "__gateway_in_context__"


def in_context(handler: Handler) -> Handler:
    """``handler`` run with the request's context set up, logged, counted and stamped with
    its request id (streamed responses are prepared by the proxy, which stamps its own)."""

    async def handle(request: web.Request) -> web.StreamResponse:
        # One coroutine, not one calling another: each level is paid again at every resume.
        services = request.app[SERVICES]
        started = time.perf_counter()
        seen = client_address(request.remote, request.headers, services.trusted_proxies)
        addr, trusted = seen
        request[CLIENT_ADDR] = addr
        request[CLIENT_SEEN] = seen  # the proxy needs both and need not work them out again
        incoming_id = request.headers.get("X-Request-Id", "") if trusted else ""
        request_id = (
            incoming_id
            if 0 < len(incoming_id) <= 128 and incoming_id.isprintable()
            else new_request_id()
        )
        request[REQUEST_ID] = request_id
        status = 500
        try:
            response: web.StreamResponse
            allowed_hosts = services.config.server.allowed_hosts
            if allowed_hosts and not _hosts_allowed(request, allowed_hosts, trusted):
                request[OUTCOME] = "rejected"
                response = _unknown_host(request)
            else:
                id_hash = _session_hash(request, services.cookies.session)
                if id_hash is not None:
                    sessions = services.sessions
                    live = sessions.warm(id_hash)
                    if live is None:
                        live = await sessions.lookup_hash(id_hash)
                    if live is not None:
                        request[SESSION] = live
                        if not live.gateway_token and live.record.gateway_token_hash:
                            _attach_gateway_token(request, live, services.cookies.session)
                response = await handler(request)
            status = response.status
            if not response.prepared:
                response.headers["X-Request-Id"] = request_id
            return response
        except web.HTTPException as exc:
            status = exc.status
            exc.headers["X-Request-Id"] = request_id
            raise
        except _BodyTimedOut:
            status = 408
            request[OUTCOME] = "rejected"
            log.info("request body stalled", extra={"request_id": request_id})
            response = body_stalled(request)
            response.headers["X-Request-Id"] = request_id
            # Answer, then drop the connection: aiohttp would otherwise wait up to ten more
            # seconds for the rest of the body before closing it.
            try:
                await response.prepare(request)
                await response.write_eof()
            finally:
                request.protocol.force_close()
            return response
        except Exception:
            # No traceback ever reaches the client: log it with the request id and answer 500.
            log.exception("unhandled error", extra={"request_id": request_id, "path": request.path})
            request[OUTCOME] = "error"
            response = problem_response(
                request,
                status=500,
                slug="internal-error",
                title="Something went wrong",
                detail=f"The gateway could not complete this request (request id {request_id}).",
            )
            response.headers["X-Request-Id"] = request_id
            return response
        finally:
            outcome = request.get(OUTCOME, "gateway")
            services.metrics.count(outcome)
            if log.isEnabledFor(logging.INFO):
                live = request.get(SESSION)
                log.info(
                    "request",
                    extra={
                        "request_id": request_id,
                        "method": request.method,
                        "path": request.path,
                        "status": status,
                        "outcome": outcome,
                        "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                        "client": addr,
                        "user_id": live.user.id if live is not None else None,
                    },
                )

    setattr(handle, _IN_CONTEXT, True)
    return handle


def _hosts_allowed(request: web.Request, allowed: tuple[str, ...], trusted: bool) -> bool:
    """Whether every host the request names is in ``allowed`` (the gateway's own pages build
    links from the Host too, and the app builds password resets and redirects from it)."""
    if request.path == HEALTH_PATH:  # probed by address, not by the public host name
        return True
    return all(host in allowed for host in claimed_hosts(request.headers, trusted_proxy=trusted))


def _unknown_host(request: web.Request) -> web.Response:
    return problem_response(
        request,
        status=421,
        slug="unknown-host",
        title="Unknown host",
        detail="This gateway does not serve that host name.",
    )


def add_route(app: web.Application, method: str, path: str, handler: Handler) -> None:
    app.router.add_route(method, path, in_context(handler))


def add_get(app: web.Application, path: str, handler: Handler) -> None:
    """A GET route that answers HEAD too, as aiohttp's own add_get does."""
    app.router.add_get(path, in_context(handler))


def require_context(app: web.Application) -> None:
    """Raise if a route of ``app`` was registered without :func:`in_context`."""
    bare = [
        f"{route.method} {route.resource.canonical if route.resource else '?'}"
        for route in app.router.routes()
        if not getattr(route.handler, _IN_CONTEXT, False)
    ]
    if bare:
        raise RuntimeError(f"routes registered without the request context: {', '.join(bare)}")
