"""A small app that shows which identity the gateway passed it, and lists its user's Xero
invoices through the gateway's Xero listener with xero-python; it trusts its caller, so it
must only ever listen where nothing but the gateway can reach it (loopback)."""

from __future__ import annotations

import asyncio
import html
import json
import os
from dataclasses import dataclass
from typing import Any

from aiohttp import WSMsgType, web
from xero_python.accounting import AccountingApi
from xero_python.api_client import ApiClient, Configuration
from xero_python.api_client.oauth2 import OAuth2Token
from xero_python.exceptions import ApiException
from xero_python.identity import IdentityApi

XERO_URL_ENV = "SAMPLE_APP_XERO_URL"  # where the sample app finds the Xero listener

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
<p><a href="/xero/invoices">Xero invoices</a> (through the gateway's Xero listener)</p>
<p><a href="/_gateway/mfa/settings">Two-factor settings</a> ·
<a href="/_gateway/password/change">Change password</a> ·
<a href="/_gateway/logout">Sign out</a></p>
</body></html>
"""

INVOICES_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Xero invoices</title>
<style>
 body {{ font: 16px/1.5 system-ui, sans-serif; max-width: 48rem;
        margin: 2rem auto; padding: 0 1rem; }}
 table {{ border-collapse: collapse; width: 100%; margin-bottom: 1.5rem; }}
 td, th {{ border-bottom: 1px solid #ddd; padding: .4rem; text-align: left; }}
 .problem {{ border-left: 4px solid #b00; padding: .2rem 1rem; }}
</style></head>
<body>
<h1>Xero invoices</h1>
<p>This app holds no Xero token. Its backend called the gateway's Xero listener at
<code>{listener}</code> with xero-python, presenting the <code>X-Gateway-Token</code> the
gateway sent with this request; the gateway put in the real access token.</p>
{content}
<p><a href="/">Back</a></p>
</body></html>
"""


@dataclass
class SampleSettings:
    """Where the sample app's backend reaches the gateway's Xero listener (set once the
    gateway has started, when its port is known); empty when there is none."""

    xero_url: str = ""


SETTINGS = web.AppKey("sample_settings", SampleSettings)


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


def xero_client(gateway_token: str) -> ApiClient:
    """An xero-python client as the app's backend builds one for the Xero listener: the
    user's gateway token stands where a Xero access token would."""
    # Configuration() copies the first one made in the process: the token goes on the copy.
    configuration = Configuration()
    configuration.oauth2_token = OAuth2Token(client_id="sample-app", client_secret="")
    client = ApiClient(configuration, pool_threads=1)

    @client.oauth2_token_getter  # type: ignore[untyped-decorator]
    def _token() -> dict[str, Any]:
        # No expires_at and no refresh token: the SDK never refreshes; the gateway does.
        return {
            "access_token": gateway_token,
            "token_type": "Bearer",
            "scope": [],
            "expires_in": None,
        }

    return client


def _invoice_tables(listener: str, gateway_token: str) -> str:
    """Each connected tenant's invoices as HTML (runs in a thread: xero-python blocks)."""
    client = xero_client(gateway_token)
    tenants = IdentityApi(client, base_url=listener).get_connections()
    accounting = AccountingApi(client, base_url=listener + "/api.xro/2.0")
    if not tenants:
        return "<p>Your organisation has not connected Xero yet.</p>"
    parts = []
    for tenant in tenants:
        invoices = accounting.get_invoices(tenant.tenant_id).invoices or []
        rows = "".join(
            f"<tr><td>{html.escape(str(i.invoice_number or ''))}</td>"
            f"<td>{html.escape(str(i.contact.name if i.contact else ''))}</td>"
            f"<td>{html.escape(str(getattr(i.status, 'value', i.status) or ''))}</td>"
            f'<td data-total="{i.total}">{html.escape(str(i.total))}</td></tr>'
            for i in invoices
        )
        parts.append(
            f'<h2 data-tenant="{html.escape(tenant.tenant_id)}">'
            f"{html.escape(tenant.tenant_name or tenant.tenant_id)}</h2>"
            "<table><tr><th>Number</th><th>Contact</th><th>Status</th><th>Total</th></tr>"
            f"{rows}</table>"
        )
    return "".join(parts)


def _problem(exc: ApiException) -> str:
    """The gateway's problem (403 mfa-required, 409 reconnect, 429…) as the page shows it."""
    try:
        body = json.loads(exc.body or "{}")
    except (TypeError, ValueError):
        body = {}
    title = body.get("title") or exc.reason or "Xero call failed"
    detail = body.get("detail") or ""
    kind = str(body.get("type") or "")
    verify = ""
    if kind.endswith("/mfa-required"):
        verify = '<p><a href="/_gateway/mfa/verify?next=/xero/invoices">Verify now</a></p>'
    return (
        f'<div class="problem" data-status="{exc.status}" data-type="{html.escape(kind)}">'
        f"<p><strong>{html.escape(str(title))}</strong> ({exc.status})</p>"
        f"<p>{html.escape(str(detail))}</p>{verify}</div>"
    )


async def xero_invoices(request: web.Request) -> web.Response:
    listener = request.app[SETTINGS].xero_url or os.environ.get(XERO_URL_ENV, "")
    token = request.headers.get("X-Gateway-Token", "")
    if not listener:
        content = "<p>The gateway runs no Xero listener (no <code>[xero] client_id</code>).</p>"
    elif not token:
        content = "<p>Sign in at the gateway first.</p>"
    else:
        try:
            content = await asyncio.to_thread(_invoice_tables, listener.rstrip("/"), token)
        except ApiException as exc:
            content = _problem(exc)
    page = INVOICES_PAGE.format(listener=html.escape(listener or "(none)"), content=content)
    return web.Response(text=page, content_type="text/html")


def create_sample_app(settings: SampleSettings | None = None) -> web.Application:
    """The sample app; ``settings`` (changeable while it runs) says where the Xero listener
    is, else the ``SAMPLE_APP_XERO_URL`` environment variable does."""
    app = web.Application()
    app[SETTINGS] = settings if settings is not None else SampleSettings()
    app.router.add_get("/", home)
    app.router.add_get("/xero/invoices", xero_invoices)
    app.router.add_get("/api/whoami", whoami)
    app.router.add_get("/api/echo-cookies", echo_cookies)
    app.router.add_get("/public/hello", public)
    app.router.add_get("/ws", echo_socket)
    return app
