"""The per-request context every route runs in: request ids on every response, and no route
registered without it."""

from __future__ import annotations

import asyncio
import base64
import os
import re

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.services import SERVICES
from gateway.web.context import add_route, require_context
from tests.conftest import GatewayFactory, RunningGateway, sign_in

REQUEST_ID = re.compile(r"[0-9a-f]{32}")


def request_id(response: aiohttp.ClientResponse) -> str:
    value = response.headers.get("X-Request-Id", "")
    assert REQUEST_ID.fullmatch(value), f"{response.status} {response.url}: {value!r}"
    return value


async def test_every_kind_of_response_names_its_request_id(gateway: RunningGateway) -> None:
    seen = []
    async with gateway.client() as client:
        for path, headers, status in [
            ("/_gateway/login", {}, 200),  # a page
            ("/api/whoami", {"Accept": "text/html"}, 302),  # sign-in redirect (raised)
            ("/api/whoami", {"Accept": "application/json"}, 401),  # problem+json
            ("/_gateway/nothing-here", {}, 404),
            ("/public/hello", {}, 200),  # proxied, streamed by the proxy
        ]:
            response = await client.get(path, headers=headers, allow_redirects=False)
            assert response.status == status, path
            seen.append(request_id(response))
        await sign_in(client)
        response = await client.get("/api/whoami")
        assert response.status == 200
        body = await response.json()
        seen.append(request_id(response))
        assert body["request_id"] == seen[-1]  # the app saw the id the client is told
        cookie = "; ".join(f"{c.key}={c.value}" for c in client.cookie_jar)
    seen.append(await websocket_handshake_id(gateway, cookie))
    assert len(set(seen)) == len(seen)


async def websocket_handshake_id(gateway: RunningGateway, cookie: str) -> str:
    """The request id in a relayed WebSocket's 101 response (client libraries hide its head)."""
    reader, writer = await asyncio.open_connection(gateway.url.host, gateway.url.port)
    writer.write(
        (
            f"GET /ws HTTP/1.1\r\nHost: {gateway.url.host}:{gateway.url.port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n"
            f"Cookie: {cookie}\r\n\r\n"
        ).encode()
    )
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    writer.close()
    await writer.wait_closed()
    assert head.startswith("HTTP/1.1 101"), head
    found = re.search(r"(?im)^X-Request-Id: (\S+)\r$", head)
    assert found is not None, head
    assert REQUEST_ID.fullmatch(found[1]), head
    return found[1]


async def test_an_unexpected_error_gets_a_500_with_its_request_id(
    gateway: RunningGateway,
) -> None:
    async def broken(_request: web.Request) -> web.StreamResponse:
        raise LookupError("a bug")

    app = web.Application()
    app[SERVICES] = gateway.services
    add_route(app, "GET", "/broken", broken)
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/broken", headers={"Accept": "application/json"})
        body = await response.json(content_type=None)
    assert response.status == 500
    rid = request_id(response)
    assert rid in body["detail"]
    assert "LookupError" not in await response.text()


def test_a_route_registered_without_the_context_is_refused() -> None:
    async def handler(_request: web.Request) -> web.StreamResponse:
        return web.Response()

    app = web.Application()
    add_route(app, "GET", "/fine", handler)
    require_context(app)  # every route wrapped: nothing to say
    app.router.add_get("/forgotten", handler)
    with pytest.raises(RuntimeError, match="/forgotten"):
        require_context(app)


@pytest.mark.parametrize(
    "path", ["/_gateway/health", "/_gateway/login", "/_gateway/api/openapi.json"]
)
async def test_the_gateways_own_pages_answer_head(gateway: RunningGateway, path: str) -> None:
    # Load balancers health-check with HEAD; every GET page of the gateway answers it.
    async with gateway.client() as client:
        response = await client.head(path, allow_redirects=False)
    assert response.status == 200
    request_id(response)


