"""The upstream proxy and the front listener, end to end over real loopback sockets."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import ipaddress
import json
import logging
import random
import re
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from gateway.http.headers import IPNetwork
from gateway.http.problems import PROBLEM_BASE, problem_response
from gateway.ops.metrics import OUTCOMES, Metrics
from gateway.proxy.forwarder import UpstreamProxy
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


# --- the front: a minimal gateway whose one handler calls proxy.forward ---------------------

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
) -> AsyncIterator[Stack]:
    state = UpstreamState()
    upstream_runner, upstream_port = await run_upstream(state)
    observed: list[tuple[int, float]] = []
    networks: list[IPNetwork] = [ipaddress.ip_network(n) for n in trusted]
    proxy = UpstreamProxy(
        f"http://127.0.0.1:{upstream_port}",
        connect_timeout=2.0,
        read_timeout=read_timeout,
        max_body_size=max_body_size,
        trusted_proxies=networks,
        on_upstream=lambda status, seconds: observed.append((status, seconds)),
    )
    running = Stack(0, upstream_port, upstream_runner, state, proxy, observed)
    await proxy.start()
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
        await proxy.close()
        await running.upstream_runner.cleanup()


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    async with make_stack() as running:
        yield running


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    # The test client neither decompresses nor adds headers of its own unless asked.
    async with aiohttp.ClientSession(
        auto_decompress=False, skip_auto_headers=("Accept-Encoding", "User-Agent")
    ) as session:
        yield session


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


# --- headers -------------------------------------------------------------------------------


async def test_hop_by_hop_headers_are_removed_both_ways(
    stack: Stack, client: aiohttp.ClientSession
) -> None:
    headers = {
        "Connection": "close, X-Foo",
        "X-Foo": "1",
        "Keep-Alive": "timeout=5",
        "TE": "trailers",
        "Proxy-Authorization": "Basic eDp5",
        "X-Kept": "kept",
    }
    async with client.get(stack.url + "/echo", headers=headers) as resp:
        report = await resp.json()
    seen = received_headers(report)
    assert named(seen, "X-Foo") == []
    assert named(seen, "Keep-Alive") == []
    assert named(seen, "TE") == []
    assert named(seen, "Proxy-Authorization") == []
    assert all("x-foo" not in v.lower() for v in named(seen, "Connection"))
    assert named(seen, "X-Kept") == ["kept"]

    async with client.get(stack.url + "/_t/hop") as resp:
        assert resp.headers.getall("X-Visible") == ["yes"]
        for gone in ("X-Internal", "Keep-Alive", "Proxy-Authenticate"):
            assert gone not in resp.headers, gone
        assert "x-internal" not in resp.headers.get("Connection", "").lower()


async def test_gateway_headers_are_stripped_in_every_spelling(
    stack: Stack, client: aiohttp.ClientSession
) -> None:
    forged = [
        ("X-Gateway-User-Id", "forged"),
        ("x-gateway-user-id", "forged"),
        ("X_Gateway_User_Id", "forged"),
        ("X-GATEWAY-ROLE", "forged"),
        ("X-Gateway_Role", "forged"),
        ("X-Gateway-Admin", "forged"),
        ("X-Request-Id", "forged"),
    ]
    async with client.get(stack.url + "/echo", headers=CIMultiDict(forged)) as resp:
        report = await resp.json()
    seen = received_headers(report)
    gateway_like = [(k, v) for k, v in seen if k.lower().replace("_", "-").startswith("x-gateway-")]
    assert sorted(gateway_like) == sorted(IDENTITY.items())
    assert named(seen, "X-Request-Id") == [REQUEST_ID]
    assert all(v != "forged" for _, v in seen)


async def test_forwarding_headers_from_an_untrusted_peer_are_replaced(
    stack: Stack, client: aiohttp.ClientSession
) -> None:
    claims = {
        "X-Forwarded-For": "6.6.6.6",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "evil.example",
        "X-Real-IP": "6.6.6.6",
        "Forwarded": "for=6.6.6.6",
    }
    async with client.get(stack.url + "/echo", headers=claims) as resp:
        seen = received_headers(await resp.json())
    assert named(seen, "X-Forwarded-For") == ["127.0.0.1"]
    assert named(seen, "X-Forwarded-Proto") == ["http"]
    assert named(seen, "X-Forwarded-Host") == [f"127.0.0.1:{stack.front_port}"]
    assert named(seen, "X-Real-IP") == ["127.0.0.1"]
    assert named(seen, "Forwarded") == []  # one family of forwarding headers: X-Forwarded-*
    # Host is the upstream's own; the client's travels in X-Forwarded-Host.
    assert named(seen, "Host") == [f"127.0.0.1:{stack.upstream_port}"]


async def test_forwarding_headers_from_a_trusted_peer_are_extended(
    client: aiohttp.ClientSession,
) -> None:
    async with make_stack(trusted=("127.0.0.0/8",)) as trusted_stack:
        claims = {
            "X-Forwarded-For": "6.6.6.6, 198.51.100.7",
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "app.example.com",
            "X-Real-IP": "6.6.6.6",
            "Forwarded": "for=6.6.6.6",
        }
        async with client.get(trusted_stack.url + "/echo", headers=claims) as resp:
            seen = received_headers(await resp.json())
    assert named(seen, "X-Forwarded-For") == ["6.6.6.6, 198.51.100.7, 127.0.0.1"]
    assert named(seen, "X-Forwarded-Proto") == ["https"]
    assert named(seen, "X-Forwarded-Host") == ["app.example.com"]
    # The rightmost untrusted hop, not the client's own claim, is the real address.
    assert named(seen, "X-Real-IP") == ["198.51.100.7"]
    assert named(seen, "Forwarded") == []  # not extended by the gateway, so not passed on


async def test_no_headers_are_invented_for_the_upstream(stack: Stack) -> None:
    raw = await raw_exchange(
        stack.front_port,
        b"POST /echo HTTP/1.1\r\nHost: gw\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
    )
    seen = received_headers(json.loads(body_of(raw)))
    for absent in ("Accept-Encoding", "User-Agent", "Content-Type", "Accept", "Cookie"):
        assert named(seen, absent) == [], absent
    assert named(seen, "Content-Length") == ["3"]


async def test_no_headers_are_invented_for_a_get_without_a_body(stack: Stack) -> None:
    raw = await raw_exchange(
        stack.front_port, b"GET /echo HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n"
    )
    seen = received_headers(json.loads(body_of(raw)))
    for absent in (
        "Accept-Encoding",
        "User-Agent",
        "Content-Type",
        "Accept",
        "Cookie",
        "Content-Length",
        "Transfer-Encoding",
    ):
        assert named(seen, absent) == [], absent


async def test_multiple_set_cookie_headers_reach_the_client_and_the_proxy_keeps_none(
    stack: Stack, client: aiohttp.ClientSession
) -> None:
    async with client.get(stack.url + "/_t/cookies") as resp:
        assert resp.headers.getall("Set-Cookie") == [
            "a=1; Path=/; HttpOnly",
            "b=2; Path=/",
            "c=3; Path=/; Secure",
        ]
    # A fresh client (no jar of its own) proves the proxy's session stored nothing.
    async with (
        aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as fresh,
        fresh.get(stack.url + "/echo") as resp,
    ):
        seen = received_headers(await resp.json())
    assert named(seen, "Cookie") == []


async def test_cookies_and_repeated_headers_pass_through_in_order(stack: Stack) -> None:
    raw = await raw_exchange(
        stack.front_port,
        b"GET /echo HTTP/1.1\r\nHost: gw\r\nCookie: a=1\r\nAccept: text/plain\r\n"
        b"Cookie: b=2\r\nAccept: application/json\r\nConnection: close\r\n\r\n",
    )
    seen = received_headers(json.loads(body_of(raw)))
    assert named(seen, "Cookie") == ["a=1", "b=2"]
    assert named(seen, "Accept") == ["text/plain", "application/json"]


# --- path, method, body --------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "/a%2Fb/./c?q=%20&x=1&x=2",
        "/a/../b//c;p=1?x=%zz&&y",
        "/%E2%82%AC/%7e;x",
        "/public/%2e%2e/admin",
    ],
)
async def test_path_and_query_are_forwarded_byte_for_byte(stack: Stack, target: str) -> None:
    raw = await raw_exchange(
        stack.front_port,
        f"DELETE {target} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n".encode(),
    )
    assert status_of(raw) == 200
    report = json.loads(body_of(raw))
    assert report["raw_path"] == target
    assert report["method"] == "DELETE"


async def test_an_empty_query_is_the_one_thing_not_kept(stack: Stack) -> None:
    # yarl cannot represent "?" with nothing after it; "/x?" and "/x" reach the app alike.
    raw = await raw_exchange(
        stack.front_port, b"GET /x? HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n"
    )
    assert json.loads(body_of(raw))["raw_path"] == "/x"


# The C parser already refuses the non-standard TRACK (400); the pure-Python one lets the
# proxy answer it (405). Either way it never reaches the app.
@pytest.mark.parametrize(("method", "statuses"), [("TRACE", {405}), ("TRACK", {400, 405})])
async def test_trace_is_refused_before_the_upstream(
    stack: Stack, method: str, statuses: set[int]
) -> None:
    raw = await raw_exchange(
        stack.front_port, f"{method} /echo HTTP/1.1\r\nHost: gw\r\n\r\n".encode()
    )
    assert status_of(raw) in statuses
    assert stack.state.requests == 0


async def test_redirects_are_relayed_not_followed(
    stack: Stack, client: aiohttp.ClientSession
) -> None:
    async with client.get(stack.url + "/_t/redirect", allow_redirects=False) as resp:
        assert resp.status == 302
        assert resp.headers["Location"] == "/elsewhere?x=1"
    assert stack.state.requests == 1


async def test_the_head_is_not_held_back_until_the_body_comes(
    stack: Stack, client: aiohttp.ClientSession
) -> None:
    async with client.get(stack.url + "/_t/head-first") as resp:
        # The head reached the client while the upstream still holds the body back.
        assert resp.status == 200
        assert resp.headers["X-Head"] == "early"
        assert not stack.state.release_stream.is_set()
        stack.state.release_stream.set()
        assert await resp.read() == b"late body"


async def test_a_body_that_came_with_the_head_is_relayed_whole(
    stack: Stack, client: aiohttp.ClientSession
) -> None:
    raw = await raw_exchange(
        stack.front_port,
        b"GET /_t/small-chunked HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n",
    )
    head, body = raw.split(b"\r\n\r\n", 1)
    assert b"Transfer-Encoding: chunked" in head
    assert body == b"9\r\nall of it\r\n0\r\n\r\n"
    raw = await raw_exchange(
        stack.front_port, b"GET /bench HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n"
    )
    assert json.loads(body_of(raw))["raw_path"] == "/bench"  # Content-Length, in one piece


async def test_empty_answers_keep_their_framing(stack: Stack) -> None:
    raw = await raw_exchange(
        stack.front_port,
        b"GET /_t/no-content HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n",
    )
    assert raw.startswith(b"HTTP/1.1 204 ")
    assert b"X-Empty: yes" in raw
    assert body_of(raw) == b""
    head = await raw_exchange(
        stack.front_port, b"HEAD /bench HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n"
    )
    assert head.startswith(b"HTTP/1.1 200 ")
    assert body_of(head) == b""


async def test_large_bodies_stream_both_ways(stack: Stack, client: aiohttp.ClientSession) -> None:
    size = 20 * MiB
    expected = hashlib.sha256()

    async def body() -> AsyncIterator[bytes]:
        sent = 0
        while sent < size:
            piece = BLOCK[: size - sent]
            expected.update(piece)
            sent += len(piece)
            yield piece

    async with client.post(stack.url + "/echo", data=body()) as resp:
        report = await resp.json()
    assert report["body_length"] == size
    assert report["body_sha256"] == expected.hexdigest()

    got = hashlib.sha256()
    received = 0
    async with client.get(stack.url + f"/_t/big?size={size}") as resp:
        assert resp.headers["Content-Length"] == str(size)
        async for chunk in resp.content.iter_chunked(256 * 1024):
            got.update(chunk)
            received += len(chunk)
    assert received == size
    assert got.hexdigest() == expected.hexdigest()


async def test_response_chunks_arrive_before_the_upstream_finishes(
    stack: Stack, client: aiohttp.ClientSession
) -> None:
    async with client.get(stack.url + "/_t/stream") as resp:
        first = await asyncio.wait_for(resp.content.readline(), 2)
        assert first == b"first-chunk\n"
        assert not stack.state.release_stream.is_set()  # the upstream is still mid-response
        stack.state.release_stream.set()
        assert await resp.content.read() == b"second-chunk\n"


async def test_request_chunks_arrive_before_the_client_finishes(
    stack: Stack, client: aiohttp.ClientSession
) -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b"a" * 1000
        # Only a proxy that streams lets the upstream see the first part before the rest.
        await asyncio.wait_for(stack.state.upload_started.wait(), 2)
        yield b"b" * 1000

    async with client.post(stack.url + "/_t/upload-stream", data=body()) as resp:
        report = await resp.json()
    assert report["total"] == 2000
    assert 0 < report["first"] <= 1000


async def test_gzip_bodies_pass_through_compressed(
    stack: Stack, client: aiohttp.ClientSession
) -> None:
    async with client.get(stack.url + "/_t/gzip", headers={"Accept-Encoding": "gzip"}) as resp:
        assert resp.headers["Content-Encoding"] == "gzip"
        assert resp.headers["Content-Length"] == str(len(GZIPPED))
        assert await resp.read() == GZIPPED


async def test_head_keeps_content_length_and_sends_no_body(stack: Stack) -> None:
    raw = await raw_exchange(
        stack.front_port, b"HEAD /_t/gzip HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n"
    )
    assert status_of(raw) == 200
    assert f"Content-Length: {len(GZIPPED)}".encode() in raw
    assert body_of(raw) == b""


# --- limits and failures -------------------------------------------------------------------


async def test_declared_oversize_body_is_refused_before_the_upstream(
    client: aiohttp.ClientSession,
) -> None:
    async with make_stack(max_body_size=1000) as small:
        async with client.post(small.url + "/echo", data=b"x" * 1001) as resp:
            assert resp.status == 413
            assert resp.content_type == "application/problem+json"
            problem = await resp.json(content_type=None)
        assert problem["type"] == PROBLEM_BASE + "body-too-large"
        assert small.state.requests == 0
        async with client.post(small.url + "/echo", data=b"x" * 1000) as resp:
            assert (await resp.json())["body_length"] == 1000


async def test_chunked_oversize_body_is_cut_off_with_413(client: aiohttp.ClientSession) -> None:
    async with make_stack(max_body_size=256 * 1024) as small:

        async def body() -> AsyncIterator[bytes]:
            for _ in range(8):
                yield BLOCK  # 512 KiB in total, no Content-Length

        async with client.post(small.url + "/echo", data=body()) as resp:
            assert resp.status == 413
            assert resp.headers["Cache-Control"] == "no-store"
        # The upload was cut off upstream too: no upstream handler ever read a whole body.
        assert small.state.bodies == []
        async with client.post(small.url + "/echo", data=b"ok") as resp:
            assert resp.status == 200
        assert small.state.bodies == [2]


async def test_oversize_upload_after_the_response_started_cuts_the_connection(
    client: aiohttp.ClientSession,
) -> None:
    async with make_stack(max_body_size=256 * 1024) as small:
        headers_seen = asyncio.Event()

        async def body() -> AsyncIterator[bytes]:
            yield BLOCK
            # Go past the limit only once the app's early 200 has reached the client.
            await asyncio.wait_for(headers_seen.wait(), 2)
            for _ in range(7):
                yield BLOCK

        statuses: list[int] = []

        async def post_and_read() -> bytes:
            async with client.post(small.url + "/_t/early", data=body()) as resp:
                statuses.append(resp.status)
                headers_seen.set()
                return await resp.read()

        # The 200 was already on its way: only a cut connection can say "incomplete".
        with pytest.raises(aiohttp.ClientError):
            await post_and_read()
        assert statuses == [200]
        async with client.post(small.url + "/echo", data=b"ok") as resp:
            assert resp.status == 200


async def test_a_stalled_upload_gets_408_after_the_read_timeout() -> None:
    async with make_stack(read_timeout=0.2) as quick:
        # Without the timeout nobody would answer, and raw_exchange would give up at 5 s.
        raw = await raw_exchange(
            quick.front_port,
            b"POST /echo HTTP/1.1\r\nHost: gw\r\nContent-Length: 10\r\n\r\nabc",
        )
        assert status_of(raw) == 408
        assert quick.state.bodies == []


async def test_upstream_down_gives_502_and_the_gateway_recovers(
    stack: Stack, client: aiohttp.ClientSession
) -> None:
    async with client.get(stack.url + "/echo") as resp:
        assert resp.status == 200
    await stack.upstream_runner.cleanup()  # the app goes down; its port stays known
    async with client.get(stack.url + "/echo") as resp:
        assert resp.status == 502
        problem = await resp.json(content_type=None)
        assert problem["type"] == PROBLEM_BASE + "upstream-unavailable"
        assert problem["request_id"] == REQUEST_ID
        assert resp.headers["Cache-Control"] == "no-store"
    stack.upstream_runner, _ = await run_upstream(stack.state, stack.upstream_port)
    async with client.get(stack.url + "/echo") as resp:
        assert resp.status == 200
    assert [s for s, _ in stack.observed] == [200, 502, 200]


async def test_slow_upstream_gives_504_and_the_gateway_keeps_serving(
    client: aiohttp.ClientSession,
) -> None:
    async with make_stack(read_timeout=0.2) as quick:
        # The app answers only once released (or after 5 s): a 504 means the gateway gave up.
        async with client.get(quick.url + "/_t/slow", headers={"Accept": "text/html"}) as resp:
            assert resp.status == 504
            assert resp.content_type == "text/html"
            page = await resp.text()
        assert "The app took too long" in page
        quick.state.release_slow.set()
        async with client.get(quick.url + "/echo") as resp:
            assert resp.status == 200
        assert [s for s, _ in quick.observed] == [504, 200]


async def test_upstream_dying_mid_body_is_visible_to_the_client(
    stack: Stack, client: aiohttp.ClientSession
) -> None:
    async with client.get(stack.url + "/_t/broken") as resp:
        assert resp.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()
    async with client.get(stack.url + "/echo") as resp:
        assert resp.status == 200


async def test_client_leaving_mid_stream_is_quiet(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    noticed = asyncio.Event()

    class _Noticing(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith("client went away"):
                noticed.set()

    proxy_log = logging.getLogger("gateway.proxy.forwarder")
    handler = _Noticing()
    proxy_log.addHandler(handler)
    reader, writer = await asyncio.open_connection("127.0.0.1", stack.front_port)
    writer.write(b"GET /_t/stream HTTP/1.1\r\nHost: gw\r\n\r\n")
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"first-chunk\n"), 2)
    assert head.startswith(b"HTTP/1.1 200")
    writer.transport.abort()  # vanish without a word
    stack.state.release_stream.set()
    try:
        await asyncio.wait_for(noticed.wait(), 5)  # the gateway found the client gone
    finally:
        proxy_log.removeHandler(handler)
    raw = await raw_exchange(
        stack.front_port, b"GET /echo HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n"
    )
    assert status_of(raw) == 200
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert loud == [], [r.getMessage() for r in loud]


# --- error negotiation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "html"),
    [
        ({"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}, True),
        ({"Accept": "application/json"}, False),
        ({"Accept": "*/*"}, False),
        ({}, False),
        ({"Accept": "text/html;q=0, application/json"}, False),
        ({"Accept": "TEXT/HTML"}, True),
        ({"Accept": "application/xhtml+xml"}, False),
        ({"Accept": "text/html", "X-Requested-With": "XMLHttpRequest"}, False),
        ({"Accept": "text/html", "Sec-Fetch-Mode": "cors"}, False),
        ({"Accept": "text/html", "Sec-Fetch-Mode": "navigate"}, True),
    ],
)
async def test_errors_are_html_for_browsers_and_problem_json_otherwise(
    client: aiohttp.ClientSession, headers: dict[str, str], html: bool
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead_port = sock.getsockname()[1]
    proxy = UpstreamProxy(
        f"http://127.0.0.1:{dead_port}",
        connect_timeout=1.0,
        read_timeout=1.0,
        max_body_size=MiB,
        trusted_proxies=[],
    )
    await proxy.start()
    try:
        async with (
            serve_front(proxy) as port,
            client.get(f"http://127.0.0.1:{port}/x", headers=headers) as resp,
        ):
            assert resp.status == 502
            assert resp.headers["Cache-Control"] == "no-store"
            body = await resp.text()
            if html:
                assert resp.content_type == "text/html"
                assert "<h1>The app is unavailable</h1>" in body
                assert REQUEST_ID in body
                assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
            else:
                assert resp.content_type == "application/problem+json"
                problem = json.loads(body)
                assert problem == {
                    "type": PROBLEM_BASE + "upstream-unavailable",
                    "title": "The app is unavailable",
                    "status": 502,
                    "detail": problem["detail"],
                    "request_id": REQUEST_ID,
                }
    finally:
        await proxy.close()


# --- WebSockets ----------------------------------------------------------------------------


async def test_websocket_relay_text_binary_and_client_close(
    client: aiohttp.ClientSession,
) -> None:
    # A read timeout shorter than the idle pause below: it must not apply to open sockets.
    async with make_stack(read_timeout=0.2) as running:
        async with client.ws_connect(
            running.url + "/_t/ws?room=1",
            protocols=("other", "chat"),
            headers={"X-Gateway-User-Id": "forged", "x_gateway_role": "forged"},
        ) as ws:
            assert ws.protocol == "chat"
            hello = await ws.receive_json(timeout=2)
            seen = [(k, v) for k, v in hello["headers"]]
            gateway_like = [
                (k, v) for k, v in seen if k.lower().replace("_", "-").startswith("x-gateway-")
            ]
            assert sorted(gateway_like) == sorted(IDENTITY.items())
            assert hello["raw_path"] == "/_t/ws?room=1"
            await ws.send_str("hi")
            assert await ws.receive_str(timeout=2) == "echo:hi"
            await ws.send_bytes(b"\x00\x01\x02")
            assert await ws.receive_bytes(timeout=2) == b"\x02\x01\x00"
            await asyncio.sleep(0.4)
            await ws.send_str("still here")
            assert await ws.receive_str(timeout=2) == "echo:still here"
            await ws.close(code=4001, message=b"bye")
        await asyncio.wait_for(running.state.ws_closed.wait(), 2)
        assert running.state.ws_close == (4001, "bye")
        assert [s for s, _ in running.observed] == [101]


async def test_websocket_upstream_close_code_reaches_the_client(
    stack: Stack, client: aiohttp.ClientSession
) -> None:
    async with client.ws_connect(stack.url + "/_t/ws") as ws:
        await ws.receive_json(timeout=2)
        await ws.send_str("close-me")
        msg = await ws.receive(timeout=2)
        assert msg.type is WSMsgType.CLOSE
        assert msg.data == 4002
        assert msg.extra == "done"


async def test_websocket_client_vanishing_closes_the_upstream_side(stack: Stack) -> None:
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(stack.url + "/_t/ws")
        await ws.receive_json(timeout=2)
        assert ws._response.connection is not None
        transport = ws._response.connection.transport
        assert transport is not None
        transport.abort()  # no close frame, just gone
        await asyncio.wait_for(stack.state.ws_closed.wait(), 2)
        assert stack.state.ws_close == (1001, "")
        await ws.close()


async def test_websocket_refused_by_upstream_is_reported(
    stack: Stack, client: aiohttp.ClientSession
) -> None:
    # The echo route is not a WebSocket endpoint: it answers 200, not 101.
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        async with client.ws_connect(stack.url + "/not-a-socket"):
            pass
    assert info.value.status == 502


# --- the front listener's own HTTP limits --------------------------------------------------


async def test_start_site_reports_the_bound_port(stack: Stack) -> None:
    assert stack.front_port > 0


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /" + b"a" * 300 + b" HTTP/1.1\r\nHost: gw\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: gw\r\nX-Big: " + b"a" * 300 + b"\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: gw\r\nX-" + b"n" * 300 + b": 1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: gw\r\n"
        + b"".join(b"X-%d: 1\r\n" % i for i in range(200))
        + b"\r\n",
    ],
    ids=["request-line", "header-value", "header-name", "too-many-headers"],
)
async def test_oversized_heads_get_431(
    request_bytes: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    async with make_stack(max_line_size=200, max_field_size=200) as limited:
        raw = await raw_exchange(limited.front_port, request_bytes)
        assert status_of(raw) == 431
        problem = json.loads(body_of(raw))
        assert problem["type"] == PROBLEM_BASE + "headers-too-large"
        assert b"Cache-Control: no-store" in raw
        assert limited.state.requests == 0
        # Within the limits the same listener answers normally.
        ok = await raw_exchange(
            limited.front_port, b"GET /echo HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n"
        )
        assert status_of(ok) == 200
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"POST /echo HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Length: 5\r\n\r\n0\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        b"POST /echo HTTP/1.1\r\nHost: gw\r\nContent-Length: 5, 6\r\n\r\nhello!",
        b"POST /echo HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: gzip\r\n\r\nhello",
        b"POST /echo HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
        b"POST /echo HTTP/1.0\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"GET http://evil.example/x HTTP/1.1\r\nHost: gw\r\n\r\n",
        b"GET /a#b HTTP/1.1\r\nHost: gw\r\n\r\n",
    ],
    ids=[
        "cl-then-te",
        "te-then-cl",
        "duplicate-cl",
        "listed-cl",
        "te-gzip",
        "te-chunked-gzip",
        "te-gzip-chunked",
        "te-xchunked",
        "te-twice",
        "te-space-before-colon",
        "te-on-http-1.0",
        "absolute-form",
        "raw-fragment",
    ],
)
async def test_ambiguous_framing_gets_400_and_never_reaches_the_upstream(
    stack: Stack, request_bytes: bytes
) -> None:
    raw = await raw_exchange(stack.front_port, request_bytes)
    assert status_of(raw) == 400
    assert stack.state.requests == 0
    ok = await raw_exchange(
        stack.front_port, b"GET /echo HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n"
    )
    assert status_of(ok) == 200
    assert stack.state.requests == 1


async def test_a_failing_metrics_callback_does_not_break_proxying(
    client: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    def explode(status: int, seconds: float) -> None:
        raise RuntimeError("metrics down")

    state = UpstreamState()
    upstream_runner, upstream_port = await run_upstream(state)
    proxy = UpstreamProxy(
        f"http://127.0.0.1:{upstream_port}",
        connect_timeout=1.0,
        read_timeout=1.0,
        max_body_size=MiB,
        trusted_proxies=[],
        on_upstream=explode,
    )
    await proxy.start()
    try:
        async with (
            serve_front(proxy) as port,
            client.get(f"http://127.0.0.1:{port}/echo") as resp,
        ):
            assert resp.status == 200
    finally:
        await proxy.close()
        await upstream_runner.cleanup()
    assert any("on_upstream callback failed" in r.getMessage() for r in caplog.records)


def test_upstream_url_must_be_a_plain_origin() -> None:
    for bad in ("ftp://x", "http://", "http://x/base", "http://x/?q=1", "http://u:p@x"):
        with pytest.raises(ValueError, match="upstream URL"):
            UpstreamProxy(
                bad, connect_timeout=1, read_timeout=1, max_body_size=1, trusted_proxies=[]
            )


def _problem_app(with_templates: bool) -> web.Application:
    app = web.Application()
    if with_templates:
        setup_templates(app)
    return app


@pytest.mark.parametrize("with_templates", [True, False])
def test_problem_pages_escape_what_they_show(with_templates: bool) -> None:
    request = make_mocked_request(
        "GET", "/x", headers={"Accept": "text/html"}, app=_problem_app(with_templates)
    )
    response = problem_response(
        request,
        status=400,
        slug="bad-thing",
        title="<b>Bad</b>",
        detail='<script>alert("x")</script>',
        headers={"Retry-After": "5", "Cache-Control": "public"},
    )
    assert isinstance(response.text, str)
    assert "<script>" not in response.text
    assert "&lt;script&gt;" in response.text
    assert "<b>Bad</b>" not in response.text
    assert ("Go to the start page" in response.text) is with_templates  # error.html used
    assert response.headers["Cache-Control"] == "no-store"  # never overridable
    assert response.headers["Retry-After"] == "5"
    assert response.content_type == "text/html"


def test_problem_json_carries_extras_and_refuses_to_overwrite_members() -> None:
    request = make_mocked_request("GET", "/x", headers={"Accept": "application/json"})
    response = problem_response(
        request, status=429, slug="slow-down", title="Slow down", detail="Wait.", retry=3
    )
    assert response.content_type == "application/problem+json"
    assert isinstance(response.text, str)
    assert json.loads(response.text) == {
        "type": PROBLEM_BASE + "slow-down",
        "title": "Slow down",
        "status": 429,
        "detail": "Wait.",
        "retry": 3,
    }
    with pytest.raises(ValueError, match="may not replace"):
        problem_response(request, status=400, slug="x", title="t", detail="d", type="/evil")
    with pytest.raises(ValueError, match="slug"):
        problem_response(request, status=400, slug="Not A Slug", title="t", detail="d")


# --- metrics the proxy and the middleware report ---------------------------------------------


def _reference_metrics() -> tuple[CollectorRegistry, Counter, Histogram]:
    """The request and latency metrics as prometheus_client's own Counter and Histogram."""
    registry = CollectorRegistry(auto_describe=True)
    requests = Counter(
        "gateway_requests",
        "Requests on the front listener by outcome.",
        ["outcome"],
        registry=registry,
    )
    for name in OUTCOMES:
        requests.labels(outcome=name)
    latency = Histogram(
        "gateway_upstream_latency_seconds",
        "Time from forwarding a request to the app until its response headers arrived.",
        ["status_class"],
        buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        registry=registry,
    )
    for cls in ("1xx", "2xx", "3xx", "4xx", "5xx"):
        latency.labels(status_class=cls)
    return registry, requests, latency


