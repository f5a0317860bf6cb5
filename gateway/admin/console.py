"""The admin console's door: gateway admins sign in with password and TOTP, see a readiness
summary, and sign out.

Admins have their own accounts, sessions and cookie (SameSite=Strict): an app user's session
never opens these pages, and an admin session is no app session. Every form carries a CSRF
token; a form posted from another site is refused before it is read. Sign-in attempts are
throttled per address and per account with the rules the users' sign-in has, and every
refusal shows the same message.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Mapping
from functools import partial

from aiohttp import web

from gateway.audit import AdminSignedIn, AdminSignedOut, AdminSignInFailed
from gateway.enforcement.reports import readiness_report
from gateway.http.csrf import csrf_token, csrf_valid, new_nonce
from gateway.http.requests import CLIENT_ADDR, OUTCOME
from gateway.services import SERVICES, Services
from gateway.signin.admins import AdminSignIn
from gateway.signin.sessions import SessionLimits
from gateway.store import Admin, AdminSession
from gateway.throttle import ThrottleRule, refund
from gateway.web.context import add_get, add_route, read_form
from gateway.web.gate import from_allowed_origin
from gateway.web.pages import (
    MAX_EMAIL,
    MAX_PASSWORD,
    NONCE_SHAPE,
    book_attempts,
    expired_form,
    form_field,
    render_page,
)

log = logging.getLogger("gateway.admin")

CONSOLE_PATH = "/_gateway/admin/"
LOGIN_PATH = "/_gateway/admin/login"
LOGOUT_PATH = "/_gateway/admin/logout"
GENERIC_FAILURE = "That email, password and code do not match an admin account."
LOGIN_PURPOSE = "admin-login"
FORM_PURPOSE = "admin-form"
MAX_CODE = 16
# What Sec-Fetch-Site says of a request from another site (as the user JSON API reads it).
CROSS_SITE = frozenset({"cross-site", "same-site"})


def admin_sign_in(services: Services) -> AdminSignIn:
    """The admin sign-in over the running gateway's parts, with ``[admin]`` lifetimes."""
    limits = services.config.admin
    return AdminSignIn(
        services.store,
        services.passwords,
        services.keys.at_rest,
        SessionLimits(
            idle=limits.session_idle_minutes * 60,
            absolute=limits.session_absolute_hours * 3600,
        ),
        services.clock,
    )


async def signed_in_admin(request: web.Request) -> tuple[AdminSession, Admin] | None:
    """The admin session the request's admin cookie names, if open and its admin enabled."""
    services = request.app[SERVICES]
    raw = request.cookies.get(services.cookies.admin_session)
    if not raw or len(raw) > 128:
        return None
    return await admin_sign_in(services).lookup(raw)


def _set_cookie(services: Services, response: web.StreamResponse, name: str, value: str) -> None:
    response.set_cookie(
        name,
        value,
        path="/",
        secure=services.config.security.cookie_secure,
        httponly=True,
        samesite="Strict",
    )


def _clear_cookie(services: Services, response: web.StreamResponse, name: str) -> None:
    response.del_cookie(
        name,
        path="/",
        secure=services.config.security.cookie_secure,
        httponly=True,
        samesite="Strict",
    )


def cross_site(request: web.Request) -> bool:
    """Whether a form post came from another site (its Sec-Fetch-Site or Origin says so)."""
    fetch_site = request.headers.get("Sec-Fetch-Site", "").strip().lower()
    return fetch_site in CROSS_SITE or not from_allowed_origin(request)


def cross_site_refusal(request: web.Request) -> web.Response:
    request[OUTCOME] = "rejected"
    return web.Response(
        status=403,
        text="Forms here are accepted only from the gateway's own pages.",
        headers={"Cache-Control": "no-store"},
    )


