"""A real upstream app that reports what reached it, and a front that forwards to it through
the proxy, both on loopback: what the proxy tests run against."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import ipaddress
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web
from multidict import CIMultiDictProxy

from gateway.http.headers import IPNetwork
from gateway.proxy.client import open_upstream_session
from gateway.proxy.forwarder import ExchangeObserver, Sending, UpstreamProxy
from gateway.runtime.server import start_site
from gateway.web.templating import setup_templates

IDENTITY = {"X-Gateway-User-Id": "u-42", "X-Gateway-Role": "member"}
REQUEST_ID = "req-test-1"
MiB = 1024 * 1024
BLOCK = bytes(range(256)) * 256  # 64 KiB of known bytes for large bodies


# --- the upstream: a real aiohttp app that reports what reached it ---------------------------


@dataclass
class UpstreamState:
    requests: int = 0
    release_stream: asyncio.Event = field(default_factory=asyncio.Event)
    upload_started: asyncio.Event = field(default_factory=asyncio.Event)
    release_slow: asyncio.Event = field(default_factory=asyncio.Event)
    ws_close: tuple[int, str] | None = None
    ws_closed: asyncio.Event = field(default_factory=asyncio.Event)
    bodies: list[int] = field(default_factory=list)  # lengths of bodies read to the end

    def release_all(self) -> None:
        for event in (self.release_stream, self.upload_started, self.release_slow):
            event.set()


STATE = web.AppKey("state", UpstreamState)


async def _count(request: web.Request) -> int:
    total = 0
    async for chunk in request.content.iter_any():
        total += len(chunk)
    return total


@web.middleware
async def _counting(request: web.Request, handler: Any) -> web.StreamResponse:
    request.app[STATE].requests += 1
    response: web.StreamResponse = await handler(request)
    return response


async def echo(request: web.Request) -> web.Response:
    digest = hashlib.sha256()
    total = 0
    try:
        async for chunk in request.content.iter_any():
            digest.update(chunk)
            total += len(chunk)
    except Exception as exc:  # the upload was cut off: answer quietly, as an app might
        raise web.HTTPBadRequest() from exc
    request.app[STATE].bodies.append(total)
    return web.json_response(
        {
            "method": request.method,
            "raw_path": request.raw_path,
            "headers": [[k, v] for k, v in request.headers.items()],
            "body_length": total,
            "body_sha256": digest.hexdigest(),
        }
    )


async def stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    await response.prepare(request)
    await response.write(b"first-chunk\n")
    await asyncio.wait_for(request.app[STATE].release_stream.wait(), 5)
    await response.write(b"second-chunk\n")
    await response.write_eof()
    return response


async def head_first(request: web.Request) -> web.StreamResponse:
    """The status and headers now, the body only once the test says so."""
    response = web.StreamResponse(headers={"X-Head": "early"})
    await response.prepare(request)
    await asyncio.wait_for(request.app[STATE].release_stream.wait(), 5)
    await response.write(b"late body")
    await response.write_eof()
    return response


async def small_chunked(request: web.Request) -> web.StreamResponse:
    """A whole body in one go, but chunked (no Content-Length)."""
    response = web.StreamResponse()
    response.enable_chunked_encoding()
    await response.prepare(request)
    await response.write(b"all of it")
    await response.write_eof()
    return response


async def no_content(_request: web.Request) -> web.Response:
    return web.Response(status=204, headers={"X-Empty": "yes"})


async def upload_stream(request: web.Request) -> web.Response:
    first = await request.content.readany()
    request.app[STATE].upload_started.set()
    rest = await _count(request)
    return web.json_response({"first": len(first), "total": len(first) + rest})


async def big(request: web.Request) -> web.StreamResponse:
    size = int(request.query["size"])
    response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    response.content_length = size
    await response.prepare(request)
    sent = 0
    while sent < size:
        piece = BLOCK[: size - sent]
        await response.write(piece)
        sent += len(piece)
    await response.write_eof()
    return response


GZIPPED = gzip.compress(b"hello, compressed world\n" * 100, mtime=0)


async def gzipped(request: web.Request) -> web.Response:
    return web.Response(
        body=GZIPPED,
        headers={"Content-Encoding": "gzip", "Content-Type": "text/plain"},
    )


async def cookies(request: web.Request) -> web.Response:
    response = web.Response(text="cookies")
    response.headers.add("Set-Cookie", "a=1; Path=/; HttpOnly")
    response.headers.add("Set-Cookie", "b=2; Path=/")
    response.headers.add("Set-Cookie", "c=3; Path=/; Secure")
    return response


async def hop(request: web.Request) -> web.Response:
    return web.Response(
        text="hop",
        headers={
            "Connection": "X-Internal",
            "X-Internal": "secret",
            "Keep-Alive": "timeout=5",
            "Proxy-Authenticate": "Basic",
            "X-Visible": "yes",
        },
    )


async def early(request: web.Request) -> web.StreamResponse:
    # Answers before reading the upload, as some apps do.
    response = web.StreamResponse()
    await response.prepare(request)
    await response.write(b"early\n")
    try:
        total = await _count(request)
    except ConnectionError:
        return response  # the gateway cut the upload off, as it should
    await response.write(f"{total}\n".encode())
    await response.write_eof()
    return response


async def slow(request: web.Request) -> web.Response:
    await asyncio.wait_for(request.app[STATE].release_slow.wait(), 5)
    return web.Response(text="late")


async def broken(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    response.content_length = 1000
    await response.prepare(request)
    await response.write(b"x" * 10)
    assert request.transport is not None
    request.transport.close()  # the app dies mid-body
    return response


async def redirect(request: web.Request) -> web.Response:
    raise web.HTTPFound("/elsewhere?x=1")


async def websocket(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(protocols=("chat",), autoclose=False)
    await ws.prepare(request)
    await ws.send_json(
        {"headers": [[k, v] for k, v in request.headers.items()], "raw_path": request.raw_path}
    )
    state = request.app[STATE]
    while True:
        msg = await ws.receive()
        if msg.type is WSMsgType.TEXT:
            if msg.data == "close-me":
                await ws.close(code=4002, message=b"done")
                break
            await ws.send_str("echo:" + msg.data)
        elif msg.type is WSMsgType.BINARY:
            await ws.send_bytes(msg.data[::-1])
        elif msg.type is WSMsgType.CLOSE:
            state.ws_close = (int(msg.data), str(msg.extra))
            await ws.close()
            break
        else:
            break
    state.ws_closed.set()
    return ws


def upstream_app(state: UpstreamState) -> web.Application:
    app = web.Application(middlewares=[_counting])
    app[STATE] = state
    app.router.add_get("/_t/stream", stream)
    app.router.add_get("/_t/head-first", head_first)
    app.router.add_get("/_t/small-chunked", small_chunked)
    app.router.add_get("/_t/no-content", no_content)
    app.router.add_post("/_t/upload-stream", upload_stream)
    app.router.add_get("/_t/big", big)
    app.router.add_get("/_t/gzip", gzipped)
    app.router.add_get("/_t/cookies", cookies)
    app.router.add_get("/_t/hop", hop)
    app.router.add_get("/_t/slow", slow)
    app.router.add_post("/_t/early", early)
    app.router.add_get("/_t/broken", broken)
    app.router.add_get("/_t/redirect", redirect)
    app.router.add_get("/_t/ws", websocket)
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


async def run_upstream(state: UpstreamState, port: int = 0) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(upstream_app(state), shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    return runner, int(runner.addresses[0][1])


# --- the front: a minimal listener whose one handler calls proxy.forward --------------------

PROXY = web.AppKey("proxy", UpstreamProxy)


async def front_handler(request: web.Request) -> web.StreamResponse:
    return await request.app[PROXY].forward(request, identity=IDENTITY, request_id=REQUEST_ID)


@asynccontextmanager
async def serve_front(
    proxy: UpstreamProxy, *, max_line_size: int = 8190, max_field_size: int = 8190
) -> AsyncIterator[int]:
    """A front app on loopback whose one route forwards everything; yields its port."""
    front = web.Application()
    front[PROXY] = proxy
    setup_templates(front)
    front.router.add_route("*", "/{tail:.*}", front_handler)
    runner, port = await start_site(
        front, "127.0.0.1", 0, max_line_size=max_line_size, max_field_size=max_field_size
    )
    try:
        yield port
    finally:
        await runner.cleanup()


@dataclass
class Stack:
    front_port: int
    upstream_port: int
    upstream_runner: web.AppRunner
    state: UpstreamState
    proxy: UpstreamProxy
    observed: list[tuple[int, float]]
    # The response headers the observer was shown, one entry per exchange.
    answers: list[CIMultiDictProxy[str]]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.front_port}"


@asynccontextmanager
async def make_stack(
    *,
    trusted: tuple[str, ...] = (),
    read_timeout: float = 5.0,
    max_body_size: int = 64 * MiB,
    max_line_size: int = 8190,
    max_field_size: int = 8190,
    forwarding: bool = True,
    sending: Sending | None = None,
) -> AsyncIterator[Stack]:
    state = UpstreamState()
    upstream_runner, upstream_port = await run_upstream(state)
    observed: list[tuple[int, float]] = []
    answers: list[CIMultiDictProxy[str]] = []

    def answered(
        _request: web.Request, status: int, headers: CIMultiDictProxy[str], seconds: float
    ) -> None:
        observed.append((status, seconds))
        answers.append(headers)

    networks: list[IPNetwork] = [ipaddress.ip_network(n) for n in trusted]
    session = open_upstream_session(connect_timeout=2.0, read_timeout=read_timeout)
    proxy = UpstreamProxy(
        session,
        f"http://127.0.0.1:{upstream_port}",
        max_body_size=max_body_size,
        trusted_proxies=networks,
        forwarding=forwarding,
        observer=ExchangeObserver(sending=sending, answered=answered),
    )
    running = Stack(0, upstream_port, upstream_runner, state, proxy, observed, answers)
    try:
        async with serve_front(
            proxy, max_line_size=max_line_size, max_field_size=max_field_size
        ) as front_port:
            running.front_port = front_port
            try:
                yield running
            finally:
                state.release_all()
    finally:
        await session.close()
        await running.upstream_runner.cleanup()


def received_headers(report: dict[str, Any]) -> list[tuple[str, str]]:
    return [(k, v) for k, v in report["headers"]]


def named(headers: list[tuple[str, str]], name: str) -> list[str]:
    return [v for k, v in headers if k.lower() == name.lower()]


async def raw_exchange(port: int, data: bytes) -> bytes:
    """Send raw bytes to the front; read one response (to its Content-Length, else to EOF)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(5):
            head = await reader.readuntil(b"\r\n\r\n")
            lengths = [
                line.split(b":", 1)[1]
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            ]
            if lengths and not data.startswith(b"HEAD "):
                return head + await reader.readexactly(int(lengths[0]))
            return head + await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()


def status_of(raw: bytes) -> int:
    return int(raw.split(b"\r\n", 1)[0].split(b" ")[1])


def body_of(raw: bytes) -> bytes:
    return raw.split(b"\r\n\r\n", 1)[1]
