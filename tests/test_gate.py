"""What reaches the app through the whole gateway: path tricks, spoofed identity, own paths."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gateway.signin.sessions import LiveSession, hash_session_id
from tests.conftest import GatewayFactory, RunningGateway, sign_in


async def raw_get(gateway: RunningGateway, target: str, headers: str = "") -> tuple[int, str]:
    """Send a request line exactly as written (HTTP clients would tidy the path first)."""
    reader, writer = await asyncio.open_connection(gateway.url.host, gateway.url.port)
    request = (
        f"GET {target} HTTP/1.1\r\nHost: {gateway.url.host}:{gateway.url.port}\r\n"
        f"Accept: application/json\r\n{headers}Connection: close\r\n\r\n"
    )
    writer.write(request.encode())
    await writer.drain()
    response = (await reader.read()).decode("latin-1")
    writer.close()
    await writer.wait_closed()
    status = int(response.split(" ", 2)[1])
    return status, response


@pytest.mark.parametrize(
    "target",
    [
        "/api/whoami?x=/public/hello",
        "/public/../api/whoami",
        "/public/%2e%2e/api/whoami",
        "/public/%2E%2E/api/whoami",
        "/PUBLIC/hello",
        "//api/whoami",
        "/api/whoami;x",
        "/public;x/../api/whoami",
        "/public%2f..%2fapi/whoami",
    ],
)
async def test_tricky_paths_still_need_sign_in(gateway: RunningGateway, target: str) -> None:
    status, response = await raw_get(gateway, target)
    assert status in (400, 401), response
    assert "X-Gateway-User-Id" not in response


@pytest.mark.parametrize(
    "target",
    [
        "/api/whoami/..;/public/hello",
        "/api/whoami;x/..;/../public/hello",
        "/api/whoami/%2e%2e/public/hello",
        "/api/whoami/../public/hello",
        "/api//../public/hello",
        "/public/./hello",
    ],
)
async def test_paths_that_only_resolve_to_public_ones_still_need_sign_in(
    gateway: RunningGateway, target: str
) -> None:
    # The app may read `..`, `;` and escapes differently from the gateway (many apps take
    # the path literally), so only a path already in normal form may skip sign-in.
    status, response = await raw_get(gateway, target)
    assert status in (400, 401), response


@pytest.mark.parametrize(
    "target",
    [
        "/x/../_gateway/admin/api/policies",
        "/public/%2e%2e/_gateway/login",
        "//_gateway/x",
        "/_gateway",
        "/_gateway?x=1",
        "/_gateway./x",
        "/_gateway%2e/x",
        "/_gateway.%20/x",
        "/_GATEWAY/login",
    ],
)
async def test_paths_into_the_gateways_namespace_never_reach_the_app(
    gateway: RunningGateway, target: str
) -> None:
    async with gateway.client() as client:
        await sign_in(client)
        cookie = "".join(f"{c.key}={c.value}; " for c in client.cookie_jar)
    status, response = await raw_get(gateway, target, headers=f"Cookie: {cookie}\r\n")
    assert status == 400, response


async def test_public_path_is_served_without_sign_in(gateway: RunningGateway) -> None:
    status, response = await raw_get(gateway, "/public/hello")
    assert status == 200
    assert "This page is public" in response


@pytest.mark.parametrize(
    "spoof",
    [
        "X-Gateway-User-Id: usr_attacker\r\n",
        "x-gateway-user-id: usr_attacker\r\n",
        "X_Gateway_User_Id: usr_attacker\r\n",
        "X-Gateway.User.Id: usr_attacker\r\n",
        "HTTP_X_GATEWAY_USER_ID: usr_attacker\r\n",
        "X-GATEWAY-ROLE: principal\r\n",
        "X-Gateway-Mfa: verified\r\n",
        "X-Gateway-Token: stolen\r\n",
        "x-gateway-anything-else: 1\r\n",
    ],
)
async def test_client_identity_headers_never_reach_the_app(
    make_gateway: GatewayFactory, echo_url: str, spoof: str
) -> None:
    # Through an app that reports every header as it arrived, whatever its spelling.
    gateway: RunningGateway = await make_gateway(echo_url)
    async with gateway.client() as client:
        await sign_in(client, email="max@harbour.example")
        name, value = spoof.rstrip("\r\n").split(": ", 1)
        response = await client.get("/api/whoami", headers={name: value})
        seen = [(k, v) for k, v in (await response.json())["headers"]]
    user = await gateway.services.store.users.find_by_email("max@harbour.example")
    assert user is not None
    assert value not in [v for _, v in seen]
    folded = {k.lower().replace("_", "-").replace(".", "-"): v for k, v in seen}
    assert sorted(k for k in folded if "gateway" in k) == [
        "x-gateway-mfa",
        "x-gateway-org-id",
        "x-gateway-role",
        "x-gateway-token",
        "x-gateway-user-email",
        "x-gateway-user-id",
    ]
    assert folded["x-gateway-user-id"] == user.id
    assert folded["x-gateway-role"] == "member"
    assert folded["x-gateway-mfa"] == "not-required"
    assert folded["x-gateway-token"].startswith("xgt_")  # the gateway's, never the client's


async def echo_raw(gateway: RunningGateway, request: bytes) -> tuple[int, dict[str, Any]]:
    """Send raw bytes to the gateway in front of the echo app: the status, and the report."""
    reader, writer = await asyncio.open_connection(gateway.url.host, gateway.url.port)
    writer.write(request)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body) if status == 200 else {}


@pytest.mark.parametrize(
    "header",
    [
        "X-Original-URL: /admin",
        "X-Rewrite-URL: /admin",
        "X-Remote-User: admin",
        "Remote-User: admin",
        "X-Auth-Request-User: admin",
        "X-Forwarded-User: admin",
        "X-Forwarded-Email: admin@evil.example",
        "X_Custom_Thing: admin",
    ],
)
async def test_other_proxies_identity_headers_never_reach_the_app_even_unauthenticated(
    make_gateway: GatewayFactory, echo_url: str, header: str
) -> None:
    gateway: RunningGateway = await make_gateway(
        echo_url, security={"trusted_proxies": ["127.0.0.1/32"]}
    )
    status, report = await echo_raw(
        gateway,
        f"GET /public/x HTTP/1.1\r\nHost: gw\r\n{header}\r\nConnection: close\r\n\r\n".encode(),
    )
    assert status == 200
    name = header.split(":", 1)[0].lower()
    assert [k for k, _ in report["headers"] if k.lower() == name] == []


async def test_framing_headers_are_not_passed_on_as_they_came(
    make_gateway: GatewayFactory, echo_url: str
) -> None:
    gateway: RunningGateway = await make_gateway(
        echo_url, upstream={"drop_underscore_headers": False}
    )
    status, report = await echo_raw(
        gateway,
        b"POST /public/x HTTP/1.1\r\nHost: gw\r\nTransfer_Encoding: chunked\r\n"
        b"Content-Length: 005\r\nConnection: close\r\n\r\nhello",
    )
    assert status == 200
    headers = [(k.lower(), v) for k, v in report["headers"]]
    assert ("content-length", "5") in headers
    assert not [k for k, _ in headers if k.replace("_", "-") == "transfer-encoding"]
    assert report["body"] == "hello"


async def test_spoofed_identity_without_session_gets_nothing(gateway: RunningGateway) -> None:
    status, _ = await raw_get(gateway, "/api/whoami", headers="X-Gateway-User-Id: usr_attacker\r\n")
    assert status == 401


async def test_unknown_gateway_paths_are_never_proxied(gateway: RunningGateway) -> None:
    async with gateway.client() as client:
        await sign_in(client)
        response = await client.get("/_gateway/nothing-here")
        body = await response.json(content_type=None)
    assert response.status == 404
    assert body["type"].endswith("/not-found")


async def test_app_receives_the_request_id_the_gateway_logged(gateway: RunningGateway) -> None:
    async with gateway.client() as client:
        await sign_in(client)
        response = await client.get("/api/whoami", headers={"X-Request-Id": "client-chosen"})
        body = await response.json()
    assert body["request_id"] == response.headers["X-Request-Id"]
    assert body["request_id"] != "client-chosen"


async def test_app_down_gives_502_and_the_gateway_keeps_serving(
    make_gateway: GatewayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    gateway: RunningGateway = await make_gateway(app_url="http://127.0.0.1:9")
    async with gateway.client() as client:
        await sign_in(client)
        caplog.set_level(logging.INFO, logger="gateway.access")
        response = await client.get("/api/whoami", headers={"Accept": "application/json"})
        body = await response.json(content_type=None)
        assert response.status == 502
        assert body["type"].endswith("/upstream-unavailable")
        health = await client.get("/_gateway/health")
        assert health.status == 200
    (logged,) = [r for r in caplog.records if getattr(r, "path", None) == "/api/whoami"]
    assert logged.__dict__["outcome"] == "upstream_error"  # not "proxied": it never was
    metrics = gateway.services.metrics.render().decode()
    assert 'gateway_requests_total{outcome="upstream_error"} 1.0' in metrics
    assert 'gateway_requests_total{outcome="proxied"} 0.0' in metrics


async def test_health_and_metrics(gateway: RunningGateway) -> None:
    async with gateway.client() as client:
        await sign_in(client)
        await client.get("/api/whoami")
        health = await (await client.get("/_gateway/health")).json()
        metrics = await (await client.get("/_gateway/metrics")).text()
    assert health == {"status": "ok", "checks": {"store": "ok"}}
    assert 'gateway_requests_total{outcome="proxied"} 1.0' in metrics
    assert 'gateway_logins_total{result="succeeded"} 1.0' in metrics
    assert "gateway_upstream_latency_seconds_bucket" in metrics
    assert "gateway_sessions_active 1.0" in metrics


async def test_metrics_are_refused_to_other_networks(make_gateway: GatewayFactory) -> None:
    gateway: RunningGateway = await make_gateway(server={"metrics_allow": ["10.0.0.0/8"]})
    async with gateway.client() as client:
        response = await client.get("/_gateway/metrics")
    assert response.status == 404


async def test_the_not_found_page_gives_a_reference(gateway: RunningGateway) -> None:
    async with gateway.client() as client:
        page = await client.get("/_gateway/no-such-page", headers={"Accept": "text/html"})
        text = await page.text()
        problem = await (await client.get("/_gateway/no-such-page")).json(content_type=None)
    assert page.status == 404
    assert f"reference <code>{page.headers['X-Request-Id']}</code>" in text
    assert len(problem["request_id"]) == 32


async def test_the_icon_is_served_to_every_browser_and_cached(
    make_gateway: GatewayFactory,
) -> None:
    gateway: RunningGateway = await make_gateway(policies=True)
    gateway.clock.set(1_798_722_000.0)  # after the deadline: the AU user is blocked
    html = {"Accept": "text/html"}
    async with gateway.client() as client:
        for path in ("/_gateway/favicon.ico", "/favicon.ico"):  # signed out
            icon = await client.get(path, headers=html, allow_redirects=False)
            assert icon.status == 200, path
            assert icon.content_type == "image/x-icon"
            assert (await icon.read())[:4] == b"\x00\x00\x01\x00"  # an ICO file
            assert "max-age" in icon.headers["Cache-Control"]
        again = await client.get(
            "/_gateway/favicon.ico", headers={"If-None-Match": icon.headers["ETag"]}
        )
        assert again.status == 304
        await sign_in(client, email="max@harbour.example")  # blocked from the app
        blocked = await client.get("/favicon.ico", headers=html, allow_redirects=False)
        assert blocked.status == 200
        login = await (await client.get("/_gateway/logout")).text()
    assert '<link rel="icon" href="/_gateway/favicon.ico">' in login


async def test_gateway_session_cookie_never_reaches_the_app(gateway: RunningGateway) -> None:
    async with gateway.client() as client:
        await sign_in(client)
        client.cookie_jar.update_cookies({"theme": "dark"}, gateway.url)
        status, response = await raw_get(
            gateway,
            "/api/echo-cookies",
            headers="".join(f"Cookie: {c.key}={c.value}\r\n" for c in client.cookie_jar),
        )
    assert status == 200, response
    assert response.rstrip().endswith('"theme=dark"')


async def test_websocket_reaches_the_app_for_a_signed_in_user(gateway: RunningGateway) -> None:
    async with gateway.client() as client:
        await sign_in(client, email="max@harbour.example")
        async with client.ws_connect("/ws") as ws:
            assert await ws.receive_str() == "hello max@harbour.example"
            await ws.send_str("ping")
            assert await ws.receive_str() == "ping"


async def test_websocket_without_session_is_refused(gateway: RunningGateway) -> None:
    async with gateway.client() as client:
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await client.ws_connect("/ws")
    assert info.value.status == 401


async def test_a_host_outside_the_allowed_list_never_reaches_the_app(
    make_gateway: GatewayFactory,
) -> None:
    gateway: RunningGateway = await make_gateway(server={"allowed_hosts": ["app.example.com"]})
    status, response = await raw_get(gateway, "/public/hello")  # Host: 127.0.0.1:port
    assert status == 421, response
    reader, writer = await asyncio.open_connection(gateway.url.host, gateway.url.port)
    writer.write(
        b"GET /public/hello HTTP/1.1\r\nHost: APP.example.com\r\nConnection: close\r\n\r\n"
    )
    allowed = (await reader.read()).decode()
    writer.close()
    assert allowed.startswith("HTTP/1.1 200")


async def test_an_open_websocket_is_closed_when_its_session_is_signed_out(
    make_gateway: GatewayFactory,
) -> None:
    gateway: RunningGateway = await make_gateway(upstream={"websocket_recheck_seconds": 0.05})
    async with gateway.client() as client:
        raw = (await sign_in(client, email="max@harbour.example")).cookies["gw-session"].value
        async with client.ws_connect("/ws") as ws:
            assert await ws.receive_str() == "hello max@harbour.example"
            await gateway.services.sessions.end(hash_session_id(raw))
            message = await asyncio.wait_for(ws.receive(), timeout=5)
    assert message.type is aiohttp.WSMsgType.CLOSE
    assert ws.close_code == 1008


async def test_an_open_websocket_is_closed_when_the_2fa_deadline_passes(
    make_gateway: GatewayFactory,
) -> None:
    gateway: RunningGateway = await make_gateway(
        policies=True, upstream={"websocket_recheck_seconds": 0.05}
    )
    gateway.clock.set(1_798_722_000.0 - 60)  # a minute before the end of 31 December, Sydney
    async with gateway.client() as client:
        await sign_in(client, email="max@harbour.example")
        async with client.ws_connect("/ws") as ws:
            assert await ws.receive_str() == "hello max@harbour.example"
            await ws.send_str("still here")
            assert await ws.receive_str() == "still here"
            gateway.clock.advance(61)
            message = await asyncio.wait_for(ws.receive(), timeout=5)
    assert message.type is aiohttp.WSMsgType.CLOSE
    assert ws.close_code == 1008


async def test_socket_traffic_alone_keeps_the_session_alive_and_its_end_ends_it(
    make_gateway: GatewayFactory,
) -> None:
    gateway: RunningGateway = await make_gateway(upstream={"websocket_recheck_seconds": 0.05})
    sessions = gateway.services.sessions
    checked: asyncio.Queue[float] = asyncio.Queue()
    keep_alive = sessions.keep_alive

    async def watched(live: LiveSession, last_activity: float) -> bool:
        still = await keep_alive(live, last_activity)
        checked.put_nowait(last_activity)  # the re-check ran, having seen this activity
        return still

    sessions.keep_alive = watched  # type: ignore[method-assign]
    async with gateway.client() as client:
        await sign_in(client, email="max@harbour.example")
        async with client.ws_connect("/ws") as ws:
            assert await ws.receive_str() == "hello max@harbour.example"
            for _ in range(8):  # 40 minutes of typing into the socket, past the 30 idle
                gateway.clock.advance(5 * 60)
                await ws.send_str("typing")
                assert await ws.receive_str() == "typing"
                now = gateway.clock()
                while await asyncio.wait_for(checked.get(), timeout=5) < now:
                    pass  # an older re-check; wait for one that saw this message
            # No request has been made since sign-in: only the socket kept the session on.
            assert (await client.get("/api/whoami")).status == 200
            gateway.clock.advance(31 * 60)  # then nothing for longer than the idle limit
            message = await asyncio.wait_for(ws.receive(), timeout=5)
        assert message.type is aiohttp.WSMsgType.CLOSE
        assert (await client.get("/api/whoami")).status == 401


async def test_allowed_hosts_also_hold_for_hosts_a_trusted_proxy_passes_on(
    make_gateway: GatewayFactory,
) -> None:
    gateway: RunningGateway = await make_gateway(
        server={"allowed_hosts": ["app.example.com"]},
        security={"trusted_proxies": ["127.0.0.1/32"]},
    )
    for forwarded in ("X-Forwarded-Host: evil.example", 'Forwarded: host="evil.example"'):
        reader, writer = await asyncio.open_connection(gateway.url.host, gateway.url.port)
        writer.write(
            f"GET /public/hello HTTP/1.1\r\nHost: app.example.com\r\n{forwarded}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        answer = (await reader.read()).decode()
        writer.close()
        assert answer.startswith("HTTP/1.1 421"), answer


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> bytes:
    """What the gateway sent before closing the connection; fails if it is still open."""
    return await asyncio.wait_for(reader.read(), seconds)


async def test_a_request_head_sent_a_byte_at_a_time_is_cut_off(
    make_gateway: GatewayFactory,
) -> None:
    gateway = await make_gateway(server={"idle_timeout": 0.5})
    reader, writer = await asyncio.open_connection(gateway.url.host, gateway.url.port)
    writer.write(b"GET /api/whoami HTTP/1.1\r\nHost: gw\r\n")

    async def trickle() -> None:
        # Keeps sending, as a slowloris client does, so only a head deadline can end it.
        for _ in range(100):
            writer.write(b"X")
            await writer.drain()
            await asyncio.sleep(0.05)

    dribbler = asyncio.create_task(trickle())
    try:
        assert await _closed_within(reader, 10.0) == b""  # closed, nothing answered
        # Cut off while the client was still sending: the head deadline, not the client's
        # own end, closed it.
        assert not dribbler.done()
    finally:
        dribbler.cancel()
        await asyncio.gather(dribbler, return_exceptions=True)
        writer.close()


async def test_an_idle_keep_alive_connection_is_closed(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway(server={"idle_timeout": 0.5})
    reader, writer = await asyncio.open_connection(gateway.url.host, gateway.url.port)
    writer.write(b"GET /public/hello HTTP/1.1\r\nHost: gw\r\n\r\n")
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    rest = await _closed_within(reader, 5.0)  # the body, then the close
    assert b"\r\n\r\n" not in rest  # no second response: the connection just ended
    writer.close()


async def test_a_slow_app_is_not_cut_off_by_the_idle_timeout(
    make_gateway: GatewayFactory,
) -> None:
    # The deadline is for the request head only: a request being answered is not idle.
    slow = web.Application()

    async def answer_later(_request: web.Request) -> web.Response:
        await asyncio.sleep(1.0)
        return web.Response(text="late but fine")

    slow.router.add_get("/public/slow", answer_later)
    runner = web.AppRunner(slow)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        gateway = await make_gateway(
            f"http://127.0.0.1:{port}",
            server={"idle_timeout": 0.3},
            upstream={"public_paths": ["/public/"]},
        )
        async with gateway.client() as client:
            response = await client.get("/public/slow")
            assert response.status == 200
            assert await response.text() == "late but fine"
    finally:
        await runner.cleanup()
