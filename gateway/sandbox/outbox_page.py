"""The demo's outbox page: the codes the ``log`` drivers "sent", newest first, so a newcomer can
finish SMS and email steps without a phone. DEMO ONLY: ``serve`` never builds it."""

from __future__ import annotations

import html

from aiohttp import web

from gateway.config import Config
from gateway.delivery.outbox import OutboxSender
from gateway.runtime.listeners import HttpListener

OUTBOX = web.AppKey("outbox", OutboxSender)

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="5">
<title>Demo outbox</title>
<style>
 body {{ font: 16px/1.5 system-ui, sans-serif; max-width: 44rem;
        margin: 2rem auto; padding: 0 1rem; }}
 .note {{ background: #fff4d6; padding: .5rem .75rem; border-radius: .3rem; }}
 article {{ border-bottom: 1px solid #ddd; padding: .6rem 0; }}
 pre {{ white-space: pre-wrap; word-break: break-word; margin: .3rem 0 0; }}
</style></head>
<body>
<h1>Demo outbox</h1>
<p class="note">Demo only: the codes the gateway would have sent by SMS and email, newest first.
A real gateway sends them and never shows them. This page refreshes every 5 seconds.</p>
{messages}
</body></html>
"""


def _message(channel: str, to: str, subject: str, body: str) -> str:
    heading = f"{channel} to {html.escape(to)}"
    if subject:
        heading += f": {html.escape(subject)}"
    body_html = f"<pre>{html.escape(body)}</pre>"
    return f'<article class="message"><strong>{heading}</strong>{body_html}</article>'


async def outbox_page(request: web.Request) -> web.Response:
    messages = request.app[OUTBOX].messages
    listed = "".join(
        _message("SMS" if m.to.startswith("+") else "Email", m.to, m.subject, m.body)
        for m in messages
    )
    page = PAGE.format(messages=listed or "<p>Nothing sent yet.</p>")
    return web.Response(text=page, content_type="text/html", headers={"Cache-Control": "no-store"})


def create_outbox_app(outbox: OutboxSender) -> web.Application:
    app = web.Application()
    app[OUTBOX] = outbox
    app.router.add_get("/", outbox_page)
    return app


def outbox_listener(outbox: OutboxSender, config: Config) -> HttpListener:
    """The outbox page on its own port (any free one), on the demo gateway's host."""
    server = config.server
    return HttpListener(
        "demo-outbox",
        create_outbox_app(outbox),
        host=server.host,
        port=0,
        max_line_size=server.max_line_size,
        max_field_size=server.max_field_size,
        idle_timeout=server.idle_timeout,
    )
