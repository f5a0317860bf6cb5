"""WebSockets through the proxy: relayed both ways, close codes passed on, refusals reported."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import WSMsgType
from aiohttp.http_websocket import WebSocketError
from multidict import CIMultiDict

from gateway.proxy.close_codes import Ender, close_received, closing_plan, sendable_close
from gateway.proxy.websocket import is_websocket_upgrade
from tests.proxy_stack import IDENTITY, Stack, make_stack


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


# --- the close rules and the upgrade test on their own, without sockets ---------------------


@pytest.mark.parametrize(
    ("code", "reason", "sent"),
    [
        (1000, "bye", (1000, b"bye")),
        (1001, "", (1001, b"")),
        (1008, "sign-in required", (1008, b"sign-in required")),
        (1011, "oops", (1011, b"oops")),
        (3000, "registered", (3000, b"registered")),
        (4999, "private", (4999, b"private")),
        # Reserved codes never go on the wire, nor codes outside 1000-4999.
        (1004, "reserved", (1000, b"reserved")),
        (1005, "", (1000, b"")),
        (1006, "", (1000, b"")),
        (1015, "tls", (1000, b"tls")),
        (999, "", (1000, b"")),
        (5000, "", (1000, b"")),
        (0, "", (1000, b"")),
        # A close frame holds at most 123 bytes of reason, counted after encoding.
        (4000, "x" * 200, (4000, b"x" * 123)),
        (4000, "é" * 100, (4000, ("é" * 100).encode()[:123])),
    ],
)
def test_close_codes_sent_on(code: int, reason: str, sent: tuple[int, bytes]) -> None:
    assert sendable_close(code, reason) == sent


@pytest.mark.parametrize(
    ("msg_type", "data", "extra", "ended"),
    [
        (WSMsgType.CLOSE, 4002, "done", (4002, "done")),
        (WSMsgType.CLOSE, 1000, None, (1000, "")),
        (WSMsgType.ERROR, WebSocketError(1009, "message too big"), None, (1009, "")),
        (WSMsgType.ERROR, RuntimeError("broken"), None, (1011, "")),
        (WSMsgType.CLOSING, None, None, (1001, "")),
        (WSMsgType.CLOSED, None, None, (1001, "")),
        (WSMsgType.PING, b"", None, None),
        (WSMsgType.PONG, b"", None, None),
    ],
)
def test_what_a_received_message_ends(
    msg_type: WSMsgType, data: object, extra: object, ended: tuple[int, str] | None
) -> None:
    assert close_received(msg_type, data, extra) == ended


@pytest.mark.parametrize(
    ("ended_by", "code", "reason", "plan"),
    [
        # The side that closed hears back last, with its own code.
        (
            "client",
            4001,
            "bye",
            [("upstream", 4001, b"bye"), ("client", 4001, b"bye")],
        ),
        (
            "upstream",
            4002,
            "done",
            [("client", 4002, b"done"), ("upstream", 4002, b"done")],
        ),
        (
            "client",
            1006,
            "",
            [("upstream", 1000, b""), ("client", 1000, b"")],
        ),
        # A user who may no longer use the socket is told why; the app, that they left.
        (
            "watcher",
            1008,
            "sign-in required",
            [("client", 1008, b"sign-in required"), ("upstream", 1001, b"client signed out")],
        ),
    ],
)
def test_closing_plan(
    ended_by: Ender, code: int, reason: str, plan: list[tuple[str, int, bytes]]
) -> None:
    assert [(c.side, c.code, c.message) for c in closing_plan(ended_by, code, reason)] == plan


@pytest.mark.parametrize(
    ("method", "headers", "upgrade"),
    [
        ("GET", {"Upgrade": "websocket", "Connection": "Upgrade"}, True),
        ("GET", {"Upgrade": "WebSocket", "Connection": "keep-alive, Upgrade"}, True),
        ("GET", {"Upgrade": "h2c, websocket", "Connection": "upgrade"}, True),
        ("POST", {"Upgrade": "websocket", "Connection": "Upgrade"}, False),
        ("GET", {"Upgrade": "websocket"}, False),
        ("GET", {"Connection": "Upgrade"}, False),
        ("GET", {"Upgrade": "h2c", "Connection": "Upgrade"}, False),
        ("GET", {}, False),
    ],
)
def test_which_requests_are_websocket_upgrades(
    method: str, headers: dict[str, str], upgrade: bool
) -> None:
    assert is_websocket_upgrade(method, CIMultiDict(headers)) is upgrade