@pytest.mark.parametrize("target", ["/a%0Ab", "/_gateway/x%0Ay"])
async def test_a_path_with_an_encoded_newline_is_answered_in_context(
    gateway: RunningGateway, target: str
) -> None:
    reader, writer = await asyncio.open_connection(gateway.url.host, gateway.url.port)
    writer.write(
        f"GET {target} HTTP/1.1\r\nHost: gw\r\nAccept: application/json\r\n"
        "Connection: close\r\n\r\n".encode()
    )
    response = (await reader.read()).decode("latin-1")
    writer.close()
    await writer.wait_closed()
    status = int(response.split(" ", 2)[1])
    assert status in (400, 404), response  # the gate's bad-path, or the gateway's not-found
    assert re.search(r"(?im)^X-Request-Id: [0-9a-f]{32}\r$", response), response


async def test_a_form_trickled_to_the_gateway_gets_408_and_a_closed_connection(
    make_gateway: GatewayFactory,
) -> None:
    gateway = await make_gateway(server={"idle_timeout": 0.5})
    reader, writer = await asyncio.open_connection(gateway.url.host, gateway.url.port)
    writer.write(
        b"POST /_gateway/login HTTP/1.1\r\nHost: gw\r\nAccept: application/json\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nemail="
    )
    await writer.drain()
    response = await asyncio.wait_for(reader.read(), 5.0)  # answered, then closed
    writer.close()
    assert response.startswith(b"HTTP/1.1 408"), response
    assert b"request-timeout" in response


async def test_the_session_is_read_from_any_cookie_header_and_only_while_it_lasts(
    gateway: RunningGateway,
) -> None:
    async with gateway.client() as client:
        await sign_in(client)
        raw = next(c.value for c in client.cookie_jar if c.key == "gw-session")

    async def whoami(cookie: str) -> str | None:
        async with (
            gateway.client() as bare,
            bare.get("/api/whoami", headers={"Cookie": cookie}) as response,
        ):
            if response.status == 401:
                return None
            assert response.status == 200
            email: str = (await response.json())["headers"]["X-Gateway-User-Email"]
            return email

    headers = [
        f"gw-session={raw}",
        f"theme=dark; gw-session={raw}; lang=en",
        # Not the plain form: read by aiohttp's full cookie parser.
        f'note="a b"; gw-session={raw}',
        f"gw-session={raw}; pad={'x' * 2000}",  # too long to be remembered
    ]
    for cookie in headers:
        for _ in range(2):  # the second time from what the first remembered
            assert await whoami(cookie) == "ava@harbour.example", cookie
    assert await whoami(f"gw-session={raw[:-1]}") is None
    assert await whoami(f"gw-session-x={raw}") is None

    async with gateway.client() as client:
        client.cookie_jar.update_cookies({"gw-session": raw}, gateway.url)
        page = await client.get("/_gateway/logout")
        match = re.search(r'name="csrf" value="([^"]+)"', await page.text())
        assert match is not None
        out = await client.post(
            "/_gateway/logout", data={"csrf": match.group(1)}, allow_redirects=False
        )
        assert out.status == 303
    for cookie in headers:  # a header seen before names an ended session: no way in
        assert await whoami(cookie) is None, cookie


def test_remembered_session_hashes_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from aiohttp.test_utils import make_mocked_request

    from gateway.signin.sessions import hash_session_id
    from gateway.web.context import _SessionHashes

    hashes = _SessionHashes()
    monkeypatch.setattr(_SessionHashes, "MAX_ENTRIES", 3)

    def read(cookie: str) -> str | None:
        return hashes(make_mocked_request("GET", "/", headers={"Cookie": cookie}), "s")

    for n in range(3):
        assert read(f"s=id{n}") == hash_session_id(f"id{n}")
    assert len(hashes._known) == 3
    assert read("s=id3") == hash_session_id("id3")  # full: starts afresh
    assert len(hashes._known) == 1
    assert read("other=1") is None
    long = "s=id; pad=" + "x" * _SessionHashes.MAX_HEADER
    assert read(long) == hash_session_id("id")
    assert ("s", long) not in hashes._known
    wide = "s=id; pad=" + "\U0001f36a" * 100  # short, but four bytes a character
    assert read(wide) == hash_session_id("id")
    assert ("s", wide) not in hashes._known
