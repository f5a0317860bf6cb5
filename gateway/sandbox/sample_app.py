"""A small app that shows which identity the gateway passed it; it trusts its caller, so it
must only ever listen where nothing but the gateway can reach it (loopback)."""

from __future__ import annotations

import html

from aiohttp import WSMsgType, web

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sample app</title>
<link rel="icon" href="/_gateway/favicon.ico">
<style>
 body {{ font: 16px/1.5 system-ui, sans-serif; max-width: 40rem;
        margin: 2rem auto; padding: 0 1rem; }}
 h1 {{ overflow-wrap: anywhere; }}
 table {{ border-collapse: collapse; width: 100%; }}
 td, th {{ border-bottom: 1px solid #ddd; padding: .4rem; text-align: left;
          word-break: break-all; }}
</style></head>
<body>
<h1>Hello, {who}</h1>
<p>This page is the app behind the gateway. These are the identity headers it received:</p>
<table id="identity"><tr><th>Header</th><th>Value</th></tr>{rows}</table>
<p><a href="/_gateway/logout">Sign out</a></p>
</body></html>
"""


def gateway_headers(request: web.Request) -> dict[str, str]:
    return {k: v for k, v in request.headers.items() if k.lower().startswith("x-gateway-")}


async def home(request: web.Request) -> web.Response:
    headers = gateway_headers(request)
    rows = "".join(
        f'<tr><td>{html.escape(k)}</td><td data-header="{html.escape(k.lower())}">'
        f"{html.escape(v)}</td></tr>"
        for k, v in sorted(headers.items())
    )
    who = html.escape(headers.get("X-Gateway-User-Email", "anonymous visitor"))
    return web.Response(text=PAGE.format(who=who, rows=rows), content_type="text/html")


async def whoami(request: web.Request) -> web.Response:
    return web.json_response(
        {"headers": gateway_headers(request), "request_id": request.headers.get("X-Request-Id")}
    )


async def echo_cookies(request: web.Request) -> web.Response:
    return web.json_response(request.headers.get("Cookie", ""))


async def public(request: web.Request) -> web.Response:
    return web.Response(text="This page is public: no sign-in needed.\n")


async def echo_socket(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    await ws.send_str(f"hello {request.headers.get('X-Gateway-User-Email', 'anonymous')}")
    async for message in ws:
        if message.type == WSMsgType.TEXT:
            await ws.send_str(message.data)
        elif message.type == WSMsgType.BINARY:
            await ws.send_bytes(message.data)
    return ws


def create_sample_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/", home)
    app.router.add_get("/api/whoami", whoami)
    app.router.add_get("/api/echo-cookies", echo_cookies)
    app.router.add_get("/public/hello", public)
    app.router.add_get("/ws", echo_socket)
    return app
