"""The password pages: "Forgot password?" (a reset link by email), the page the link opens
(the token leaves the address bar at once), and changing the password while signed in."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from gateway.accounts.password_resets import MAX_TOKEN, ResetRefused
from gateway.accounts.passwords import MIN_PASSWORD_LENGTH
from gateway.http.csrf import csrf_token, csrf_valid, new_nonce
from gateway.http.requests import OUTCOME
from gateway.services import SERVICES, Services
from gateway.web.context import add_get, add_route, read_form
from gateway.web.mfa_forms import csrf_for, see_other, signed_in
from gateway.web.pages import (
    MAX_EMAIL,
    MAX_PASSWORD,
    NONCE_SHAPE,
    clear_cookie,
    expired_form,
    form_field,
    render_page,
    set_cookie,
)
from gateway.web.password_flows import (
    CHANGE_PATH,
    FORGOT_ANSWER,
    FORGOT_PATH,
    RESET_PATH,
    Changed,
    change_password,
    needs_step_up,
    refused_link,
    request_reset,
    reset_csrf,
    reset_password,
    resets_for,
    step_up_url,
)

# The link's page never tells another site where it was (its address held the token).
NO_REFERRER = {"Referrer-Policy": "no-referrer"}


def _page(
    request: web.Request,
    template: str,
    context: Mapping[str, Any],
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    response = render_page(
        request, template, {"min_length": MIN_PASSWORD_LENGTH, **context}, status=status
    )
    response.headers.update(headers or {})
    return response


# Forgot password: the form is bound to the pre-sign-in nonce, as the sign-in form is.


def _forgot_form(
    request: web.Request,
    *,
    email: str = "",
    notice: str | None = None,
    error: str | None = None,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    services = request.app[SERVICES]
    nonce = request.cookies.get(services.cookies.login_nonce, "")
    if not NONCE_SHAPE.fullmatch(nonce):
        nonce = new_nonce()
    context = {
        "csrf": csrf_token(services.keys.csrf, nonce, "forgot"),
        "email": email,
        "notice": notice,
        "error": error,
    }
    response = _page(request, "password_forgot.html", context, status=status, headers=headers)
    set_cookie(services, response, services.cookies.login_nonce, nonce)
    return response


async def forgot_page(request: web.Request) -> web.StreamResponse:
    return _forgot_form(request)


async def forgot_submit(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    form = await read_form(request)
    email = form_field(form, "email", MAX_EMAIL).strip().lower()
    nonce = request.cookies.get(services.cookies.login_nonce)
    if not csrf_valid(services.keys.csrf, nonce, form_field(form, "csrf", 128), "forgot"):
        request[OUTCOME] = "rejected"
        return _forgot_form(
            request, email=email, error="This form had expired. Please try again.", status=403
        )
    if not email:
        return _forgot_form(request, error="Enter the email address you sign in with.", status=400)
    wait = await request_reset(request, email)
    if wait > 0:
        request[OUTCOME] = "rejected"
        minutes = max(1, math.ceil(wait / 60))
        return _forgot_form(
            request,
            email=email,
            error=f"Too many requests. Try again in {minutes} minute{'s' if minutes > 1 else ''}.",
            status=429,
            headers={"Retry-After": str(math.ceil(wait))},
        )
    return _forgot_form(request, notice=FORGOT_ANSWER)


# The link's page


def _reset_page(
    request: web.Request, *, csrf: str | None, error: str | None = None, status: int = 200
) -> web.Response:
    return _page(
        request,
        "password_reset.html",
        {"csrf": csrf, "error": error},
        status=status,
        headers=NO_REFERRER,
    )


async def reset_page(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    token = request.query.get("token")
    if token is not None:
        # Out of the address bar (and so the history and any Referer) at once: into a cookie
        # that only this gateway reads, for as long as a link lives.
        response = see_other(RESET_PATH)
        response.headers.update(NO_REFERRER)
        set_cookie(
            services,
            response,
            services.cookies.password_reset,
            token[:MAX_TOKEN],
            int(resets_for(services).lifetime),
        )
        raise response
    held = request.cookies.get(services.cookies.password_reset, "")
    if not held:
        return _reset_page(
            request,
            csrf=None,
            error="Open the link in the email again, or ask for a new one.",
            status=400,
        )
    try:
        link = await resets_for(services).check(held, now=services.clock())
    except ResetRefused as refused:
        request[OUTCOME] = "rejected"
        refusal = await refused_link(request, refused)
        return _reset_page(request, csrf=None, error=refusal.message, status=400)
    return _reset_page(request, csrf=reset_csrf(services, link.token_hash))


async def reset_submit(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    form = await read_form(request)
    held = request.cookies.get(services.cookies.password_reset, "")
    resets = resets_for(services)
    try:
        link = await resets.check(held, now=services.clock())
    except ResetRefused as refused:
        request[OUTCOME] = "rejected"
        refused_page = await refused_link(request, refused)
        return _reset_page(request, csrf=None, error=refused_page.message, status=400)
    csrf = reset_csrf(services, link.token_hash)
    if not csrf_valid(
        services.keys.csrf, link.token_hash, form_field(form, "csrf", 128), "password-reset"
    ):
        return expired_form(request)
    refusal = await reset_password(
        request,
        held,
        form_field(form, "password", MAX_PASSWORD),
        form_field(form, "confirm", MAX_PASSWORD),
    )
    if refusal is not None:
        request[OUTCOME] = "rejected"
        done = refusal.reason.startswith("link-")
        return _reset_page(request, csrf=None if done else csrf, error=refusal.message, status=400)
    response = see_other("/_gateway/login?password=reset")
    response.headers.update(NO_REFERRER)
    clear_cookie(services, response, services.cookies.password_reset)
    clear_cookie(services, response, services.cookies.session)
    raise response


# Change while signed in


async def _step_up_needed(request: web.Request) -> bool:
    services = request.app[SERVICES]
    live = signed_in(request)
    enrolled = (await services.decider.enrolment(live.user.id)).enrolled
    return needs_step_up(services, live, enrolled)


def _change_form(
    request: web.Request,
    services: Services,
    *,
    csrf: str,
    email: str,
    notice: str | None = None,
    error: str | None = None,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    context = {"csrf": csrf, "email": email, "notice": notice, "error": error}
    return _page(request, "password_change.html", context, status=status, headers=headers)


async def change_page(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    live = signed_in(request)
    if await _step_up_needed(request):
        raise see_other(step_up_url())
    return _change_form(request, services, csrf=csrf_for(services, live), email=live.user.email)


async def change_submit(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    live = signed_in(request)
    form = await read_form(request)
    if not csrf_valid(services.keys.csrf, live.record.csrf_secret, form_field(form, "csrf", 128)):
        return expired_form(request)
    if await _step_up_needed(request):
        # Nothing is changed until the second factor is fresh; the form is filled in again.
        raise see_other(step_up_url())
    outcome = await change_password(
        request,
        live,
        form_field(form, "current", MAX_PASSWORD),
        form_field(form, "password", MAX_PASSWORD),
        form_field(form, "confirm", MAX_PASSWORD),
    )
    if not isinstance(outcome, Changed):
        request[OUTCOME] = "rejected"
        if outcome.reason == "session-over":
            raise see_other("/_gateway/login")
        wait = math.ceil(outcome.wait)
        return _change_form(
            request,
            services,
            csrf=csrf_for(services, live),
            email=live.user.email,
            error=outcome.message,
            status=429 if wait > 0 else 400,
            headers={"Retry-After": str(wait)} if wait > 0 else None,
        )
    response = _change_form(
        request,
        services,
        csrf=outcome.csrf,
        email=live.user.email,
        notice="Your password was changed. Every other session signed in to your account ended.",
    )
    set_cookie(services, response, services.cookies.session, outcome.raw_id)
    return response


def add_routes(app: web.Application) -> None:
    """The password pages; register before the /_gateway/ catch-all."""
    add_get(app, FORGOT_PATH, forgot_page)
    add_route(app, "POST", FORGOT_PATH, forgot_submit)
    add_get(app, RESET_PATH, reset_page)
    add_route(app, "POST", RESET_PATH, reset_submit)
    add_get(app, CHANGE_PATH, change_page)
    add_route(app, "POST", CHANGE_PATH, change_submit)
