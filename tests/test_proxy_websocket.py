"""WebSockets through the proxy: relayed both ways, close codes passed on, refusals reported."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import WSMsgType

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