def _without_created_times(text: str) -> str:
    return re.sub(r"(_created\{[^}]*\}) \S+", r"\1 <time>", text)


@pytest.mark.parametrize("seed", range(5))
def test_request_and_latency_metrics_expose_what_prometheus_client_would(seed: int) -> None:
    metrics = Metrics(sessions=lambda: 2.0, statements=lambda: 7.0)
    registry, requests, latency = _reference_metrics()
    rng = random.Random(seed)
    for _ in range(500):
        outcome = rng.choice(OUTCOMES)
        metrics.count(outcome)
        requests.labels(outcome=outcome).inc()
        status = rng.choice([99, 101, 200, 204, 302, 404, 502, 504, 600])
        seconds = rng.choice([0.0, 0.001, 0.0010001, 0.0025, 0.5, 10.0, 10.5, rng.random()])
        metrics.observe_upstream(status, seconds)
        latency.labels(status_class=f"{min(max(status // 100, 1), 5)}xx").observe(seconds)
    ours = _without_created_times(metrics.render().decode())
    theirs = _without_created_times(generate_latest(registry).decode())
    assert ours.startswith(theirs)  # the same families, series, values and order; then the rest
    assert "gateway_sessions_active 2.0" in ours
    assert "gateway_store_statements 7.0" in ours
    assert 'gateway_logins_total{result="failed"}' not in ours  # no sign-in counted yet


def test_an_unknown_outcome_is_refused() -> None:
    with pytest.raises(KeyError):
        Metrics().count("no-such-outcome")
