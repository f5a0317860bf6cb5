"""Requests and answers through the proxy: path, method and bodies passed byte for byte,
streamed both ways, over real loopback sockets."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest

from gateway.proxy.client import open_upstream_session
from gateway.proxy.forwarder import UpstreamProxy
from tests.proxy_stack import BLOCK, GZIPPED, MiB, Stack, body_of, raw_exchange, status_of


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


async def test_upstream_url_must_be_a_plain_origin() -> None:
    async with open_upstream_session(connect_timeout=1, read_timeout=1) as session:
        for bad in ("ftp://x", "http://", "http://x/base", "http://x/?q=1", "http://u:p@x"):
            with pytest.raises(ValueError, match="upstream URL"):
                UpstreamProxy(session, bad, max_body_size=1)
