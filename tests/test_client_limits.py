"""What one client, or a crowd of them, can make the front listener hold: head bytes,
connections, and the memory both take; and how it answers requests that name no path."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from gateway.runtime.server import start_site
from tests.conftest import GatewayFactory, RunningGateway

CHILD = Path(__file__).with_name("head_flood_child.py")
ROOT = Path(__file__).resolve().parent.parent
KiB = 1024
MiB = 1024 * KiB


async def exchange(gateway: RunningGateway, *parts: bytes) -> bytes:
    """Send ``parts`` on a new connection, each once the gateway has taken the one before;
    everything the gateway sends until it closes it (a connection it held open would fail
    the test at the safety timeout)."""
    reader, writer = await asyncio.open_connection(gateway.url.host, gateway.url.port)
    try:
        for part in parts:
            writer.write(part)
            await writer.drain()
        async with asyncio.timeout(10):
            return await reader.read()
    finally:
        writer.close()


def status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def header_lines(count: int, size: int) -> bytes:
    return b"".join(b"X-Fill-%d: %s\r\n" % (i, b"a" * size) for i in range(count))


async def test_a_head_over_the_cap_gets_431_and_a_closed_connection(
    make_gateway: GatewayFactory,
) -> None:
    gateway = await make_gateway()  # the default cap, 64 KiB
    # 100 header lines of 1,000 bytes: each within the per-line limit, under the header
    # count limit, and 100 KB together.
    big = b"GET /public/hello HTTP/1.1\r\nHost: gw\r\n" + header_lines(100, 1000) + b"\r\n"
    answer = await exchange(gateway, big)
    assert status(answer) == 431, answer[:200]
    assert b"headers-too-large" in answer
    small = b"GET /public/hello HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n"
    answer = await exchange(gateway, small + header_lines(50, 1000) + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]


async def test_a_body_does_not_count_as_head(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway(server={"max_head_size": 2 * KiB})
    body = b"x" * MiB
    head = b"POST /public/hello HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n"
    answer = await exchange(gateway, head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
    # The sample app takes no POST there: it answers, not the gateway's head limit.
    assert answer.startswith(b"HTTP/1.1 405 "), answer[:200]


@contextlib.asynccontextmanager
async def recording_app() -> AsyncIterator[tuple[str, list[bytes]]]:
    """An app that reads each request's body whole and keeps it: yields (url, bodies)."""
    bodies: list[bytes] = []

    async def keep(request: web.Request) -> web.Response:
        bodies.append(await request.read())
        return web.Response(text=f"got {len(bodies[-1])} bytes")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", keep)
    runner, port = await start_site(app, "127.0.0.1", 0, max_line_size=8190, max_field_size=8190)
    try:
        yield f"http://127.0.0.1:{port}", bodies
    finally:
        await runner.cleanup()


