"""Which headers the proxy passes to the app and back, and what it adds: end to end over real
loopback sockets."""

from __future__ import annotations

import json

import aiohttp
import pytest
from aiohttp import web
from multidict import CIMultiDict

from tests.proxy_stack import (
    IDENTITY,
    REQUEST_ID,
    Stack,
    body_of,
    make_stack,
    named,
    raw_exchange,
    received_headers,
)


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


# --- what differs per listener: forwarding headers, and what the listener observes ---------


async def test_without_forwarding_headers_the_upstream_learns_nothing_of_the_client(
    client: aiohttp.ClientSession,
) -> None:
    claims = {
        "X-Forwarded-For": "6.6.6.6",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "evil.example",
        "X-Real-IP": "6.6.6.6",
        "Forwarded": "for=6.6.6.6",
        "X-Gateway-User-Id": "forged",
        "Connection": "X-Foo",
        "X-Foo": "1",
    }
    # Even from a trusted peer: this upstream is told nothing of who the client is.
    async with make_stack(forwarding=False, trusted=("127.0.0.0/8",)) as quiet:
        async with client.get(quiet.url + "/echo", headers=claims) as resp:
            seen = received_headers(await resp.json())
        upstream_port = quiet.upstream_port
    for absent in ("X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Real-IP"):
        assert named(seen, absent) == [], absent
    assert named(seen, "Forwarded") == []
    assert named(seen, "X-Foo") == []
    assert named(seen, "Host") == [f"127.0.0.1:{upstream_port}"]
    assert named(seen, "X-Request-Id") == [REQUEST_ID]
    assert named(seen, "X-Gateway-User-Id") == [IDENTITY["X-Gateway-User-Id"]]


async def test_the_observer_may_change_what_is_sent_and_sees_what_came_back(
    client: aiohttp.ClientSession,
) -> None:
    def swap_credentials(request: web.Request, headers: CIMultiDict[str]) -> None:
        # What a listener holding the upstream's credential does with the caller's.
        if headers.get("Authorization") == "Bearer gateway-token":
            headers["Authorization"] = "Bearer upstream-token"

    async with make_stack(sending=swap_credentials) as observed:
        headers = {"Authorization": "Bearer gateway-token"}
        async with client.get(observed.url + "/echo", headers=headers) as resp:
            seen = received_headers(await resp.json())
        async with client.get(observed.url + "/_t/hop") as resp:
            assert resp.status == 200
            assert "X-Internal" not in resp.headers
        assert [s for s, _ in observed.observed] == [200, 200]
        (echoed, hop) = observed.answers
    assert named(seen, "Authorization") == ["Bearer upstream-token"]
    # The listener sees the upstream's own headers, before the gateway filters them.
    assert echoed["Content-Type"] == "application/json; charset=utf-8"
    assert hop["X-Visible"] == "yes"
    assert hop["X-Internal"] == "secret"


async def test_an_observer_that_refuses_a_request_keeps_it_from_the_upstream(
    client: aiohttp.ClientSession,
) -> None:
    def refuse(request: web.Request, headers: CIMultiDict[str]) -> None:
        raise web.HTTPForbidden(text="not for you")

    async with make_stack(sending=refuse) as guarded:
        async with client.get(guarded.url + "/echo") as resp:
            assert resp.status == 403
            assert await resp.text() == "not for you"
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await client.ws_connect(guarded.url + "/_t/ws")
        assert refused.value.status == 403
        assert guarded.state.requests == 0
        assert guarded.observed == []
