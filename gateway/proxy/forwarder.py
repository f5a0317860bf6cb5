"""Relay a request to the upstream app and its answer back, streamed both ways, WebSockets too."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import aiohttp
from aiohttp import hdrs, web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from gateway.http.headers import (
    X_REQUEST_ID,
    IPNetwork,
    client_address,
    request_headers_for_upstream,
    response_headers_for_client,
)
from gateway.http.problems import body_stalled, problem_response
from gateway.http.requests import CLIENT_SEEN, settled
from gateway.proxy.refusals import Refusal, refuse, too_large
from gateway.proxy.websocket import StillAllowed, is_websocket_upgrade, relay_websocket

log = logging.getLogger(__name__)

# What a listener sees of each exchange with its upstream (see ExchangeObserver).
Sending = Callable[[web.Request, CIMultiDict[str]], None]
Answered = Callable[[web.Request, int, CIMultiDictProxy[str], float], None]

_NO_VALUES: tuple[str, ...] = ()
_TRANSFER_ENCODING = hdrs.TRANSFER_ENCODING

# The headers of an answer the gateway made up itself (502, 504): none from the upstream.
_NO_HEADERS: CIMultiDictProxy[str] = CIMultiDictProxy(CIMultiDict())


@dataclass(frozen=True, kw_only=True)
class ExchangeObserver:
    """What a listener is shown of each exchange with its upstream; both parts optional.

    ``sending(request, headers)`` runs just before a request (or a WebSocket handshake) is
    sent, with the headers about to go out, which it may change (a listener that swaps
    Authorization for an upstream credential does it here); an exception from it fails the
    request, and nothing is sent. ``answered(request, status, headers, seconds)`` runs once
    the upstream's response head has come, ``seconds`` after sending (for an accepted
    WebSocket: 101, without headers); when the upstream could not be reached or took too
    long, with the 502 or 504 the client gets and no headers. An exception from
    ``answered`` is logged and the response relayed all the same.
    """

    sending: Sending | None = None
    answered: Answered | None = None


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
    idle_timeout: float | None
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
    """Forwards a listener's requests to one upstream origin through a client session the
    runtime owns (see :func:`gateway.proxy.client.open_upstream_session`).

    What differs between listeners is given here: the origin, whether the client is
    described to the upstream in forwarding headers, and what the listener observes.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        upstream_url: str,
        *,
        max_body_size: int,
        trusted_proxies: Sequence[IPNetwork] = (),
        forwarding: bool = True,
        observer: ExchangeObserver | None = None,
        ws_recheck_seconds: float = 15.0,
        clock: Callable[[], float] = time.time,
        private_cookies: Iterable[str] = (),
    ) -> None:
        """``forwarding``: add X-Forwarded-For, -Proto, -Host and X-Real-IP (extending those
        of a peer in ``trusted_proxies``), as the front listener does; without it, the
        upstream learns nothing of the client's address and every such header is dropped.
        """
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
        self._session = session
        self._origin = str(url.origin())
        self._max_body_size = max_body_size
        # The session's wait for upstream bytes also bounds each wait for the client's.
        self._read_timeout = session.timeout.sock_read
        self._trusted_proxies = tuple(trusted_proxies)
        self._forwarding = forwarding
        observer = observer or ExchangeObserver()
        self._sending = observer.sending
        self._answered = observer.answered
        self._ws_recheck_seconds = ws_recheck_seconds
        self._clock = clock
        self._private_cookies = frozenset(private_cookies)

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
        headers = request.headers
        refusal = refuse(
            request.method,
            request.raw_path,
            headers.getall(_TRANSFER_ENCODING, _NO_VALUES),
            request.version,
            request.content_length,
            self._max_body_size,
        )
        if refusal is not None:
            return settled(_refused(request, refusal, request_id))

        if self._forwarding:
            seen = request.get(CLIENT_SEEN)
            if seen is None:
                seen = client_address(request.remote, headers, self._trusted_proxies)
            real_ip, trusted = seen
            client_addr = request.remote or ""
        else:
            real_ip, trusted, client_addr = "", False, ""
        outgoing = request_headers_for_upstream(
            headers,
            client_addr=client_addr,
            scheme=request.scheme,
            # Not request.host: without a Host header that falls back to a blocking DNS call.
            host=headers.get("Host", ""),
            trusted_proxy=trusted,
            identity=identity,
            request_id=request_id,
            real_ip=real_ip,
            private_cookies=self._private_cookies,
            forwarding=self._forwarding,
        )
        # encoded=True: the path and query go upstream byte for byte, never re-normalised.
        url = URL(self._origin + request.raw_path, encoded=True)
        if is_websocket_upgrade(request.method, headers):
            return self._forward_websocket(request, url, outgoing, request_id, still_allowed)
        return self._forward_http(request, url, outgoing, request_id)

    def _observe(
        self, request: web.Request, status: int, headers: CIMultiDictProxy[str], started: float
    ) -> None:
        answered = self._answered
        if answered is None:
            return
        try:
            answered(request, status, headers, time.monotonic() - started)
        except Exception:
            # What a listener observes must never break proxying.
            log.exception("exchange observer failed")

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
        url: URL,
        headers: CIMultiDict[str],
        request_id: str,
    ) -> web.StreamResponse:
        if request.body_exists:
            upload = _Upload(limit=self._max_body_size, idle_timeout=self._read_timeout)
            body: AsyncIterator[bytes] | None = self._upload(request, upload)
        else:
            upload, body = _NOTHING_SENT, None
        sending = self._sending
        if sending is not None:
            sending(request, headers)
        started = time.monotonic()
        try:
            upstream = await self._session.request(
                request.method, url, headers=headers, data=body, allow_redirects=False
            )
        except (TimeoutError, aiohttp.ClientError, OSError, _BodyTooLarge) as exc:
            return self._failed(request, exc, upload, started, request_id)

        if body is not None:
            upload.attach(upstream.close)
        try:
            answered = self._answered
            if answered is not None:
                # Inline rather than through _observe: this runs on every proxied request.
                try:
                    answered(request, upstream.status, upstream.headers, time.monotonic() - started)
                except Exception:
                    log.exception("exchange observer failed")
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
            return _refused(request, too_large(self._max_body_size), request_id)
        if upload.client_stalled:
            log.info("client stalled mid-upload for %ss", upload.idle_timeout)
            return body_stalled(request, request_id=request_id)
        transport = request.transport
        if upload.client_failed or transport is None or transport.is_closing():
            log.debug("client went away during the upload: %s", _describe(exc))
            return _closing(web.Response(status=400))
        if isinstance(exc, TimeoutError):
            self._observe(request, 504, _NO_HEADERS, started)
            log.warning("upstream timed out: %s", _describe(exc))
            return problem_response(
                request,
                status=504,
                slug="upstream-timeout",
                title="The app took too long",
                detail="The app behind the gateway did not answer in time. Try again shortly.",
                request_id=request_id,
            )
        self._observe(request, 502, _NO_HEADERS, started)
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
        sending = self._sending
        if sending is not None:
            sending(request, headers)
        started = time.monotonic()
        try:
            upstream_ws = await self._session.ws_connect(
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
            answer = exc.headers if isinstance(exc.headers, CIMultiDictProxy) else _NO_HEADERS
            self._observe(request, status, answer, started)
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

        self._observe(request, 101, _NO_HEADERS, started)
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


def _refused(request: web.Request, refusal: Refusal, request_id: str) -> web.StreamResponse:
    return _closing(
        problem_response(
            request,
            status=refusal.status,
            slug=refusal.slug,
            title=refusal.title,
            detail=refusal.detail,
            request_id=request_id,
        )
    )


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