def _login_form(
    request: web.Request,
    *,
    email: str = "",
    error: str | None = None,
    notice: str | None = None,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    services = request.app[SERVICES]
    nonce = request.cookies.get(services.cookies.admin_login, "")
    if not NONCE_SHAPE.fullmatch(nonce):
        nonce = new_nonce()
    context = {
        "csrf": csrf_token(services.keys.csrf, nonce, LOGIN_PURPOSE),
        "email": email,
        "error": error,
        "notice": notice,
    }
    response = render_page(request, "admin_login.html", context, status=status)
    if headers:
        response.headers.update(headers)
    _set_cookie(services, response, services.cookies.admin_login, nonce)
    return response


async def console_page(request: web.Request) -> web.StreamResponse:
    """The console's front page: the sign-in form, or (signed in) who you are and readiness."""
    services = request.app[SERVICES]
    found = await signed_in_admin(request)
    if found is None:
        notice = "You have signed out." if request.query.get("signed_out") == "1" else None
        response = _login_form(request, notice=notice)
        if services.cookies.admin_session in request.cookies:  # over, or never valid
            _clear_cookie(services, response, services.cookies.admin_session)
        return response
    session, admin = found
    at = dt.datetime.fromtimestamp(services.policy_clock(), dt.UTC)
    report = await readiness_report(services.store, at, services.decider.book.in_force())
    context = {
        "name": admin.name,
        "email": admin.email,
        "at": at.isoformat(timespec="minutes"),
        "policies": [
            {
                "policy_id": item.policy_id,
                "enabled": item.enabled,
                "deadline": item.deadline.isoformat(),
                "in_scope": item.in_scope,
                "enrolled": item.enrolled,
                "blocked_at_deadline": item.blocked_at_deadline,
            }
            for item in report
        ],
        "csrf": csrf_token(services.keys.csrf, session.csrf_secret, FORM_PURPOSE),
    }
    return render_page(request, "admin_home.html", context)


def _throttles(services: Services, typed: str, client: str) -> tuple[tuple[str, ThrottleRule], ...]:
    """The counters an admin sign-in attempt is booked on (per address, then per account)."""
    return (
        (f"admin-login:address:{client}", services.address_throttle),
        (f"admin-login:account:{typed}", services.account_throttle),
    )


async def login_submit(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    if cross_site(request):
        return cross_site_refusal(request)
    form = await read_form(request)
    email = form_field(form, "email", MAX_EMAIL).strip().lower()
    password = form_field(form, "password", MAX_PASSWORD)
    code = form_field(form, "code", MAX_CODE)
    nonce = request.cookies.get(services.cookies.admin_login)
    if not csrf_valid(services.keys.csrf, nonce, form_field(form, "csrf", 128), LOGIN_PURPOSE):
        request[OUTCOME] = "rejected"
        return _login_form(
            request, email=email, error="This form had expired. Please try again.", status=403
        )
    client = request[CLIENT_ADDR]
    now = services.clock()
    typed = services.keys.names.sign(email.encode("utf-8", "surrogatepass"))[:32]
    throttles = _throttles(services, typed, client)
    wait = await book_attempts(services, throttles, now)
    if wait > 0:
        refused = AdminSignInFailed(admin_id=None, reason="throttled", typed=typed)
        await services.store.audit.record(refused, at=now, client_addr=client)
        request[OUTCOME] = "rejected"
        minutes = max(1, math.ceil(wait / 60))
        return _login_form(
            request,
            email=email,
            error=f"Too many attempts. Try again in {minutes} minute{'s' if minutes > 1 else ''}.",
            status=429,
            headers={"Retry-After": str(math.ceil(wait))},
        )
    admins = admin_sign_in(services)
    checked = await admins.check(email, password, code)
    if checked.admin is None:
        # The attempt was counted as a failure when it was booked.
        failed = AdminSignInFailed(admin_id=checked.named, reason=checked.reason, typed=typed)
        await services.store.audit.record(failed, at=now, client_addr=client)
        log.info("admin sign-in failed", extra={"reason": checked.reason, "client": client})
        request[OUTCOME] = "rejected"
        return _login_form(request, email=email, error=GENERIC_FAILURE, status=401)
    admin = checked.admin
    account_key, _ = throttles[-1]
    await services.store.throttle.clear(account_key)
    for key, rule in throttles[:-1]:
        await services.store.throttle.update(key, partial(refund, rule=rule))
    previous = await signed_in_admin(request)
    if previous is not None:
        await admins.end(previous[0].id_hash)
    # A new id at every sign-in: an id planted before sign-in is worth nothing after it.
    raw_id, _ = await admins.start(admin, client_addr=client)
    await services.store.audit.record(
        AdminSignedIn(admin_id=admin.id), at=now, actor=admin.id, client_addr=client
    )
    response = web.HTTPSeeOther(CONSOLE_PATH, headers={"Cache-Control": "no-store"})
    _set_cookie(services, response, services.cookies.admin_session, raw_id)
    _clear_cookie(services, response, services.cookies.admin_login)
    raise response


async def logout_submit(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    if cross_site(request):
        return cross_site_refusal(request)
    form = await read_form(request)
    found = await signed_in_admin(request)
    if found is not None:
        session, admin = found
        presented = form_field(form, "csrf", 128)
        if not csrf_valid(services.keys.csrf, session.csrf_secret, presented, FORM_PURPOSE):
            return expired_form(request)
        await admin_sign_in(services).end(session.id_hash)
        await services.store.audit.record(
            AdminSignedOut(admin_id=admin.id),
            at=services.clock(),
            actor=admin.id,
            client_addr=request[CLIENT_ADDR],
        )
    response = web.HTTPSeeOther(
        f"{CONSOLE_PATH}?signed_out=1", headers={"Cache-Control": "no-store"}
    )
    _clear_cookie(services, response, services.cookies.admin_session)
    raise response


async def to_console(request: web.Request) -> web.StreamResponse:
    raise web.HTTPSeeOther(CONSOLE_PATH)


def add_routes(app: web.Application) -> None:
    """The console's pages; register before the /_gateway/ catch-all."""
    add_get(app, "/_gateway/admin", to_console)
    add_get(app, CONSOLE_PATH, console_page)
    add_route(app, "POST", LOGIN_PATH, login_submit)
    add_route(app, "POST", LOGOUT_PATH, logout_submit)
