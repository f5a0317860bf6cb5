"""The Xero listener's requests: who calls, for which tenant, with which access token; then
the call to Xero under the rate governor and the retry rule, streamed back as Xero answered.

The app's backend speaks to it as to ``api.xero.com``: ``Authorization: Bearer`` with its
user's gateway token (``X-Gateway-Token``) or a service key in place of a Xero access token,
and ``xero-tenant-id`` as usual. Every refusal is problem+json with a stable type.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import cast

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler
from multidict import CIMultiDict
from yarl import URL

from gateway.clock import Clock
from gateway.errors import NotFoundError, StoreError
from gateway.http.headers import (
    X_REQUEST_ID,
    request_headers_for_upstream,
    response_headers_for_client,
)
from gateway.http.problems import problem_response
from gateway.http.requests import DIRECT_HANDLER, OUTCOME, REQUEST_ID
from gateway.ops.metrics import Metrics
from gateway.store import Store
from gateway.store.xero import XeroConnection
from gateway.web.context import new_request_id
from gateway.xero.calls import RetryingCaller
from gateway.xero.custody import (
    Authority,
    ConnectionGone,
    ForeignGrant,
    MfaRequired,
    NeedsReconnect,
    UnverifiedSession,
)
from gateway.xero.governor import RateLimitedError
from gateway.xero.tokens import XeroRejected, XeroUnavailable
from gateway.xero.vault import Vault
from gateway.xero_api.callers import Callers
from gateway.xero_api.connections import connections_body
from gateway.xero_api.paths import Route, route_of

log = logging.getLogger(__name__)

TENANT_HEADER = "xero-tenant-id"
IDEMPOTENCY_HEADER = "Idempotency-Key"
CONNECTION_CACHE_SECONDS = 5.0  # how long a tenant's connection, once found, is trusted


class _XeroTimedOut(XeroUnavailable):
    """Xero did not answer in time (504 once the retries are spent)."""


class _BodyTooLarge(Exception):
    pass


@dataclass(frozen=True, kw_only=True)
class _Refusal:
    status: int
    slug: str
    title: str
    outcome: str


_UNAUTHENTICATED = _Refusal(
    status=401, slug="unauthenticated", title="Gateway token required", outcome="unauthenticated"
)
_NOT_LINKED = _Refusal(
    status=403,
    slug="tenant-not-linked",
    title="Tenant not linked",
    outcome="tenant_not_linked",
)
_MFA = _Refusal(
    status=403, slug="mfa-required", title="Second factor required", outcome="mfa_required"
)
_RECONNECT = _Refusal(
    status=409,
    slug="connection-needs-reconnect",
    title="Xero connection needs a reconnect",
    outcome="needs_reconnect",
)
_RATE_LIMITED = _Refusal(
    status=429, slug="rate-limited", title="Xero rate limit", outcome="rate_limited"
)
_NOT_FOUND = _Refusal(status=404, slug="not-found", title="Not found", outcome="rejected")


class _ReplayableBody:
    """A request body streamed to Xero as it arrives and kept (up to ``limit``), so a call
    tried again sends it whole once more."""

    def __init__(self, request: web.Request, limit: int) -> None:
        self._request = request
        self._limit = limit
        self._seen: list[bytes] = []
        self._size = 0
        self.too_large = False

    async def chunks(self) -> AsyncIterator[bytes]:
        for chunk in list(self._seen):
            yield chunk
        content = self._request.content
        while True:
            chunk = await content.readany()
            if not chunk:
                return
            self._size += len(chunk)
            if self._size > self._limit:
                self.too_large = True
                raise _BodyTooLarge
            self._seen.append(chunk)
            yield chunk


class XeroApi:
    """Serves the Xero listener's requests; see the module's docstring."""

    def __init__(
        self,
        *,
        store: Store,
        callers: Callers,
        vault: Vault,
        caller: RetryingCaller,
        client: aiohttp.ClientSession,
        api_url: str,
        clock: Clock,
        metrics: Metrics,
        max_wait: float,
        max_body_size: int,
    ) -> None:
        self._store = store
        self._callers = callers
        self._vault = vault
        self._caller = caller
        self._client = client
        self._origin = str(URL(api_url).origin())
        self._clock = clock
        self._metrics = metrics
        self._max_wait = max_wait
        self._max_body_size = max_body_size
        self._connections: dict[tuple[str, str], tuple[XeroConnection, float]] = {}
        self._reading: dict[tuple[str, str], asyncio.Future[XeroConnection | None]] = {}
        # The latency histogram's series by status class, looked up once.
        self._latency = tuple(metrics.xero_api_latency.series.values())

    async def handle(self, request: web.Request) -> web.StreamResponse:
        route = route_of(request.raw_path.split("?", 1)[0])
        if route is None:
            return self._refuse(request, _NOT_FOUND, "The Xero listener serves Xero's API paths.")
        authorization = request.headers.get("Authorization", "")
        callers = self._callers
        authority = callers.known(authorization) or await callers.authenticate(authorization)
        if authority is None:
            return self._refuse(
                request,
                _UNAUTHENTICATED,
                "Send the user's X-Gateway-Token, or a service key, as the bearer token; this"
                " one is missing, unknown, or its session has ended.",
                headers={"WWW-Authenticate": 'Bearer realm="xero-gateway"'},
            )
        if isinstance(authority, UnverifiedSession) and authority.held_back:
            return self._refuse(
                request,
                _MFA,
                "Your organisation's policy asks this session for a second factor before it"
                " reaches the app, and so before it reaches Xero.",
                verify_url="/_gateway/mfa/verify",
            )
        if route is Route.CONNECTIONS:
            return await self._connections_of(request, authority)
        return await self._call_xero(request, authority)

    # /connections

    async def _connections_of(
        self, request: web.Request, authority: Authority
    ) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD"):
            request[OUTCOME] = "rejected"
            return problem_response(
                request,
                status=405,
                slug="method-not-allowed",
                title="Method not allowed",
                detail="The gateway lists connections; connect or disconnect Xero at the gateway.",
                headers={"Allow": "GET, HEAD"},
            )
        xero = self._store.xero
        grants = {g.id: g for g in await xero.for_org(authority.org_id)}
        body = connections_body(await xero.connections_for_org(authority.org_id), grants)
        request[OUTCOME] = "connections"
        return web.json_response(body, headers={"Cache-Control": "no-store"})

    # Calls to Xero

    def _known_connection(self, org_id: str, tenant_id: str) -> XeroConnection | None:
        """The connection found less than ``CONNECTION_CACHE_SECONDS`` ago, without an await;
        None: ask ``_connection``."""
        known = self._connections.get((org_id, tenant_id))
        if known is not None and self._clock() - known[1] < CONNECTION_CACHE_SECONDS:
            return known[0]
        return None

    async def _connection(self, org_id: str, tenant_id: str) -> XeroConnection | None:
        """The organisation's active connection to the tenant: read from the store at most
        once per ``CONNECTION_CACHE_SECONDS`` however many calls find it stale at once."""
        key = (org_id, tenant_id)
        now = self._clock()
        reading = self._reading.get(key)
        if reading is None:
            reading = asyncio.ensure_future(self._read_connection(key, now))
            self._reading[key] = reading
            reading.add_done_callback(lambda _t: self._reading.pop(key, None))
        return await asyncio.shield(reading)

    async def _read_connection(self, key: tuple[str, str], now: float) -> XeroConnection | None:
        found = await self._store.xero.connection_for_tenant(*key)
        if found is None:
            self._connections.pop(key, None)
        else:
            if len(self._connections) >= 10_000:
                self._connections.clear()
            self._connections[key] = (found, now)
        return found

    async def _call_xero(self, request: web.Request, authority: Authority) -> web.StreamResponse:
        # Exactly one xero-tenant-id: a second one would reach Xero unchecked.
        named = request.headers.getall(TENANT_HEADER, [])
        tenant_id = named[0].strip() if len(named) == 1 else ""
        org_id = authority.org_id
        connection = self._known_connection(org_id, tenant_id) or (
            await self._connection(org_id, tenant_id) if tenant_id else None
        )
        if connection is None:
            return self._refuse(
                request,
                _NOT_LINKED,
                "xero-tenant-id must name a Xero tenant your organisation has connected;"
                " GET /connections lists them.",
            )
        try:
            grant_id, now = connection.grant_id, self._clock()
            vault = self._vault
            access_token = vault.warm_access_token(
                grant_id, authority, now
            ) or await vault.access_token(grant_id, authority, now)
        except MfaRequired as exc:
            return self._refuse(request, _MFA, str(exc), verify_url="/_gateway/mfa/verify")
        except NeedsReconnect as exc:
            return self._refuse(request, _RECONNECT, str(exc), connect_url="/_gateway/xero")
        except (ConnectionGone, ForeignGrant, NotFoundError):
            self._connections.pop((authority.org_id, tenant_id), None)
            return self._refuse(
                request, _NOT_LINKED, "This tenant's Xero connection is no longer active."
            )
        except XeroUnavailable:
            return self._unavailable(
                request, 503, "Xero could not renew this connection's access just now."
            )
        except XeroRejected:
            return self._unavailable(
                request, 502, "Xero refused to renew this connection's access."
            )
        return await self._forward(request, tenant_id, access_token)

    async def _forward(
        self, request: web.Request, tenant_id: str, access_token: str
    ) -> web.StreamResponse:
        request_id = request[REQUEST_ID]
        if request.content_length is not None and request.content_length > self._max_body_size:
            return self._too_large(request)
        headers: CIMultiDict[str] = request_headers_for_upstream(
            request.headers,
            client_addr="",
            scheme=request.scheme,
            host="",
            trusted_proxy=False,
            identity={},
            request_id=request_id,
            forwarding=False,
        )
        headers["Authorization"] = f"Bearer {access_token}"
        body = _ReplayableBody(request, self._max_body_size) if request.body_exists else None
        url = URL(self._origin + request.raw_path, encoded=True)
        method = request.method
        client = self._client

        async def send() -> aiohttp.ClientResponse:
            data = body.chunks() if body is not None else None
            try:
                return await client.request(
                    method, url, headers=headers, data=data, allow_redirects=False
                )
            except TimeoutError as exc:
                raise _XeroTimedOut("Xero did not answer in time") from exc
            except (aiohttp.ClientError, OSError, _BodyTooLarge) as exc:
                raise XeroUnavailable(f"could not reach Xero: {type(exc).__name__}") from exc

        started = time.monotonic()
        try:
            async with self._caller.call(
                tenant_id,
                send,
                method=method,
                idempotency_key=IDEMPOTENCY_HEADER in request.headers,
                deadline=self._clock() + self._max_wait,
            ) as upstream:
                try:
                    return await self._relay(request, upstream, request_id, started)
                finally:
                    upstream.release()
        except RateLimitedError as exc:
            return self._refuse(
                request,
                _RATE_LIMITED,
                "Xero's rate limit for this tenant leaves no room before your call's deadline;"
                f" try again in {exc.retry_after_header} s.",
                headers={"Retry-After": exc.retry_after_header},
            )
        except _XeroTimedOut:
            return self._unavailable(request, 504, "Xero did not answer in time.")
        except XeroUnavailable:
            if body is not None and body.too_large:
                return self._too_large(request)
            return self._unavailable(request, 502, "Xero could not be reached.")

    async def _relay(
        self,
        request: web.Request,
        upstream: aiohttp.ClientResponse,
        request_id: str,
        started: float,
    ) -> web.StreamResponse:
        status = upstream.status
        self._latency[min(max(status // 100, 1), 5) - 1].observe(time.monotonic() - started)
        request[OUTCOME] = "forwarded"
        reply_headers = response_headers_for_client(upstream.headers)
        reply_headers[X_REQUEST_ID] = request_id
        response = web.StreamResponse(status=status, reason=upstream.reason, headers=reply_headers)
        try:
            await response.prepare(request)
            while True:
                try:
                    chunk = await upstream.content.readany()
                except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                    log.warning("Xero's response broke off: %s", type(exc).__name__)
                    upstream.close()
                    response.force_close()
                    if request.transport is not None:
                        request.transport.close()  # the client must see it is incomplete
                    return response
                if not chunk:
                    break
                await response.write(chunk)
            await response.write_eof()
        except ConnectionError:
            log.debug("the app went away during Xero's response")
            upstream.close()
        return response

    # Refusals

    def _refuse(
        self,
        request: web.Request,
        refusal: _Refusal,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        **extra: str,
    ) -> web.Response:
        request[OUTCOME] = refusal.outcome
        return problem_response(
            request,
            status=refusal.status,
            slug=refusal.slug,
            title=refusal.title,
            detail=detail,
            headers=headers,
            request_id=request[REQUEST_ID],
            **extra,
        )

    def _too_large(self, request: web.Request) -> web.Response:
        request[OUTCOME] = "rejected"
        response = problem_response(
            request,
            status=413,
            slug="body-too-large",
            title="Request body too large",
            detail=f"Bodies sent to Xero may be at most {self._max_body_size} bytes.",
            request_id=request[REQUEST_ID],
        )
        response.force_close()  # the rest of the body may still be on its way
        return response

    def _unavailable(self, request: web.Request, status: int, detail: str) -> web.Response:
        request[OUTCOME] = "xero_unavailable"
        slug = {502: "xero-unavailable", 503: "xero-unavailable", 504: "xero-timeout"}[status]
        title = "Xero did not answer in time" if status == 504 else "Xero is unavailable"
        return problem_response(
            request,
            status=status,
            slug=slug,
            title=title,
            detail=f"{detail} Try again shortly.",
            headers={"Retry-After": "5"} if status == 503 else None,
            request_id=request[REQUEST_ID],
        )


def create_xero_app(api: XeroApi, metrics: Metrics, *, max_body_size: int) -> web.Application:
    """The Xero listener's application: every path through ``api``, with a request id (as
    the front's), an access log line and the outcome counted, and no traceback ever reaching
    the caller."""

    counts = metrics.xero_api_requests.counts  # by outcome

    @web.middleware
    async def in_context(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        request_id = new_request_id()
        request[REQUEST_ID] = request_id
        status = 500
        try:
            response = await handler(request)
            status = response.status
            if not response.prepared:
                response.headers[X_REQUEST_ID] = request_id
            return response
        except StoreError:
            log.exception("the store failed", extra={"request_id": request_id})
            request[OUTCOME] = "error"
            status = 503
            response = problem_response(
                request,
                status=503,
                slug="store-unavailable",
                title="Gateway busy",
                detail="The gateway could not read its store just now. Try again shortly.",
                headers={"Retry-After": "1", X_REQUEST_ID: request_id},
                request_id=request_id,
            )
            return response
        except Exception:
            log.exception("unhandled error", extra={"request_id": request_id})
            request[OUTCOME] = "error"
            return problem_response(
                request,
                status=500,
                slug="internal-error",
                title="Something went wrong",
                detail=f"The gateway could not complete this request (request id {request_id}).",
                headers={X_REQUEST_ID: request_id},
            )
        finally:
            outcome = request.get(OUTCOME, "error")
            counts[outcome] += 1
            if log.isEnabledFor(logging.INFO):
                log.info(
                    "xero request",
                    extra={
                        "request_id": request_id,
                        "method": request.method,
                        "path": request.path,
                        "status": status,
                        "outcome": outcome,
                        "tenant_id": request.headers.get(TENANT_HEADER),
                        "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                    },
                )

    app = web.Application(client_max_size=max_body_size, middlewares=[in_context])
    app.router.add_route("*", "/{tail:[\\s\\S]*}", api.handle)
    # Every request goes to that one route: the server may skip routing (runtime/server.py).
    direct = partial(in_context, handler=api.handle)
    app[DIRECT_HANDLER] = cast(Callable[[web.Request], Awaitable[web.StreamResponse]], direct)
    return app
