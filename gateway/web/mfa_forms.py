"""What every 2FA page shares: the signed-in user, the rules that apply, a posted form checked
against this session's CSRF token, a recorded check, and "don't ask again on this device"."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from gateway.audit import DeviceRemembered
from gateway.errors import NotFoundError, StoreError
from gateway.http.csrf import csrf_token, csrf_valid
from gateway.http.redirects import safe_next
from gateway.http.requests import CLIENT_ADDR, OUTCOME
from gateway.policy import Decision
from gateway.secondfactor.devices import device_label
from gateway.secondfactor.rules import Rules
from gateway.services import SERVICES, SESSION, Services
from gateway.signin.sessions import LiveSession
from gateway.web.api_guard import cross_site_refusal
from gateway.web.context import read_form
from gateway.web.gate import login_url
from gateway.web.pages import expired_form, form_field, set_cookie

log = logging.getLogger(__name__)

# A refused send: limited (try later), or failed or not possible here (try again, or another).
SEND_STATUS = {"send-limited": 429, "send-failed": 503, "send-unavailable": 503}
MAX_CODE = 64


def signed_in(request: web.Request) -> LiveSession:
    live: LiveSession | None = request.get(SESSION)
    if live is None:
        raise web.HTTPSeeOther(login_url(request.path_qs))
    return live


async def rules_for(services: Services, live: LiveSession) -> tuple[Decision, Rules]:
    decision = await services.decider.decide_for(live)
    return decision, Rules.of(decision.effective)


def csrf_for(services: Services, live: LiveSession) -> str:
    return csrf_token(services.keys.csrf, live.record.csrf_secret)


async def checked_form(
    request: web.Request, services: Services, live: LiveSession
) -> dict[str, str] | None:
    """The posted form's fields, or None when its CSRF token is not this session's."""
    form = await read_form(request)
    if not csrf_valid(services.keys.csrf, live.record.csrf_secret, form_field(form, "csrf", 128)):
        return None
    return {
        name: form_field(form, name, 2048)
        for name in ("next", "code", "method", "remember", "max_age", "kind", "destination")
    }


@dataclass(frozen=True, kw_only=True)
class Posted:
    """A signed-in user's form that carried this session's CSRF token."""

    services: Services
    live: LiveSession
    fields: dict[str, str]
    rules: Rules
    next_target: str  # a same-origin path


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def posted_form(handler: Callable[[web.Request, Posted], Awaitable[web.StreamResponse]]) -> Handler:
    """A POST handler for a signed-in user's form: a form whose CSRF token is not this
    session's gets the expired-form page; otherwise the handler is given the fields, the
    rules that apply and the safe ``next``."""

    @functools.wraps(handler)
    async def checked(request: web.Request) -> web.StreamResponse:
        services = request.app[SERVICES]
        live = signed_in(request)
        fields = await checked_form(request, services, live)
        if fields is None:
            return expired_form(request)
        _, rules = await rules_for(services, live)
        posted = Posted(
            services=services,
            live=live,
            fields=fields,
            rules=rules,
            next_target=safe_next(fields["next"]),
        )
        return await handler(request, posted)

    return checked


def same_site_form(
    handler: Callable[[web.Request, Posted], Awaitable[web.StreamResponse]],
) -> Handler:
    """``posted_form`` for a form that changes a second factor (the user's own or a team
    member's): refused before it is read when another site posted it, as its JSON twin is."""
    checked = posted_form(handler)

    @functools.wraps(handler)
    async def guarded(request: web.Request) -> web.StreamResponse:
        refusal = cross_site_refusal(request)
        if refusal is not None:
            request[OUTCOME] = "rejected"
            return refusal.response(request)
        return await checked(request)

    return guarded


async def forget_here(services: Services) -> None:
    """Follow the revocation and user-state feeds now, so this process drops the sessions a
    2FA change just ended and the enrolments it changed at once (other processes do within
    their poll)."""
    try:
        await services.sessions.follow_revocations()
        services.decider.forget_users(await services.sessions.follow_changes())
    except StoreError:  # the change is stored; the poll every two seconds catches up
        log.exception("could not follow the change feeds after a 2FA change; the poll will")


def see_other(target: str) -> web.HTTPException:
    return web.HTTPSeeOther(target, headers={"Cache-Control": "no-store"})


async def mark_verified(services: Services, live: LiveSession, method: str) -> str:
    """Record the check in the store and rotate the session id; the new raw id."""
    try:
        raw_id, _ = await services.sessions.mark_verified(live, method, services.clock())
    except NotFoundError:
        raise see_other(login_url("/")) from None
    return raw_id


async def remember_device(
    request: web.Request, live: LiveSession, rules: Rules, response: web.StreamResponse
) -> float:
    """ "Don't ask again on this device": remember it for ``live``'s user, set its cookie on
    ``response`` and audit it; returns when it runs out."""
    services = request.app[SERVICES]
    now = services.clock()
    user_agent = request.headers.get("User-Agent", "")
    device = await services.second_factors.devices.remember(
        live.user.id, now=now, window=rules.remember_device, user_agent=user_agent
    )
    set_cookie(
        services, response, services.cookies.remembered, device.token, int(rules.remember_device)
    )
    await services.store.audit.record(
        DeviceRemembered(
            user_id=live.user.id,
            org_id=live.user.org_id,
            expires_at=device.expires_at,
            label=device_label(user_agent),
        ),
        at=now,
        actor=live.user.id,
        client_addr=request[CLIENT_ADDR],
    )
    return device.expires_at
