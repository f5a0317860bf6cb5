"""When the app is down, slow or breaks off, or the client leaves: what the proxy answers,
and that it keeps serving."""

from __future__ import annotations

import asyncio
import json
import logging
import socket

import aiohttp
import pytest
from aiohttp import web
from multidict import CIMultiDictProxy

from gateway.http.problems import PROBLEM_BASE
from gateway.proxy.client import open_upstream_session
from gateway.proxy.forwarder import ExchangeObserver, UpstreamProxy
from tests.proxy_stack import (
    REQUEST_ID,
    MiB,
    Stack,
    UpstreamState,
    make_stack,
    raw_exchange,
    run_upstream,
    serve_front,
    status_of,
)


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
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with client.get(quick.url + "/_t/slow", headers={"Accept": "text/html"}) as resp:
            assert resp.status == 504
            assert resp.content_type == "text/html"
            page = await resp.text()
        assert loop.time() - started < 2
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
    reader, writer = await asyncio.open_connection("127.0.0.1", stack.front_port)
    writer.write(b"GET /_t/stream HTTP/1.1\r\nHost: gw\r\n\r\n")
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"first-chunk\n"), 2)
    assert head.startswith(b"HTTP/1.1 200")
    writer.transport.abort()  # vanish without a word
    await asyncio.sleep(0.05)
    stack.state.release_stream.set()
    await asyncio.sleep(0.1)
    raw = await raw_exchange(
        stack.front_port, b"GET /echo HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n"
    )
    assert status_of(raw) == 200
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert loud == [], [r.getMessage() for r in loud]


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
    session = open_upstream_session(connect_timeout=1.0, read_timeout=1.0)
    proxy = UpstreamProxy(session, f"http://127.0.0.1:{dead_port}", max_body_size=MiB)
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
        await session.close()


async def test_a_failing_metrics_callback_does_not_break_proxying(
    client: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    def explode(
        _request: web.Request, status: int, headers: CIMultiDictProxy[str], seconds: float
    ) -> None:
        raise RuntimeError("metrics down")

    state = UpstreamState()
    upstream_runner, upstream_port = await run_upstream(state)
    session = open_upstream_session(connect_timeout=1.0, read_timeout=1.0)
    proxy = UpstreamProxy(
        session,
        f"http://127.0.0.1:{upstream_port}",
        max_body_size=MiB,
        observer=ExchangeObserver(answered=explode),
    )
    try:
        async with (
            serve_front(proxy) as port,
            client.get(f"http://127.0.0.1:{port}/echo") as resp,
        ):
            assert resp.status == 200
    finally:
        await session.close()
        await upstream_runner.cleanup()
    assert any("exchange observer failed" in r.getMessage() for r in caplog.records)
