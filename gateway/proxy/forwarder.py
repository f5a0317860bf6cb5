"""Relay a request to the upstream app and its answer back, streamed both ways, WebSockets too."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from aiohttp.typedefs import LooseHeaders
from multidict import CIMultiDict
from yarl import URL

from gateway.http.headers import (
    X_REQUEST_ID,
    IPNetwork,
    client_address,
    request_headers_for_upstream,
    response_headers_for_client,
)
from gateway.http.problems import body_stalled, problem_response
from gateway.http.requests import CLIENT_SEEN, OUTCOME, settled
from gateway.proxy.websocket import StillAllowed, is_websocket_upgrade, relay_websocket

log = logging.getLogger(__name__)

UpstreamObserver = Callable[[int, float], None]

# aiohttp adds these to every request unless told not to. An Accept-Encoding the client never
# sent would get it a compressed body it cannot read (bodies are relayed undecoded), and a
# made-up Content-Type or User-Agent would misreport what the client sent.
_SKIP_AUTO_HEADERS = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")
_SKIPPED: CIMultiDict[None] = CIMultiDict((name, None) for name in _SKIP_AUTO_HEADERS)


class _VerbatimRequest(aiohttp.ClientRequest):
    """A client request that adds none of aiohttp's automatic headers.

    With ``skip_auto_headers`` aiohttp copies every header of every request into a scratch
    dict to check which defaults to leave out; here every default is left out, so there is
    nothing to check. ``_skip_auto_headers`` is still set, as aiohttp reads it to leave
    out a made-up Content-Type for a body.
    """

    def update_auto_headers(self, skip_auto_headers: Iterable[str] | None) -> None:
        self._skip_auto_headers = _SKIPPED

    def update_headers(self, headers: LooseHeaders | None) -> None:
        # The session hands over its own fresh copy of the headers; aiohttp would copy it
        # again header by header in Python, only to put Host first. One C call does that.
        if not isinstance(headers, CIMultiDict) or "Host" in headers:
            super().update_headers(headers)
            return
        host = self.url.host_port_subcomponent
        assert host is not None  # the upstream URL is absolute
        self.headers = CIMultiDict(Host=host)
        self.headers.extend(headers)


# The WebSocket handshake is per hop: the client library makes its own key and extensions.
_WS_HANDSHAKE = frozenset(
    {
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
        "sec-websocket-accept",
    }
)

# Upstream response heads can be larger than a client's (long CSP, many cookies); the app is
# trusted not to abuse that, so allow more than aiohttp's 8 KiB before calling it broken.
_UPSTREAM_MAX_LINE = 64 * 1024
_UPSTREAM_MAX_FIELD = 64 * 1024

_WS_CLOSE_TIMEOUT = 5.0


class _CoalescingResponse(web.StreamResponse):
    """A streamed response whose head waits for the first body bytes (or the end), so that
    they share one write; only used when those bytes are already here, so the client never
    waits longer for the head. (aiohttp's web.Response does the same for whole bodies.)"""

    _send_headers_immediately = False


@dataclass
class _Upload:
    """What happened to the request body while it streamed upstream."""

    limit: int
    idle_timeout: float
    sent: int = 0
    too_large: bool = False
    client_failed: bool = False
    client_stalled: bool = False
    _abort: Callable[[], None] | None = None

    @property
    def failed(self) -> bool:
        return self.too_large or self.client_failed or self.client_stalled

    def attach(self, abort: Callable[[], None]) -> None:
        """Cut the upstream exchange with ``abort`` if the upload fails from now on (or did)."""
        self._abort = abort
        if self.failed:
            abort()

    def fail(self) -> None:
        # Once the app has started answering, a failed upload is not reported back through
        # the response: without cutting the connection both sides would wait for ever.
        if self._abort is not None:
            self._abort()


# What a request without a body "uploaded": nothing, and nothing can fail. Shared, and
# never attached to an exchange, so never changed.
_NOTHING_SENT = _Upload(limit=0, idle_timeout=0.0)


class _BodyTooLarge(Exception):
    pass


class UpstreamProxy:
    """Forwards requests to one upstream origin through one pooled, cookie-less client session."""

    def __init__(
        self,
        upstream_url: str,
        *,
        connect_timeout: float,
        read_timeout: float,
        max_body_size: int,
        trusted_proxies: Sequence[IPNetwork],
        on_upstream: UpstreamObserver | None = None,
        ws_recheck_seconds: float = 15.0,
        clock: Callable[[], float] = time.time,
        private_cookies: Iterable[str] = (),
        drop_underscore_headers: bool = True,
        pool_size: int = 1024,
        dns_cache_seconds: int = 10,
    ) -> None:
        url = URL(upstream_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(
                f"upstream URL {upstream_url!r} must be http:// or https:// with a host"
            )
        if url.raw_path not in ("", "/") or url.raw_query_string or url.raw_fragment:
            raise ValueError(f"upstream URL {upstream_url!r} must be an origin, without a path")
        if url.raw_user or url.raw_password:
            raise ValueError(f"upstream URL {upstream_url!r} must not carry credentials")
        if max_body_size < 1:
            # aiohttp reads a WebSocket max_msg_size of 0 as "unlimited": never pass it on.
            raise ValueError("max_body_size must be at least 1")
        self._origin = str(url.origin())
        self._max_body_size = max_body_size
        self._read_timeout = read_timeout
        self._trusted_proxies = tuple(trusted_proxies)
        self._on_upstream = on_upstream
        self._ws_recheck_seconds = ws_recheck_seconds
        self._clock = clock
        self._private_cookies = frozenset(private_cookies)
        self._drop_underscores = drop_underscore_headers
        self._pool_size = pool_size
        self._dns_cache_seconds = dns_cache_seconds
        # sock_read counts from the end of the upload, so slow uploads are not cut short;
        # connect also bounds the wait for a free pooled connection.
        self._timeout = aiohttp.ClientTimeout(
            total=None,
            connect=connect_timeout,
            sock_connect=connect_timeout,
            sock_read=read_timeout,
        )
        self._session: aiohttp.ClientSession | None = None

    @property
    def origin(self) -> str:
        return self._origin

    async def start(self) -> None:
        """Open the shared connection pool; call once, inside the running event loop."""
        if self._session is not None:
            return
        connector = aiohttp.TCPConnector(
            limit=self._pool_size, ttl_dns_cache=self._dns_cache_seconds
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            # Cookies belong to the browser and the app: a jar here would mix users' cookies.
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            timeout=self._timeout,
            # Never route upstream traffic through a proxy named in the environment.
            trust_env=False,
            skip_auto_headers=_SKIP_AUTO_HEADERS,
            request_class=_VerbatimRequest,
            max_line_size=_UPSTREAM_MAX_LINE,
            max_field_size=_UPSTREAM_MAX_FIELD,
        )

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def forward(
        self,
        request: web.Request,
        *,
        identity: Mapping[str, str],
        request_id: str,
        still_allowed: StillAllowed | None = None,
    ) -> Awaitable[web.StreamResponse]:
        """Send ``request`` upstream with ``identity`` headers added; stream the answer back.

        ``still_allowed`` is asked every ``ws_recheck_seconds`` while a WebSocket relayed
        for this request stays open; once it says no, both sides are closed (1008).

        Not a coroutine itself: it returns the exchange's, so the caller awaits one
        coroutine fewer at every resume of a proxied request.
        """
        session = self._session
        if session is None:
            raise RuntimeError("UpstreamProxy.start() has not been called")
        refusal = self._refuse(request, request_id)
        if refusal is not None:
            return settled(refusal)

        seen = request.get(CLIENT_SEEN)
        if seen is None:
            seen = client_address(request.remote, request.headers, self._trusted_proxies)
        real_ip, trusted = seen
        headers = request_headers_for_upstream(
            request.headers,
            client_addr=request.remote or "",
            scheme=request.scheme,
            # Not request.host: without a Host header that falls back to a blocking DNS call.
            host=request.headers.get("Host", ""),
            trusted_proxy=trusted,
            identity=identity,
            request_id=request_id,
            real_ip=real_ip,
            private_cookies=self._private_cookies,
            drop_underscores=self._drop_underscores,
        )
        # encoded=True: the path and query go upstream byte for byte, never re-normalised.
        url = URL(self._origin + request.raw_path, encoded=True)
        if is_websocket_upgrade(request):
            return self._forward_websocket(
                request, session, url, headers, request_id, still_allowed
            )
        return self._forward_http(request, session, url, headers, request_id)

    def _refuse(self, request: web.Request, request_id: str) -> web.StreamResponse | None:
        """A response for requests that must not reach the upstream at all, else None."""
        if request.method in ("TRACE", "TRACK"):
            # TRACE echoes the request back, identity headers and cookies included, to
            # whoever can make the browser send it (cross-site tracing); nginx refuses it too.
            return _closing(
                problem_response(
                    request,
                    status=405,
                    slug="method-not-allowed",
                    title="Method not allowed",
                    detail=f"{request.method} is not passed to the app.",
                    request_id=request_id,
                )
            )
        target = request.raw_path
        # Absolute-form or asterisk-form targets, and a raw "#" (which the client library
        # would silently drop), cannot be forwarded byte for byte.
        if not target.startswith("/") or "#" in target:
            return _closing(
                problem_response(
                    request,
                    status=400,
                    slug="bad-request-target",
                    title="Bad request target",
                    detail="The request target must be a path starting with '/'.",
                    request_id=request_id,
                )
            )
        codings = (
            [
                token.strip().lower()
                for value in request.headers.getall("Transfer-Encoding")
                for token in value.split(",")
            ]
            if "Transfer-Encoding" in request.headers
            else []
        )
        # RFC 9112 §6.1: chunked must be the only (final) coding we accept, and HTTP/1.0
        # messages with Transfer-Encoding have faulty framing. Anything else is how request
        # smuggling starts, and the upstream would see a body we never decoded.
        if codings and (codings != ["chunked"] or request.version < aiohttp.HttpVersion11):
            return _closing(
                problem_response(
                    request,
                    status=400,
                    slug="bad-transfer-encoding",
                    title="Unsupported transfer encoding",
                    detail="Only 'Transfer-Encoding: chunked' is accepted, on HTTP/1.1.",
                    request_id=request_id,
                )
            )
        length = request.content_length
        if length is not None and length > self._max_body_size:
            return self._too_large(request, request_id)
        return None

    def _too_large(self, request: web.Request, request_id: str) -> web.StreamResponse:
        return _closing(
            problem_response(
                request,
                status=413,
                slug="body-too-large",
                title="Request body too large",
                detail=f"The request body may be at most {self._max_body_size} bytes.",
                request_id=request_id,
            )
        )

    def _observe(self, status: int, started: float) -> None:
        if self._on_upstream is None:
            return
        try:
            self._on_upstream(status, time.monotonic() - started)
        except Exception:
            # Metrics must never break proxying.
            log.exception("on_upstream callback failed")

    async def _upload(self, request: web.Request, upload: _Upload) -> AsyncIterator[bytes]:
        """The request body, chunk by chunk as it arrives, stopped once it passes the limit."""
        while True:
            try:
                # aiohttp has no body read timeout of its own: without this a client that
                # stops mid-upload would hold an upstream connection for ever.
                async with asyncio.timeout(upload.idle_timeout):
                    chunk = await request.content.readany()
            except TimeoutError:
                upload.client_stalled = True
                upload.fail()
                raise
            except Exception:
                upload.client_failed = True
                upload.fail()
                raise
            if not chunk:
                return
            upload.sent += len(chunk)
            if upload.sent > upload.limit:
                upload.too_large = True
                upload.fail()
                raise _BodyTooLarge
            yield chunk

    async def _forward_http(
        self,
        request: web.Request,
        session: aiohttp.ClientSession,
        url: URL,
        headers: CIMultiDict[str],
        request_id: str,
    ) -> web.StreamResponse:
        if request.body_exists:
            upload = _Upload(limit=self._max_body_size, idle_timeout=self._read_timeout)
            body: AsyncIterator[bytes] | None = self._upload(request, upload)
        else:
            upload, body = _NOTHING_SENT, None
        started = time.monotonic()
        try:
            upstream = await session.request(
                request.method, url, headers=headers, data=body, allow_redirects=False
            )
        except (TimeoutError, aiohttp.ClientError, OSError, _BodyTooLarge) as exc:
            return self._failed(request, exc, upload, started, request_id)

        if body is not None:
            upload.attach(upstream.close)
        try:
            self._observe(upstream.status, started)
            content = upstream.content
            try:
                # Whatever body arrived with the head (all of a small one) goes out with the
                # head, in one write; nothing is waited for.
                first = content.read_nowait()
                complete = content.at_eof()
            except (TimeoutError, aiohttp.ClientError, OSError):
                first, complete = b"", False  # _relay_body meets the error again and cuts
            response_class = _CoalescingResponse if first or complete else web.StreamResponse
            reply_headers = response_headers_for_client(upstream.headers, self._private_cookies)
            # The id the logs and the app saw, in place of any the app set.
            reply_headers[X_REQUEST_ID] = request_id
            response = response_class(
                status=upstream.status, reason=upstream.reason, headers=reply_headers
            )
            try:
                await response.prepare(request)
                if complete:
                    await response.write_eof(first)
                    return response
                if first:
                    await response.write(first)
            except ConnectionError:
                log.debug("client went away before the response was sent")
                upstream.close()  # a half-read connection must not go back to the pool
                return response
            await self._relay_body(request, upstream, response, upload)
            return response
        finally:
            upstream.release()

    async def _relay_body(
        self,
        request: web.Request,
        upstream: aiohttp.ClientResponse,
        response: web.StreamResponse,
        upload: _Upload,
    ) -> None:
        while True:
            try:
                chunk = await upstream.content.readany()
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                if upload.failed:
                    log.info("request body failed after the response started")
                else:
                    log.warning("upstream response broke off: %s", _describe(exc))
                upstream.close()
                # The status line is gone already; only a cut connection tells the client
                # that what it got is incomplete (no final chunk, or short of Content-Length).
                _cut(request, response)
                return
            if not chunk:
                break
            try:
                await response.write(chunk)
            except ConnectionError:
                log.debug("client went away during the response")
                upstream.close()  # a half-read connection must not go back to the pool
                return
        try:
            await response.write_eof()
        except ConnectionError:
            log.debug("client went away at the end of the response")

    def _failed(
        self,
        request: web.Request,
        exc: BaseException,
        upload: _Upload,
        started: float,
        request_id: str,
    ) -> web.StreamResponse:
        if upload.too_large:
            return self._too_large(request, request_id)
        if upload.client_stalled:
            log.info("client stalled mid-upload for %ss", upload.idle_timeout)
            return body_stalled(request, request_id=request_id)
        transport = request.transport
        if upload.client_failed or transport is None or transport.is_closing():
            log.debug("client went away during the upload: %s", _describe(exc))
            return _closing(web.Response(status=400))
        # The app was not reached: the request was not proxied, whatever was decided before.
        request[OUTCOME] = "upstream_error"
        if isinstance(exc, TimeoutError):
            self._observe(504, started)
            log.warning("upstream timed out: %s", _describe(exc))
            return problem_response(
                request,
                status=504,
                slug="upstream-timeout",
                title="The app took too long",
                detail="The app behind the gateway did not answer in time. Try again shortly.",
                request_id=request_id,
            )
        self._observe(502, started)
        log.warning("upstream unavailable: %s", _describe(exc))
        return problem_response(
            request,
            status=502,
            slug="upstream-unavailable",
            title="The app is unavailable",
            detail="The app behind the gateway could not be reached. Try again shortly.",
            request_id=request_id,
        )

    async def _forward_websocket(
        self,
        request: web.Request,
        session: aiohttp.ClientSession,
        url: URL,
        headers: CIMultiDict[str],
        request_id: str,
        still_allowed: StillAllowed | None,
    ) -> web.StreamResponse:
        protocols = [
            p.strip()
            for value in request.headers.getall("Sec-WebSocket-Protocol", [])
            for p in value.split(",")
            if p.strip()
        ]
        for name in list(headers.keys()):
            if name.lower() in _WS_HANDSHAKE:
                headers.popall(name, None)
        started = time.monotonic()
        try:
            upstream_ws = await session.ws_connect(
                url,
                headers=headers,
                protocols=protocols,
                autoclose=False,
                autoping=True,
                max_msg_size=self._max_body_size,
                # No receive timeout: an idle socket is normal; sock_read must not kill it.
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=_WS_CLOSE_TIMEOUT),
            )
        except aiohttp.WSServerHandshakeError as exc:
            status = exc.status if 400 <= exc.status < 500 else 502
            self._observe(status, started)
            log.info("upstream refused the WebSocket: %s", exc.status)
            return problem_response(
                request,
                status=status,
                slug="websocket-refused",
                title="WebSocket refused",
                detail="The app behind the gateway did not accept this WebSocket.",
                request_id=request_id,
            )
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            return self._failed(request, exc, _NOTHING_SENT, started, request_id)

        self._observe(101, started)
        client_ws = web.WebSocketResponse(
            protocols=(upstream_ws.protocol,) if upstream_ws.protocol else (),
            autoclose=False,
            autoping=True,
            max_msg_size=self._max_body_size,
            timeout=_WS_CLOSE_TIMEOUT,
        )
        client_ws.headers[X_REQUEST_ID] = request_id
        try:
            await client_ws.prepare(request)
        except BaseException:
            await upstream_ws.close()
            raise
        try:
            await relay_websocket(
                client_ws, upstream_ws, still_allowed, self._ws_recheck_seconds, self._clock
            )
        finally:
            await upstream_ws.close()
        return client_ws


def _closing(response: web.StreamResponse) -> web.StreamResponse:
    # After refusing a request whose body may still be arriving, do not reuse the connection.
    response.force_close()
    return response


def _cut(request: web.Request, response: web.StreamResponse) -> None:
    response.force_close()
    transport = request.transport
    if transport is not None:
        transport.close()


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
