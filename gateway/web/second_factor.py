"""The 2FA pages: set up an authenticator app, add a backup phone or email, save recovery
codes, confirm it's you at sign-in or for a step-up, and "don't ask again on this device"."""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import quote

from aiohttp import web

from gateway.audit import DeviceRemembered
from gateway.errors import NotFoundError
from gateway.http.csrf import csrf_token, csrf_valid
from gateway.http.redirects import safe_next
from gateway.http.requests import CLIENT_ADDR, OUTCOME
from gateway.policy import Decision
from gateway.secondfactor.backup import BackupSent
from gateway.secondfactor.devices import device_label
from gateway.secondfactor.refusals import (
    AlreadyEnrolled,
    BackupRefused,
    BackupRequired,
    CodeRefused,
    SecondFactorRefused,
    StepExpired,
    StepMissing,
)
from gateway.secondfactor.rules import Rules, duration_text
from gateway.sending.service import Channel, masked
from gateway.services import SERVICES, SESSION, Services
from gateway.signin.sessions import LiveSession
from gateway.store.records import AuditEntry
from gateway.web.context import add_get, add_route, read_form
from gateway.web.gate import ENROL_PATH, VERIFY_PATH, login_url, with_next
from gateway.web.pages import expired_form, form_field, render_page, set_cookie

log = logging.getLogger(__name__)

TOTP_PATH = "/_gateway/mfa/enrol/totp"
CONFIRM_PATH = "/_gateway/mfa/enrol/totp/confirm"
BACKUP_PATH = "/_gateway/mfa/enrol/backup"
BACKUP_CONFIRM_PATH = "/_gateway/mfa/enrol/backup/confirm"
FINISH_PATH = "/_gateway/mfa/enrol/finish"
VERIFY_SEND_PATH = "/_gateway/mfa/verify/send"
VERIFY_METHODS = ("totp", "backup", "recovery")
BACKUP_KINDS = ("sms", "email")
# A refused send: limited (try later), or failed or not possible here (try again, or another).
_SEND_STATUS = {"send-limited": 429, "send-failed": 503, "send-unavailable": 503}
MAX_CODE = 64
MAX_AGE_SHAPE = re.compile(r"[0-9]{1,9}")


def _signed_in(request: web.Request) -> LiveSession:
    live: LiveSession | None = request.get(SESSION)
    if live is None:
        raise web.HTTPSeeOther(login_url(request.path_qs))
    return live


async def _rules(services: Services, live: LiveSession) -> tuple[Decision, Rules]:
    decision = await services.decider.decide_for(live)
    return decision, Rules.of(decision.effective)


def _csrf(services: Services, live: LiveSession) -> str:
    return csrf_token(services.keys.csrf, live.record.csrf_secret)


