"""What the proxy and the front listener refuse before the app sees it: methods, targets,
framing, sizes and heads."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator

import aiohttp
import pytest

from gateway.http.problems import PROBLEM_BASE
from gateway.proxy.refusals import BAD_TARGET, BAD_TRANSFER_ENCODING, Refusal, refuse, too_large
from tests.proxy_stack import BLOCK, Stack, body_of, make_stack, raw_exchange, status_of


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
        loop = asyncio.get_running_loop()
        started = loop.time()
        raw = await raw_exchange(
            quick.front_port,
            b"POST /echo HTTP/1.1\r\nHost: gw\r\nContent-Length: 10\r\n\r\nabc",
        )
        assert status_of(raw) == 408
        assert loop.time() - started < 2
        assert quick.state.bodies == []


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


# --- the refusal rules on their own, without sockets ---------------------------------------

LIMIT = 1000
HTTP11, HTTP10 = (1, 1), (1, 0)


@pytest.mark.parametrize(
    ("method", "target", "transfer_encodings", "version", "length", "slug"),
    [
        ("GET", "/", [], HTTP11, None, None),
        ("POST", "/a?b=c", [], HTTP11, LIMIT, None),
        ("POST", "/upload", ["chunked"], HTTP11, None, None),
        ("POST", "/upload", ["Chunked "], HTTP11, None, None),
        ("DELETE", "/%2e%2e/x;y", [], HTTP10, 0, None),
        ("PATCH", "/", [], HTTP11, LIMIT + 1, "body-too-large"),
        ("TRACE", "/", [], HTTP11, None, "method-not-allowed"),
        ("TRACK", "/", [], HTTP11, None, "method-not-allowed"),
        ("GET", "http://evil.example/x", [], HTTP11, None, "bad-request-target"),
        ("OPTIONS", "*", [], HTTP11, None, "bad-request-target"),
        ("GET", "/a#b", [], HTTP11, None, "bad-request-target"),
        ("GET", "", [], HTTP11, None, "bad-request-target"),
        ("POST", "/", ["gzip"], HTTP11, None, "bad-transfer-encoding"),
        ("POST", "/", ["gzip, chunked"], HTTP11, None, "bad-transfer-encoding"),
        ("POST", "/", ["chunked, gzip"], HTTP11, None, "bad-transfer-encoding"),
        ("POST", "/", ["chunked", "chunked"], HTTP11, None, "bad-transfer-encoding"),
        ("POST", "/", ["xchunked"], HTTP11, None, "bad-transfer-encoding"),
        ("POST", "/", [""], HTTP11, None, "bad-transfer-encoding"),
        ("POST", "/", ["chunked"], HTTP10, None, "bad-transfer-encoding"),
        # The first rule that applies gives the answer.
        ("TRACE", "http://x/", ["gzip"], HTTP10, LIMIT + 1, "method-not-allowed"),
        ("GET", "*", ["gzip"], HTTP11, LIMIT + 1, "bad-request-target"),
        ("POST", "/", ["gzip"], HTTP11, LIMIT + 1, "bad-transfer-encoding"),
    ],
)
def test_refusal_rules(
    method: str,
    target: str,
    transfer_encodings: list[str],
    version: tuple[int, int],
    length: int | None,
    slug: str | None,
) -> None:
    refusal = refuse(method, target, transfer_encodings, version, length, LIMIT)
    assert (refusal.slug if refusal else None) == slug


@pytest.mark.parametrize(
    ("refusal", "status", "detail"),
    [
        (refuse("TRACK", "/", [], HTTP11, None, LIMIT), 405, "TRACK is not passed to the app."),
        (refuse("GET", "*", [], HTTP11, None, LIMIT), 400, BAD_TARGET.detail),
        (refuse("POST", "/", ["gzip"], HTTP11, None, LIMIT), 400, BAD_TRANSFER_ENCODING.detail),
        (too_large(LIMIT), 413, "The request body may be at most 1000 bytes."),
    ],
)
def test_each_refusal_says_why(refusal: Refusal | None, status: int, detail: str) -> None:
    assert refusal is not None
    assert (refusal.status, refusal.detail) == (status, detail)
