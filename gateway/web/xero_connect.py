"""Connecting Xero from the browser: the connections page, the authorize redirect, Xero's
callback and *Disconnect*.

Only principals connect and disconnect. Where a policy applies to the principal, connecting
needs an MFA-verified session and disconnecting a fresh second factor: otherwise the browser
goes through the step-up (``/_gateway/mfa/verify``) and back to the connections page.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from aiohttp import web

from gateway.errors import NotFoundError, StoreError
from gateway.http.csrf import csrf_token, csrf_valid
from gateway.http.problems import problem_response
from gateway.http.requests import CLIENT_ADDR, OUTCOME
from gateway.services import SERVICES, SESSION, Services
from gateway.signin.sessions import LiveSession
from gateway.store.records import AuditEntry
from gateway.web.context import add_get, add_route, read_form
from gateway.web.gate import VERIFY_PATH, login_url
from gateway.web.pages import expired_form, form_field, render_page
from gateway.xero.authorization import CONNECTIONS_PAGE, StateRefused
from gateway.xero.authorize import authorize_url
from gateway.xero.connect import ConnectFailed
from gateway.xero.overview import load_rows
from gateway.xero.tokens import XeroError

CONNECT_PATH = "/_gateway/xero/connect"
CALLBACK_PATH = "/_gateway/xero/callback"
DISCONNECT_PATH = "/_gateway/xero/disconnect"
FRESH_SECONDS = 600  # how recent a second factor disconnecting needs, where a policy applies
MAX_PARAM = 2048

log = logging.getLogger(__name__)


def _signed_in(request: web.Request) -> LiveSession:
    live: LiveSession | None = request.get(SESSION)
    if live is None:
        raise web.HTTPSeeOther(login_url(CONNECTIONS_PAGE))
    return live


def _refused(
    request: web.Request, *, status: int, slug: str, title: str, detail: str
) -> web.Response:
    request[OUTCOME] = "rejected"
    return problem_response(request, status=status, slug=slug, title=title, detail=detail)


def _principals_only(request: web.Request) -> web.Response:
    return _refused(
        request,
        status=403,
        slug="xero-principals-only",
        title="Only a principal can do this",
        detail="Connecting and disconnecting Xero is for your organisation's principals; ask"
        " one of them.",
    )


def _step_up(max_age: int | None = None) -> web.HTTPException:
    target = f"{VERIFY_PATH}?next={CONNECTIONS_PAGE}"
    if max_age is not None:
        target += f"&max_age={max_age}"
    return web.HTTPSeeOther(target, headers={"Cache-Control": "no-store"})


async def _in_scope(services: Services, live: LiveSession) -> bool:
    """Whether a 2FA policy applies to the user now."""
    decision = await services.decider.decide_for(live)
    return decision.effective is not None


def _time(value: float | None) -> str:
    if value is None:
        return "never"
    return dt.datetime.fromtimestamp(value, dt.UTC).strftime("%-d %b %Y %H:%M UTC")


async def connections_page(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    live = _signed_in(request)
    org = await services.store.organisations.get(live.user.org_id)
    rows = await load_rows(services.store, live.user.org_id, services.xero_rate_budget)
    context: dict[str, Any] = {
        "org_name": org.name,
        "principal": live.user.role == "principal",
        "rows": rows,
        "time": _time,
        # A consent to renew (active, or refused by Xero and waiting): the button reconnects.
        "reconnect": any(r.status in ("active", "needs_reconnect") for r in rows),
        "csrf": csrf_token(services.keys.csrf, live.record.csrf_secret),
        "connect_path": CONNECT_PATH,
        "disconnect_path": DISCONNECT_PATH,
        "now": services.clock(),
    }
    return render_page(request, "xero.html", context)


async def connect(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    live = _signed_in(request)
    if live.user.role != "principal":
        return _principals_only(request)
    if not live.mfa_verified and await _in_scope(services, live):
        raise _step_up()
    started = await services.xero_authorizations.begin(
        session_hash=live.id_hash,
        user_id=live.user.id,
        org_id=live.user.org_id,
        next_path=request.query.get("next"),
        now=services.clock(),
    )
    target = authorize_url(
        services.config.xero, state=started.state, code_challenge=started.code_challenge
    )
    raise web.HTTPSeeOther(target, headers={"Cache-Control": "no-store"})


def _not_connected(request: web.Request, *, status: int, slug: str, detail: str) -> web.Response:
    return _refused(
        request, status=status, slug=slug, title="Xero was not connected", detail=detail
    )


async def callback(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    live = _signed_in(request)
    query = request.query
    state = query.get("state", "")[:MAX_PARAM]
    try:
        authorization = await services.xero_authorizations.complete(
            state, session_hash=live.id_hash, now=services.clock()
        )
    except StateRefused as exc:
        log.info("xero callback refused: %s", exc.reason)
        return _not_connected(request, status=400, slug="xero-state-refused", detail=str(exc))
    if live.user.role != "principal":  # no longer one since the flow began
        return _principals_only(request)
    error = query.get("error", "")[:64]
    if error:
        detail = (
            "You chose not to allow access at Xero, so nothing was connected."
            if error == "access_denied"
            else "Xero ended the sign-in without connecting anything. Try connecting again."
        )
        return _not_connected(request, status=400, slug="xero-declined", detail=detail)
    code = query.get("code", "")
    if not code or len(code) > MAX_PARAM:
        return _not_connected(
            request,
            status=400,
            slug="xero-no-code",
            detail="Xero's answer carried no sign-in code. Start connecting Xero again.",
        )
    audit = AuditEntry(actor=live.user.id, client_addr=request[CLIENT_ADDR])
    try:
        await services.xero_connector.connect(authorization, code, audit=audit)
    except ConnectFailed as exc:
        return _not_connected(request, status=exc.status, slug=exc.slug, detail=str(exc))
    except StoreError:
        log.exception("a Xero consent could not be stored")
        return _not_connected(
            request,
            status=503,
            slug="xero-not-saved",
            detail="The connection could not be saved; nothing was kept. Try again shortly.",
        )
    raise web.HTTPSeeOther(authorization.next_path, headers={"Cache-Control": "no-store"})


async def disconnect(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    live = _signed_in(request)
    form = await read_form(request)
    if not csrf_valid(services.keys.csrf, live.record.csrf_secret, form_field(form, "csrf", 128)):
        return expired_form(request)
    if live.user.role != "principal":
        return _principals_only(request)
    checked = live.second_factor
    fresh = checked is not None and checked.fresh(FRESH_SECONDS, services.clock())
    if not fresh and await _in_scope(services, live):
        raise _step_up(FRESH_SECONDS)
    grant_id = form_field(form, "grant_id", 64)
    audit = AuditEntry(actor=live.user.id, client_addr=request[CLIENT_ADDR])
    try:
        await services.xero_connector.disconnect(grant_id, audit=audit, org_id=live.user.org_id)
    except NotFoundError:
        return _refused(
            request,
            status=404,
            slug="xero-connection-not-found",
            title="No such connection",
            detail="Your organisation has no Xero connection with that id; reload the page.",
        )
    except XeroError as exc:
        return _refused(
            request,
            status=503,
            slug="xero-unavailable",
            title="Xero was not disconnected",
            detail=f"{exc} Nothing was changed; try again in a moment.",
        )
    raise web.HTTPSeeOther(CONNECTIONS_PAGE, headers={"Cache-Control": "no-store"})


def add_routes(app: web.Application) -> None:
    add_get(app, CONNECTIONS_PAGE, connections_page)
    add_get(app, CONNECT_PATH, connect)
    add_get(app, CALLBACK_PATH, callback)
    add_route(app, "POST", DISCONNECT_PATH, disconnect)


__all__ = ["add_routes"]