async def _checked_form(
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
class _Posted:
    """A signed-in user's form that carried this session's CSRF token."""

    services: Services
    live: LiveSession
    fields: dict[str, str]
    rules: Rules
    next_target: str  # a same-origin path


_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _form(handler: Callable[[web.Request, _Posted], Awaitable[web.StreamResponse]]) -> _Handler:
    """A POST handler for a signed-in user's form: a form whose CSRF token is not this
    session's gets the expired-form page; otherwise the handler is given the fields, the
    rules that apply and the safe ``next``."""

    @functools.wraps(handler)
    async def checked(request: web.Request) -> web.StreamResponse:
        services = request.app[SERVICES]
        live = _signed_in(request)
        fields = await _checked_form(request, services, live)
        if fields is None:
            return expired_form(request)
        _, rules = await _rules(services, live)
        posted = _Posted(
            services=services,
            live=live,
            fields=fields,
            rules=rules,
            next_target=safe_next(fields["next"]),
        )
        return await handler(request, posted)

    return checked


def _redirect(target: str) -> web.HTTPException:
    return web.HTTPSeeOther(target, headers={"Cache-Control": "no-store"})


def _method(value: str | None) -> str:
    """The challenge method asked for; anything unknown is the authenticator app."""
    return value if value in VERIFY_METHODS else "totp"


def _max_age(value: str | None) -> int | None:
    """A step-up's ``max_age`` in seconds; anything but digits asks for a fresh check (0)."""
    if value is None or value == "":
        return None
    return int(value) if MAX_AGE_SHAPE.fullmatch(value) else 0


# Enrolment


async def enrol_page(request: web.Request) -> web.StreamResponse:
    return await _enrol_page(request, safe_next(request.query.get("next")))


async def _enrol_page(
    request: web.Request, next_target: str, *, error: str | None = None
) -> web.StreamResponse:
    services = request.app[SERVICES]
    live = _signed_in(request)
    decision, rules = await _rules(services, live)
    enrolment = await services.decider.enrolment(live.user.id)
    return render_page(
        request,
        "mfa_enrol.html",
        {
            "email": live.user.email,
            "enrolled": enrolment.enrolled,
            "needs_backup": enrolment.enrolled and decision.deadline is not None,
            # No policy asks this user for 2FA: say so, and let them set it up anyway.
            "optional": decision.deadline is None,
            "reason": decision.reason,
            "methods": sorted(rules.primary_methods),
            "next": next_target,
            "csrf": _csrf(services, live),
            "error": error,
        },
        status=200 if error is None else 409,
    )


@_form
async def start_totp(request: web.Request, posted: _Posted) -> web.StreamResponse:
    services, live, rules = posted.services, posted.live, posted.rules
    next_target = posted.next_target
    try:
        await services.second_factors.enrolments.start_totp(live.user, rules)
    except (AlreadyEnrolled, StepMissing):
        # Set up already, or a method the policy does not accept: the choice page says so.
        raise _redirect(with_next(ENROL_PATH, next_target)) from None
    raise _redirect(with_next(TOTP_PATH, next_target))


async def _totp_page(
    request: web.Request,
    live: LiveSession,
    rules: Rules,
    next_target: str,
    *,
    error: str | None = None,
    status: int = 200,
) -> web.StreamResponse:
    services = request.app[SERVICES]
    try:
        setup = await services.second_factors.enrolments.totp_setup(live.user, rules)
    except AlreadyEnrolled:
        raise _redirect(with_next(ENROL_PATH, next_target)) from None
    except StepMissing as refused:
        request[OUTCOME] = "rejected"
        return await _enrol_page(request, next_target, error=refused.message)
    return render_page(
        request,
        "mfa_totp.html",
        {
            "setup": setup,
            "notice": setup.notice,
            "error": error,
            "next": next_target,
            "csrf": _csrf(services, live),
            "minutes": duration_text(rules.step_lifetime),
        },
        status=status,
    )


async def _step_refused(
    request: web.Request,
    live: LiveSession,
    rules: Rules,
    next_target: str,
    refused: StepExpired | StepMissing,
) -> web.StreamResponse:
    """A set-up step that ran out starts over (the page shows a new QR code and says why);
    one that was never started, or was restarted, sends the user back to the start."""
    request[OUTCOME] = "rejected"
    if isinstance(refused, StepExpired):
        return await _totp_page(request, live, rules, next_target, status=409)
    return await _enrol_page(request, next_target, error=refused.message)


async def totp_page(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    live = _signed_in(request)
    _, rules = await _rules(services, live)
    return await _totp_page(request, live, rules, safe_next(request.query.get("next")))


@_form
async def confirm_totp(request: web.Request, posted: _Posted) -> web.StreamResponse:
    services, live, fields, rules = posted.services, posted.live, posted.fields, posted.rules
    next_target = posted.next_target
    second_factors = services.second_factors
    try:
        await second_factors.enrolments.confirm_totp(live.user, fields["code"][:MAX_CODE], rules)
    except AlreadyEnrolled:
        raise _redirect(with_next(ENROL_PATH, next_target)) from None
    except (StepExpired, StepMissing) as refused:
        return await _step_refused(request, live, rules, next_target, refused)
    except SecondFactorRefused as refused:
        request[OUTCOME] = "rejected"
        return await _totp_page(
            request, live, rules, next_target, error=refused.message, status=400
        )
    if second_factors.backups.channels(rules) or rules.backup_required(live.user.role):
        # The backup step comes next: offered to everyone, required for some roles.
        raise _redirect(with_next(BACKUP_PATH, next_target))
    return await _finish(request, live, rules, next_target)


async def _finish(
    request: web.Request, live: LiveSession, rules: Rules, next_target: str
) -> web.StreamResponse:
    """Save the enrolment, mark the session verified and show the recovery codes once."""
    services = request.app[SERVICES]
    entry = AuditEntry(actor=live.user.id, client_addr=request[CLIENT_ADDR])
    try:
        codes = await services.second_factors.enrolments.finish(live.user, rules, entry)
    except AlreadyEnrolled:
        raise _redirect(with_next(ENROL_PATH, next_target)) from None
    except BackupRequired as refused:
        request[OUTCOME] = "rejected"
        return await _backup_page(request, live, rules, next_target, error=refused.message)
    except (StepExpired, StepMissing) as refused:
        return await _step_refused(request, live, rules, next_target, refused)
    services.decider.note_enrolment(
        live.user.id, await services.second_factors.enrolments.enrolment(live.user.id)
    )
    raw_id = await _mark_verified(services, live, "totp")
    body = "".join(f"{code}\r\n" for code in codes)
    response = render_page(
        request,
        "mfa_recovery.html",
        {
            "codes": codes,
            "next": next_target,
            # Kept in the page itself: the codes never travel in a URL to the server.
            "download": "data:text/plain;charset=utf-8," + quote(body),
        },
    )
    set_cookie(services, response, services.cookies.session, raw_id)
    return response


async def _mark_verified(services: Services, live: LiveSession, method: str) -> str:
    """Record the check in the store and rotate the session id; the new raw id."""
    try:
        raw_id, _ = await services.sessions.mark_verified(live, method, services.clock())
    except NotFoundError:
        raise _redirect(login_url("/")) from None
    return raw_id


# The backup method


async def _backup_page(
    request: web.Request,
    live: LiveSession,
    rules: Rules,
    next_target: str,
    *,
    sent: BackupSent | None = None,
    error: str | None = None,
    status: int | None = None,
) -> web.StreamResponse:
    services = request.app[SERVICES]
    backups = services.second_factors.backups
    try:
        proved = await backups.proved(live.user, rules)
    except AlreadyEnrolled:
        raise _redirect(with_next(ENROL_PATH, next_target)) from None
    except (StepExpired, StepMissing) as refused:
        return await _step_refused(request, live, rules, next_target, refused)
    return render_page(
        request,
        "mfa_backup.html",
        {
            "channels": backups.channels(rules),
            "required": rules.backup_required(live.user.role),
            "proved": proved,
            "sent": sent,
            "error": error,
            "next": next_target,
            "csrf": _csrf(services, live),
            "minutes": duration_text(rules.code_lifetime),
        },
        status=status or (200 if error is None else 400),
    )


async def backup_page(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    live = _signed_in(request)
    _, rules = await _rules(services, live)
    return await _backup_page(request, live, rules, safe_next(request.query.get("next")))


@_form
async def send_backup_code(request: web.Request, posted: _Posted) -> web.StreamResponse:
    services, live, fields, rules = posted.services, posted.live, posted.fields, posted.rules
    next_target = posted.next_target
    try:
        sent = await services.second_factors.backups.send(
            live.user,
            rules,
            kind=fields["kind"],
            typed=fields["destination"][:256],
            client_addr=request[CLIENT_ADDR],
        )
    except BackupRefused as refused:
        request[OUTCOME] = "rejected"
        status = _SEND_STATUS.get(refused.reason, 400)
        return await _backup_page(
            request, live, rules, next_target, error=refused.message, status=status
        )
    except (StepExpired, StepMissing):
        return await _backup_page(request, live, rules, next_target)
    return await _backup_page(request, live, rules, next_target, sent=sent)


def _sent_again(kind: str, destination: str) -> BackupSent | None:
    """The code form again after a refused code, from its hidden fields (for "send again")."""
    if kind not in BACKUP_KINDS or not destination:
        return None
    to = masked(Channel(kind), destination)
    return BackupSent(
        kind=kind, destination=destination, message=f"We sent a code to {to}.", expires_at=None
    )


@_form
async def confirm_backup(request: web.Request, posted: _Posted) -> web.StreamResponse:
    services, live, fields, rules = posted.services, posted.live, posted.fields, posted.rules
    next_target = posted.next_target
    try:
        await services.second_factors.backups.confirm(live.user, rules, fields["code"][:MAX_CODE])
    except (BackupRefused, CodeRefused) as refused:
        request[OUTCOME] = "rejected"
        sent = _sent_again(fields["kind"], fields["destination"][:256])
        return await _backup_page(
            request, live, rules, next_target, sent=sent, error=refused.message
        )
    except (StepExpired, StepMissing):
        return await _backup_page(request, live, rules, next_target)
    return await _finish(request, live, rules, next_target)


@_form
async def finish_enrolment(request: web.Request, posted: _Posted) -> web.StreamResponse:
    """Finish without a backup (skipped), or with the one a code proved."""
    return await _finish(request, posted.live, posted.rules, posted.next_target)


# The challenge, at sign-in and for a step-up


def _fresh_enough(live: LiveSession, max_age: int | None, now: float) -> bool:
    checked = live.second_factor
    if checked is None:
        return False
    return max_age is None or checked.at >= now - max_age


async def verify_page(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    live = _signed_in(request)
    next_target = safe_next(request.query.get("next"))
    max_age = _max_age(request.query.get("max_age"))
    method = _method(request.query.get("method"))
    return await _verify_form(request, services, live, next_target, max_age, method)


async def _verify_form(
    request: web.Request,
    services: Services,
    live: LiveSession,
    next_target: str,
    max_age: int | None,
    method: str,
    *,
    error: str | None = None,
    status: int = 200,
    sent: BackupSent | None = None,
) -> web.StreamResponse:
    if _fresh_enough(live, max_age, services.clock()):
        raise _redirect(next_target)
    decision, rules = await _rules(services, live)
    if not (await services.decider.enrolment(live.user.id)).enrolled:
        # Nothing to confirm with yet: set it up first (a step-up asks for that too).
        raise _redirect(with_next(ENROL_PATH, next_target))
    query: dict[str, str] = {"next": next_target}
    if max_age is not None:
        query["max_age"] = str(max_age)
    backup = await services.second_factors.backups.enrolled(live.user)
    if method == "backup" and backup is None:
        method = "totp"  # no backup set up: the authenticator app's form
    links = {
        other: f"{VERIFY_PATH}?"
        + "&".join(f"{k}={quote(v, safe='/')}" for k, v in {**query, "method": other}.items())
        for other in VERIFY_METHODS
        if other != method and (other != "backup" or backup is not None)
    }
    return render_page(
        request,
        "mfa_verify.html",
        {
            "email": live.user.email,
            "csrf": _csrf(services, live),
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


@_form
async def verify_submit(request: web.Request, posted: _Posted) -> web.StreamResponse:
    services, live, fields, rules = posted.services, posted.live, posted.fields, posted.rules
    next_target = posted.next_target
    max_age = _max_age(fields["max_age"])
    method = _method(fields["method"])
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
    raw_id = await _mark_verified(services, live, passed.method)
    response = _redirect(next_target)
    set_cookie(services, response, services.cookies.session, raw_id)
    if remember:
        await remember_device(request, live, rules, response)
    raise response


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


@_form
async def send_backup_challenge(request: web.Request, posted: _Posted) -> web.StreamResponse:
    """ "Use my backup method": send a code to it (a limited send says when to try again)."""
    services, live, fields, rules = posted.services, posted.live, posted.fields, posted.rules
    next_target = posted.next_target
    max_age = _max_age(fields["max_age"])
    try:
        sent = await services.second_factors.backups.send_challenge(
            live.user, rules, client_addr=request[CLIENT_ADDR]
        )
    except BackupRefused as refused:
        request[OUTCOME] = "rejected"
        status = _SEND_STATUS.get(refused.reason, 400)
        return await _verify_form(
            request,
            services,
            live,
            next_target,
            max_age,
            "backup",
            error=refused.message,
            status=status,
        )
    return await _verify_form(request, services, live, next_target, max_age, "backup", sent=sent)


def add_routes(app: web.Application) -> None:
    add_get(app, ENROL_PATH, enrol_page)
    add_route(app, "POST", TOTP_PATH, start_totp)
    add_get(app, TOTP_PATH, totp_page)
    add_route(app, "POST", CONFIRM_PATH, confirm_totp)
    add_get(app, BACKUP_PATH, backup_page)
    add_route(app, "POST", BACKUP_PATH, send_backup_code)
    add_route(app, "POST", BACKUP_CONFIRM_PATH, confirm_backup)
    add_route(app, "POST", FINISH_PATH, finish_enrolment)
    add_get(app, VERIFY_PATH, verify_page)
    add_route(app, "POST", VERIFY_PATH, verify_submit)
    add_route(app, "POST", VERIFY_SEND_PATH, send_backup_challenge)


__all__ = ["add_routes"]
