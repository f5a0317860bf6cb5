"""The 2FA interstitial pages: the dismissable prompt, the blocking page, and their actions."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from gateway.audit import PromptDismissed
from gateway.enforcement.decisions import PROMPT_KEY
from gateway.http.csrf import csrf_token, csrf_valid
from gateway.http.redirects import safe_next
from gateway.http.requests import CLIENT_ADDR
from gateway.policy import Decision, Outcome
from gateway.sending.service import Channel
from gateway.services import SERVICES, SESSION
from gateway.signin.sessions import LiveSession
from gateway.store.dismissals import DismissalLimitError
from gateway.web.context import add_get, add_route, read_form
from gateway.web.gate import (
    BLOCKED_PATH,
    ENROL_PATH,
    PROMPT_PATH,
    login_url,
    with_next,
)
from gateway.web.pages import expired_form, form_field, render_page


def _signed_in(request: web.Request) -> LiveSession:
    live: LiveSession | None = request.get(SESSION)
    if live is None:
        raise web.HTTPSeeOther(login_url(request.path_qs))
    return live


def _deadline_text(decision: Decision) -> str:
    if decision.deadline is None or decision.effective is None:
        return ""
    local = decision.deadline.astimezone(ZoneInfo(decision.effective.timezone))
    return f"{local.day} {local:%B %Y}, {local:%H:%M} ({decision.effective.timezone})"


# How the pages name second factors: users read these, never the policy's codes.
_METHOD_NAMES = {"totp": "an authenticator app", "sms": "a text message"}


def _methods_text(decision: Decision, *, sms: bool) -> str:
    """The second factors the user may set up, in words ("an authenticator app or a text
    message"); empty when no policy applies. Text messages are named only where the policy
    accepts them and this gateway can send them (``sms``)."""
    if decision.effective is None:
        return ""
    codes = decision.effective.primary_methods
    if not sms:
        codes = codes - {"sms"}
    names = [name for code, name in _METHOD_NAMES.items() if code in codes]
    names += sorted(code for code in codes if code not in _METHOD_NAMES)
    return " or ".join(names)


def _context(request: web.Request, live: LiveSession, decision: Decision) -> dict[str, Any]:
    """What the pages show. Not the decision's reason: that names policy ids and method codes
    for logs, admins and API callers; users get the same facts in words, each once."""
    services = request.app[SERVICES]
    return {
        "email": live.user.email,
        "outcome": decision.outcome.value,
        # Blocked either because the deadline passed or because "later" was used up.
        "deadline_passed": decision.outcome is Outcome.ENROL and decision.days_left is None,
        "days_left": decision.days_left,
        "deadline": _deadline_text(decision),
        "dismissals_left": decision.dismissals_left,
        "methods": _methods_text(decision, sms=services.sending.available(Channel.SMS)),
        "next": safe_next(request.query.get("next")),
        "csrf": csrf_token(services.keys.csrf, live.record.csrf_secret),
        "enrol_path": ENROL_PATH,
        "ato": bool(decision.effective and "ato-dsp-osf" in decision.effective.compliance_profiles),
    }


# Where each held-back outcome is explained; a page shown for another outcome sends the user on.
_PAGES = {Outcome.PROMPT: PROMPT_PATH, Outcome.ENROL: BLOCKED_PATH}


async def _outcome_page(
    request: web.Request, outcome: Outcome, template: str
) -> web.StreamResponse:
    """Show ``template`` if the user's decision is still ``outcome``, else go where it leads."""
    services = request.app[SERVICES]
    live = _signed_in(request)
    decision = await services.decider.decide_for(live)
    next_target = safe_next(request.query.get("next"))
    if decision.outcome is not outcome:
        page = _PAGES.get(decision.outcome)
        raise web.HTTPSeeOther(with_next(page, next_target) if page else next_target)
    return render_page(request, template, _context(request, live, decision))


async def prompt_page(request: web.Request) -> web.StreamResponse:
    return await _outcome_page(request, Outcome.PROMPT, "mfa_prompt.html")


async def dismiss(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    live = _signed_in(request)
    form = await read_form(request)
    next_target = safe_next(form_field(form, "next", 2048))
    if not csrf_valid(services.keys.csrf, live.record.csrf_secret, form_field(form, "csrf", 128)):
        return expired_form(request)
    decision = await services.decider.decide_for(live)
    if decision.outcome is Outcome.ENROL:
        raise web.HTTPSeeOther(with_next(BLOCKED_PATH, next_target))
    if decision.outcome is not Outcome.PROMPT:
        raise web.HTTPSeeOther(next_target)
    cap = decision.effective.max_dismissals if decision.effective else None
    try:
        count = await services.sessions.dismiss_prompt(live, PROMPT_KEY, limit=cap)
    except DismissalLimitError:
        # Used up elsewhere (another session or replica): the cached count was behind.
        services.decider.note_dismissals(live.user.id, cap or 0)
        raise web.HTTPSeeOther(with_next(BLOCKED_PATH, next_target)) from None
    services.decider.note_dismissals(live.user.id, count)
    dismissed = PromptDismissed(
        user_id=live.user.id,
        org_id=live.user.org_id,
        policies=tuple(decision.policy_ids),
        dismissals=count,
        cap=cap,
    )
    await services.store.audit.record(
        dismissed, at=services.clock(), actor=live.user.id, client_addr=request[CLIENT_ADDR]
    )
    raise web.HTTPSeeOther(next_target, headers={"Cache-Control": "no-store"})


async def blocked_page(request: web.Request) -> web.StreamResponse:
    return await _outcome_page(request, Outcome.ENROL, "mfa_blocked.html")


def add_routes(app: web.Application) -> None:
    add_get(app, PROMPT_PATH, prompt_page)
    add_route(app, "POST", "/_gateway/mfa/dismiss", dismiss)
    add_get(app, BLOCKED_PATH, blocked_page)


__all__ = ["add_routes"]
