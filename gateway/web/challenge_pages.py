"""The challenge pages, at sign-in and for a step-up: a code from the authenticator app or sent
to the phone, "use my backup method", "use a recovery code", and "don't ask again on this
device"."""

from __future__ import annotations

import re
from urllib.parse import quote

from aiohttp import web

from gateway.http.redirects import safe_next
from gateway.http.requests import CLIENT_ADDR, OUTCOME
from gateway.policy import Enrolment
from gateway.secondfactor.backup import BackupSent
from gateway.secondfactor.refusals import SecondFactorRefused
from gateway.secondfactor.rules import duration_text
from gateway.services import SERVICES, Services
from gateway.signin.sessions import LiveSession
from gateway.web.context import add_get, add_route
from gateway.web.gate import ENROL_PATH, VERIFY_PATH, with_next
from gateway.web.mfa_forms import (
    MAX_CODE,
    SEND_STATUS,
    Posted,
    csrf_for,
    mark_verified,
    posted_form,
    remember_device,
    rules_for,
    see_other,
    signed_in,
)
from gateway.web.pages import render_page, set_cookie

VERIFY_SEND_PATH = "/_gateway/mfa/verify/send"
VERIFY_METHODS = ("totp", "sms", "backup", "recovery")
PRIMARY_METHODS = ("totp", "sms")
MAX_AGE_SHAPE = re.compile(r"[0-9]{1,9}")


def _method(value: str | None, enrolment: Enrolment) -> str:
    """The challenge method asked for; anything unknown, or a primary method the user lacks,
    is the user's primary method."""
    if value in VERIFY_METHODS and (value not in PRIMARY_METHODS or value in enrolment.methods):
        return value
    return "sms" if "sms" in enrolment.methods and "totp" not in enrolment.methods else "totp"


def _max_age(value: str | None) -> int | None:
    """A step-up's ``max_age`` in seconds; anything but digits asks for a fresh check (0)."""
    if value is None or value == "":
        return None
    return int(value) if MAX_AGE_SHAPE.fullmatch(value) else 0


def _fresh_enough(live: LiveSession, max_age: int | None, now: float) -> bool:
    checked = live.second_factor
    if checked is None:
        return False
    return max_age is None or checked.fresh(max_age, now)


async def verify_page(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    live = signed_in(request)
    next_target = safe_next(request.query.get("next"))
    max_age = _max_age(request.query.get("max_age"))
    method = request.query.get("method", "")
    return await _verify_form(request, services, live, next_target, max_age, method, opening=True)


async def _verify_form(
    request: web.Request,
    services: Services,
    live: LiveSession,
    next_target: str,
    max_age: int | None,
    asked: str,
    *,
    error: str | None = None,
    status: int = 200,
    sent: BackupSent | None = None,
    opening: bool = False,
) -> web.StreamResponse:
    """The challenge form for method ``asked``; ``opening`` the page sends the code to the
    phone when that is the method (unless one sent before can still be used)."""
    if _fresh_enough(live, max_age, services.clock()):
        raise see_other(next_target)
    decision, rules = await rules_for(services, live)
    enrolment = await services.decider.enrolment(live.user.id)
    if not enrolment.enrolled:
        # Nothing to confirm with yet: set it up first (a step-up asks for that too).
        raise see_other(with_next(ENROL_PATH, next_target))
    method = _method(asked, enrolment)
    query: dict[str, str] = {"next": next_target}
    if max_age is not None:
        query["max_age"] = str(max_age)
    backup = await services.second_factors.backups.enrolled(live.user)
    if method == "backup" and backup is None:
        method = _method("", enrolment)  # no backup set up: the primary method's form
    if method == "sms" and opening:
        try:
            sent = await services.second_factors.text_messages.send_challenge(
                live.user, rules, again=False, client_addr=request[CLIENT_ADDR]
            )
        except SecondFactorRefused as refused:
            request[OUTCOME] = "rejected"
            error, status = refused.message, SEND_STATUS.get(refused.reason, 400)
    offered = {*enrolment.methods, "recovery", *(("backup",) if backup is not None else ())}
    links = {
        other: f"{VERIFY_PATH}?"
        + "&".join(f"{k}={quote(v, safe='/')}" for k, v in {**query, "method": other}.items())
        for other in VERIFY_METHODS
        if other != method and other in offered
    }
    return render_page(
        request,
        "mfa_verify.html",
        {
            "email": live.user.email,
            "csrf": csrf_for(services, live),
            "next": next_target,
            "max_age": max_age,
            "method": method,
            "step_up": max_age is not None and live.mfa_verified,
            "offer_remember": not live.mfa_verified,
            "remember_for": duration_text(rules.remember_device),
            "links": links,
            "backup": backup,
            "sent": sent,
            "error": error,
            "reason": decision.reason,
        },
        status=status,
    )


@posted_form
async def verify_submit(request: web.Request, posted: Posted) -> web.StreamResponse:
    services, live, fields, rules = posted.services, posted.live, posted.fields, posted.rules
    next_target = posted.next_target
    max_age = _max_age(fields["max_age"])
    method = _method(fields["method"], await services.decider.enrolment(live.user.id))
    client = request[CLIENT_ADDR]
    try:
        passed = await services.second_factors.challenges.verify(
            live.user,
            method=method,
            code=fields["code"][:MAX_CODE],
            rules=rules,
            client_addr=client,
        )
    except SecondFactorRefused as refused:
        request[OUTCOME] = "rejected"
        return await _verify_form(
            request,
            services,
            live,
            next_target,
            max_age,
            method,
            error=refused.message,
            status=400,
        )
    remember = fields["remember"] == "1" and not live.mfa_verified
    raw_id = await mark_verified(services, live, passed.method)
    response = see_other(next_target)
    set_cookie(services, response, services.cookies.session, raw_id)
    if remember:
        await remember_device(request, live, rules, response)
    raise response


@posted_form
async def send_challenge_code(request: web.Request, posted: Posted) -> web.StreamResponse:
    """ "Use my backup method", or "send again" to the phone: send a code (a limited send
    says when to try again)."""
    services, live, fields, rules = posted.services, posted.live, posted.fields, posted.rules
    next_target = posted.next_target
    max_age = _max_age(fields["max_age"])
    method = "sms" if fields["method"] == "sms" else "backup"
    try:
        # "Send again" on the page always sends a new code.
        sent = await services.second_factors.send_challenge(
            live.user, rules, method=method, again=True, client_addr=request[CLIENT_ADDR]
        )
    except SecondFactorRefused as refused:
        request[OUTCOME] = "rejected"
        status = SEND_STATUS.get(refused.reason, 400)
        return await _verify_form(
            request,
            services,
            live,
            next_target,
            max_age,
            method,
            error=refused.message,
            status=status,
        )
    return await _verify_form(request, services, live, next_target, max_age, method, sent=sent)


def add_routes(app: web.Application) -> None:
    add_get(app, VERIFY_PATH, verify_page)
    add_route(app, "POST", VERIFY_PATH, verify_submit)
    add_route(app, "POST", VERIFY_SEND_PATH, send_challenge_code)


__all__ = ["add_routes"]
