"""What one listener lets its clients hold: the bytes of a request head (trailers after a
chunked body included), and connections open at once; past them, honest error codes."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong
from aiohttp.http_parser import RawRequestMessage
from aiohttp.streams import EMPTY_PAYLOAD, StreamReader
from aiohttp.web_protocol import _ErrInfo

from gateway.config import ServerConfig
from gateway.http.problems import PROBLEM_BASE
from gateway.runtime.chunks import ChunkScan, scan

log = logging.getLogger(__name__)

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]

log = logging.getLogger(__name__)

# The parser's own wording for "more header lines than max_headers"; a header block that is
# too large in total is a 431 just like one oversized line.
_TOO_MANY_HEADERS = "Too many headers"

_HEAD_END = b"\r\n\r\n"

DEFAULT_MAX_HEAD_SIZE = 64 * 1024
DEFAULT_MAX_CONNECTIONS = 1024


class _HeadTooLarge(BadHttpMessage):
    """A request head (request line and header fields together) over ``max_head_size``."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"Request head larger than {limit} bytes")


def _parse_error_status(exc: BaseException | None) -> int | None:
    """431 for a request line or header block over the limits, 400 for other bad framing."""
    if isinstance(exc, LineTooLong | _HeadTooLarge):
        return 431
    if isinstance(exc, BadHttpMessage):
        return 431 if exc.message.startswith(_TOO_MANY_HEADERS) else 400
    return None


@dataclass(frozen=True, kw_only=True)
class ClientLimits:
    """What one listener lets its clients hold: the bytes of a request head, and connections.

    aiohttp's own limits are per line and per header count; 128 headers of 8 KiB each would
    still let one connection hold a megabyte of head, and a thousand connections a gigabyte.
    """

    max_head_size: int = DEFAULT_MAX_HEAD_SIZE
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    # Told of every connection refused because max_connections were open (for metrics).
    on_refused: Callable[[], None] | None = None

    def __post_init__(self) -> None:
        if self.max_head_size < 1 or self.max_connections < 1:
            raise ValueError(f"invalid client limits: {self!r}")

    @classmethod
    def for_server(
        cls, server: ServerConfig, on_refused: Callable[[], None] | None = None
    ) -> ClientLimits:
        return cls(
            max_head_size=server.max_head_size,
            max_connections=server.max_connections,
            on_refused=on_refused,
        )


# The answer to a connection past max_connections, written before any request is read (so
# nothing of it is buffered) and followed by a close.
_BUSY_BODY = json.dumps(
    {
        "type": PROBLEM_BASE + "too-many-connections",
        "title": "Too many connections",
        "status": 503,
        "detail": "The gateway has as many client connections open as it accepts. Try again.",
    }
).encode()
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: application/problem+json\r\n"
    b"Cache-Control: no-store\r\n"
    b"Retry-After: 1\r\n"
    b"Connection: close\r\n"
    b"Content-Length: %d\r\n\r\n" % len(_BUSY_BODY)
) + _BUSY_BODY


def _head_size(message: RawRequestMessage) -> int:
    """The bytes of a parsed request head, as a client sends it with single spaces."""
    size = len(message.method) + len(message.path) + len(" HTTP/1.1\r\n") + 1 + 2
    for name, value in message.raw_headers:
        size += len(name) + len(value) + 4  # ": " and CRLF
    return size