CHUNKED_HEAD = (
    b"POST /public/hello HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)


def chunked(body: bytes, trailers: bytes, chunk: int = 1000) -> bytes:
    parts = [
        b"%x\r\n%s\r\n" % (len(body[i : i + chunk]), body[i : i + chunk])
        for i in range(0, len(body), chunk)
    ]
    return b"".join(parts) + b"0\r\n" + trailers + b"\r\n"


@pytest.mark.parametrize("split", [False, True], ids=["one-write", "trailers-after-body"])
async def test_trailers_over_the_head_cap_get_431_and_reach_nothing(
    make_gateway: GatewayFactory, split: bool
) -> None:
    async with recording_app() as (app_url, bodies):
        gateway = await make_gateway(app_url, server={"max_head_size": 4 * KiB})
        # 100 trailer lines of 1,000 bytes: each within the per-line limit, under the
        # header count limit, and 100 KB together.
        request = CHUNKED_HEAD + chunked(b"b" * 5000, header_lines(100, 1000))
        at = request.index(b"0\r\nX-Fill-0") if split else len(request)
        # Read to the close: nothing is held.
        answer = await exchange(gateway, request[:at], request[at:])
        assert status(answer) == 431, answer[:200]
        assert b"headers-too-large" in answer
        # The same request with its trailers within the cap goes through, so the app was
        # reachable: it is the trailers that kept the first one from it.
        answer = await exchange(gateway, CHUNKED_HEAD + chunked(b"b" * 5000, header_lines(2, 100)))
        assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
        assert bodies == [b"b" * 5000]


async def test_trailers_over_the_cap_after_the_app_has_answered_close_the_connection(
    make_gateway: GatewayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    gateway = await make_gateway(server={"max_head_size": 4 * KiB})
    reader, writer = await asyncio.open_connection(gateway.url.host, gateway.url.port)
    try:
        writer.write(CHUNKED_HEAD.replace(b"Connection: close\r\n", b"") + b"5\r\nhello\r\n")
        # The sample app answers a POST there (405) without waiting for the body.
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 405 "), head
        try:
            writer.write(b"0\r\n" + header_lines(100, 1000) + b"\r\n")
            await writer.drain()
            async with asyncio.timeout(10):
                rest = await reader.read()  # what is left of the 405, then the close
        except ConnectionResetError:
            rest = b""
        assert b"HTTP/1.1" not in rest, rest
    finally:
        writer.close()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


@pytest.mark.parametrize("trailers", [b"", b"X-Checksum: abc\r\n"], ids=["none", "small"])
async def test_a_large_chunked_upload_with_small_or_no_trailers_goes_through(
    make_gateway: GatewayFactory, trailers: bytes
) -> None:
    async with recording_app() as (app_url, bodies):
        gateway = await make_gateway(app_url, server={"max_head_size": 2 * KiB})
        # 1 MiB in chunks of 1,000 bytes: 7 KB of framing, over the cap, which counts none.
        body = bytes(range(256)) * 4096
        answer = await exchange(gateway, CHUNKED_HEAD + chunked(body, trailers))
        assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
        assert bodies == [body]


async def test_connections_past_the_cap_are_refused_and_counted(
    make_gateway: GatewayFactory,
) -> None:
    gateway = await make_gateway(server={"max_connections": 3})
    held = [await asyncio.open_connection(gateway.url.host, gateway.url.port) for _ in range(3)]
    # A request on each makes sure the gateway has taken every one of them.
    for reader, writer in held:
        writer.write(b"GET /public/hello HTTP/1.1\r\nHost: gw\r\n\r\n")
        await reader.readuntil(b"This page is public")
    refused = await exchange(gateway, b"GET /public/hello HTTP/1.1\r\nHost: gw\r\n\r\n")
    assert refused.startswith(b"HTTP/1.1 503 "), refused[:200]
    assert b"too-many-connections" in refused
    metrics = gateway.services.metrics.render().decode()
    assert "gateway_connections_refused_total 1.0" in metrics
    _, writer = held.pop()
    writer.close()
    await writer.wait_closed()
    # Once the gateway has seen the close, a new connection is served again.
    for _ in range(100):
        answer = await exchange(
            gateway, b"GET /public/hello HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n"
        )
        if not answer.startswith(b"HTTP/1.1 503 "):
            break
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    for _, writer in held:
        writer.close()


def resident_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * KiB
    raise AssertionError("no VmRSS in /proc status")


@contextlib.asynccontextmanager
async def gateway_process(
    workdir: Path, max_connections: int, max_head: int
) -> AsyncIterator[tuple[int, int]]:
    """The gateway in a child process: yields (pid, port)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(CHILD),
        str(workdir),
        str(max_connections),
        str(max_head),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        cwd=ROOT,
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(60):
            line = await proc.stdout.readline()
        assert line.strip().isdigit(), f"the child did not start: {line!r}"
        yield proc.pid, int(line)
    finally:
        proc.stdin.close()
        try:
            async with asyncio.timeout(30):
                await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def round_trip(port: int) -> None:
    """One answered request: the gateway has read whatever reached it before. Tried again
    while the gateway still counts connections the flood has left (it refuses with 503)."""
    for _ in range(100):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(b"GET /_gateway/health HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
            async with asyncio.timeout(30):
                answer = await reader.read()
        except ConnectionError:
            continue
        finally:
            writer.close()
        if answer.startswith(b"HTTP/1.1 200 "):
            return
    raise AssertionError("the gateway never answered a health check")


FLOOD_CONNECTIONS = 150
LINES_PER_HEAD = 120  # under aiohttp's 128 headers
LINE = 8000  # under aiohttp's 8,190 bytes a line: each head would be about 960 KB


# What each flooding connection sends before its ~1 MB of header lines: the start of a
# head, or a whole head and chunked body whose trailer section then never ends.
FLOOD_STARTS = {
    "head": b"GET /public/hello HTTP/1.1\r\nHost: gw\r\n",
    "trailers": CHUNKED_HEAD + b"5\r\nhello\r\n0\r\n",
}


async def flood_one(port: int, start: bytes) -> asyncio.StreamWriter | None:
    """Open a connection and send ``start`` and ~1 MB of header lines that never end; the
    writer, kept open, or None when the gateway would not take the connection."""
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return None
    try:
        writer.write(start)
        for i in range(LINES_PER_HEAD):
            writer.write(b"X-Fill-%d: %s\r\n" % (i, b"a" * LINE))
            await writer.drain()
    except OSError:
        pass  # cut off by the gateway: what the caps are for
    return writer


@pytest.mark.parametrize("max_connections", [32])
@pytest.mark.parametrize("kind", ["head", "trailers"])
async def test_a_flood_of_large_heads_leaves_the_gateways_memory_bounded(
    tmp_path: Path, max_connections: int, kind: str
) -> None:
    max_head = 64 * KiB
    async with gateway_process(tmp_path, max_connections, max_head) as (pid, port):
        await round_trip(port)
        before = resident_bytes(pid)
        async with asyncio.timeout(120):
            start = FLOOD_STARTS[kind]
            writers = await asyncio.gather(
                *(flood_one(port, start) for _ in range(FLOOD_CONNECTIONS))
            )
            await round_trip(port)  # the gateway has read what was sent before this
        during = resident_bytes(pid)
        for writer in writers:
            if writer is not None:
                writer.close()
    flood = FLOOD_CONNECTIONS * LINES_PER_HEAD * LINE  # about 144 MB sent and never ended
    # Each connection it keeps may hold one head up to the cap and one read past it.
    allowed = max_connections * (max_head + 256 * KiB) + 24 * MiB
    assert during - before < allowed, (during - before, allowed, flood)


@pytest.mark.parametrize(
    ("request_bytes", "expected"),
    [
        (b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 405),
        (b"OPTIONS * HTTP/1.1\r\nHost: gw\r\n\r\n", 400),
        (b"GET http://example.com/x HTTP/1.1\r\nHost: example.com\r\n\r\n", 400),
    ],
    ids=["connect", "options-asterisk", "absolute-form"],
)
async def test_targets_that_name_no_path_get_a_problem_and_a_closed_connection(
    gateway: RunningGateway, request_bytes: bytes, expected: int
) -> None:
    answer = await exchange(gateway, request_bytes)  # read to the close: nothing is held
    assert status(answer) == expected, answer[:300]
    head, body = answer.split(b"\r\n\r\n", 1)
    problem = json.loads(body)
    request_id = re.search(rb"\r\nX-Request-Id: ([0-9a-f]{32})\r\n", head)
    assert request_id is not None, head
    assert problem["request_id"] == request_id.group(1).decode()
    assert problem["status"] == expected


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /_gateway/login HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n",
        b"GET /public/hello HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n",
        b"GET /_gateway/nothing-here HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n",
        b"GET /api/whoami HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n",
        b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: gw\r\n\r\n",
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
    ],
    ids=["own-page", "proxied", "not-found", "unauthenticated", "line-too-long", "connect"],
)
async def test_no_response_names_the_server_software(
    gateway: RunningGateway, request_bytes: bytes
) -> None:
    answer = await exchange(gateway, request_bytes)
    head = answer.split(b"\r\n\r\n", 1)[0].lower()
    assert b"\r\nserver:" not in head, head
    assert b"aiohttp" not in head
    assert b"python" not in head