class GatewayRequestHandler(web.RequestHandler):
    """aiohttp's connection handler with parser errors answered as problem+json, a cap on
    the bytes of a request head, and a cap on the connections open at once.

    aiohttp turns every parse failure into a 400 via ``handle_error`` before any app code
    (the request context included) runs, so this override is the one place a 431 can be
    chosen. It also logs client garbage at INFO without a traceback instead of as a server
    ERROR.
    """

    def __init__(self, manager: LimitedServer, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._server = manager
        self._limits = manager.limits
        self._accepted = False
        self._head_refused = False
        # Bytes of the request head being read, counted while no body is (self._body), and
        # the head's last bytes of the reads before (its end may straddle two reads).
        self._head_bytes = 0
        self._head_carry = b""
        self._body: StreamReader | None = None
        # While the open body is chunked: how far its framing has been read.
        self._chunks: ChunkScan | None = None
        # The body of the last request whose handler has returned its answer.
        self._answered: StreamReader | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        server = self._server
        if server.open_connections >= self._limits.max_connections:
            # Refused before anything is read or any task started; connection_lost then
            # has nothing to undo.
            self._manager = None
            assert isinstance(transport, asyncio.Transport)
            transport.write(_BUSY)
            transport.close()
            if not server.refusing:  # once per spell of refusals: a flood must not flood logs
                server.refusing = True
                log.warning("refusing connections: %d already open", server.open_connections)
            if self._limits.on_refused is not None:
                self._limits.on_refused()
            return
        self._accepted = True
        server.refusing = False
        server.open_connections += 1
        super().connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._accepted:
            self._accepted = False
            self._server.open_connections -= 1
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # One read may hold the end of a head, a body and more heads: each part is fed to
        # the parser on its own, so that what is counted is the part of the right kind.
        while data and not self._head_refused:
            if self._upgraded:
                super().data_received(data)  # a WebSocket's frames: no head to count
                return
            body = self._body
            if body is not None and body.is_eof():
                self._end_body()  # the body ended in an earlier read: a head starts
                body = None
            if body is None:
                data = self._read_head(data)
            elif self._chunks is None:
                # A body of known length: not counted; what follows it in this read (a
                # pipelined head) is not counted either, so a head may overrun by one read.
                super().data_received(data)
                return
            else:
                data = self._read_chunked(body, self._chunks, data)

    def answered(self, body: StreamReader) -> None:
        """Told by :func:`kept_trailers` that the handler of the request with ``body`` has
        returned its answer: trailers over the cap then close the connection."""
        self._answered = body

    def _end_body(self) -> None:
        self._body = self._chunks = self._answered = None
        self._head_bytes = 0
        self._head_carry = b""

    def _read_head(self, data: bytes) -> bytes:
        """Feed ``data`` up to the end of the head being read; the bytes after it."""
        carry = self._head_carry
        edge = (carry + data[:3]).find(_HEAD_END)
        if edge >= 0:
            cut = edge + len(_HEAD_END) - len(carry)
        else:
            found = data.find(_HEAD_END)
            cut = found + len(_HEAD_END) if found >= 0 else len(data)
        part, rest = data[:cut], data[cut:]
        self._head_bytes += len(part)
        count = self._request_count
        super().data_received(part)
        if self._request_count != count and self._messages:
            if self._head_bytes > self._limits.max_head_size and self._completed_too_large(
                self._request_count - count
            ):
                return b""
            self._end_body()
            message, payload = self._messages[-1]
            if payload is not EMPTY_PAYLOAD and not payload.is_eof():
                self._body = payload
                if isinstance(message, RawRequestMessage) and message.chunked:
                    # Trailers count against the cap together with the head they follow.
                    self._chunks = ChunkScan()
                    self._head_bytes = _head_size(message)
            return rest
        self._head_carry = (carry + part)[-(len(_HEAD_END) - 1) :]
        if self._head_bytes > self._limits.max_head_size and not self._upgraded:
            self._refuse_head()
            return b""
        return rest

    def _read_chunked(self, body: StreamReader, chunks: ChunkScan, data: bytes) -> bytes:
        """Feed ``data`` up to the end of a chunked body, its trailers counted before the
        parser sees them; the bytes after the body."""
        chunks, end = scan(chunks, data)
        if self._head_bytes + chunks.trailer_bytes > self._limits.max_head_size:
            self._head_refused = True
            if body is self._answered:
                # The handler answered without the rest of the body and aiohttp reads it
                # on to keep the connection: it ends here, and so does the connection.
                body.feed_eof()
                self.force_close()
            else:
                # The request is with its handler: its body fails, the upstream exchange
                # is cut, and the handler's answer is replaced by the 431.
                body.set_exception(_HeadTooLarge(self._limits.max_head_size))
            return b""
        if end is None:
            self._chunks = chunks
            super().data_received(data)
            return b""
        super().data_received(data[:end])
        self._end_body()
        return data[end:]

    def _completed_too_large(self, new: int) -> bool:
        """Whether one of the ``new`` heads the parser just completed is over the cap (only
        asked when this read took the count past it: one read can hold a whole head, or the
        end of one and more); if so, it and those after it are replaced by a 431."""
        fresh = list(self._messages)[-new:]
        for index, (message, _) in enumerate(fresh):
            if isinstance(message, RawRequestMessage) and (
                _head_size(message) > self._limits.max_head_size
            ):
                for _ in fresh[index:]:
                    self._messages.pop()
                self._request_count -= len(fresh) - index
                self._refuse_head()
                return True
        return False

    def _refuse_head(self) -> None:
        """Queue a 431 as aiohttp queues a parse error, and read nothing more."""
        self._head_refused = True
        exc = _HeadTooLarge(self._limits.max_head_size)
        self._messages.append((_ErrInfo(status=400, exc=exc, message=exc.message), EMPTY_PAYLOAD))
        self._request_count += 1
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        chosen = _parse_error_status(exc) if status == 400 else None
        if chosen is None or request.writer.output_size > 0:
            return super().handle_error(request, status, exc, message)
        # The parser's message may quote client bytes; keep the log line short.
        log.info("rejected malformed request (%d) from %s: %.200r", chosen, request.remote, exc)
        return _framing_problem(chosen)


def _framing_problem(status: int) -> web.Response:
    """The answer to a request the gateway will not read: 431 (head or trailers over the
    limits) or 400 (bad framing), and the connection closed."""
    if status == 431:
        slug, title = "headers-too-large", "Request header fields too large"
        detail = "The request line or headers are longer than the gateway accepts."
    else:
        slug, title = "bad-request", "Bad request"
        detail = "The request is not valid HTTP/1.1."
    body = {"type": PROBLEM_BASE + slug, "title": title, "status": status, "detail": detail}
    response = web.Response(
        status=status,
        text=json.dumps(body),
        content_type="application/problem+json",
        headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
    )
    # The byte stream can no longer be trusted to be framed correctly: close it.
    response.force_close()
    return response


class LimitedServer(web.Server):
    """A ``web.Server`` whose connections use :class:`GatewayRequestHandler`."""

    def __init__(self, *args: Any, limits: ClientLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits
        self.open_connections = 0
        self.refusing = False
        # web.Server passes everything but these on to each connection's handler.
        self._handler_kwargs = {
            k: v
            for k, v in kwargs.items()
            if k not in ("request_factory", "handler_cancellation", "loop")
        }

    def __call__(self) -> web.RequestHandler:
        return GatewayRequestHandler(self, loop=asyncio.get_running_loop(), **self._handler_kwargs)


async def _trailers_kept(handler: Handler, request: web.BaseRequest) -> web.StreamResponse:
    """``handler``'s answer to a request with a body, or the 431 if the body's trailers went
    past the head cap while it ran (the connection's handler then fails the body)."""
    try:
        response = await handler(request)
    except Exception:
        if not _trailers_refused(request):
            raise
        if request.writer.output_size > 0:
            request.protocol.force_close()
            raise
        return _refused_trailers(request)
    if not _trailers_refused(request):
        protocol = request.protocol
        if isinstance(protocol, GatewayRequestHandler):
            protocol.answered(request.content)
        return response
    if not response.prepared:
        return _refused_trailers(request)
    # The answer went out before the trailers came (the app answered without waiting for
    # the body): it cannot become a 431, and the connection, whose body was cut off, is
    # closed once it is written rather than read on.
    log.info("closed a connection whose trailers went over the head cap: %s", request.remote)
    request.protocol.force_close()
    return response


def _trailers_refused(request: web.BaseRequest) -> bool:
    return isinstance(request.content.exception(), _HeadTooLarge)


def _refused_trailers(request: web.BaseRequest) -> web.Response:
    log.info("rejected request trailers over the head cap from %s", request.remote)
    return _framing_problem(431)


def kept_trailers(handler: Handler) -> Handler:
    """``handler``, with a request whose body's trailers go past the head cap answered 431."""

    def handle(request: web.BaseRequest) -> Awaitable[web.StreamResponse]:
        if request.content is EMPTY_PAYLOAD:
            return handler(request)
        return _trailers_kept(handler, request)

    return handle
