"""The 2FA set-up pages: choose an authenticator app or a phone, prove it with a code, add a
backup phone or email, save recovery codes."""

from __future__ import annotations

import logging
from urllib.parse import quote

from aiohttp import web

from gateway.http.redirects import safe_next
from gateway.http.requests import CLIENT_ADDR, OUTCOME
from gateway.mfa.destinations import display_phone
from gateway.secondfactor.backup import BackupSent
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
from gateway.services import SERVICES
from gateway.signin.sessions import LiveSession
from gateway.store.records import AuditEntry
from gateway.web.context import add_get, add_route
from gateway.web.gate import ENROL_PATH, with_next
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

log = logging.getLogger(__name__)

TOTP_PATH = "/_gateway/mfa/enrol/totp"
CONFIRM_PATH = "/_gateway/mfa/enrol/totp/confirm"
SMS_PATH = "/_gateway/mfa/enrol/sms"
SMS_SEND_PATH = "/_gateway/mfa/enrol/sms/send"
SMS_CONFIRM_PATH = "/_gateway/mfa/enrol/sms/confirm"
BACKUP_PATH = "/_gateway/mfa/enrol/backup"
BACKUP_CONFIRM_PATH = "/_gateway/mfa/enrol/backup/confirm"
FINISH_PATH = "/_gateway/mfa/enrol/finish"
BACKUP_KINDS = ("sms", "email")


# Enrolment


async def enrol_page(request: web.Request) -> web.StreamResponse:
    return await _enrol_page(request, safe_next(request.query.get("next")))


async def _enrol_page(
    request: web.Request, next_target: str, *, error: str | None = None
) -> web.StreamResponse:
    services = request.app[SERVICES]
    live = signed_in(request)
    decision, rules = await rules_for(services, live)
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
            # What can be set up here: a policy may accept text messages where this gateway
            # cannot send them.
            "choices": services.second_factors.primary_choices(rules),
            "enrolled_methods": sorted(enrolment.methods),
            "next": next_target,
            "csrf": csrf_for(services, live),
            "error": error,
        },
        status=200 if error is None else 409,
    )


@posted_form
async def start_method(request: web.Request, posted: Posted) -> web.StreamResponse:
    """Begin (again) setting up the primary method the path names: an app, or a phone."""
    second_factors, user, rules = posted.services.second_factors, posted.live.user, posted.rules
    try:
        if request.path == SMS_PATH:
            await second_factors.text_messages.start(user, rules)
        else:
            await second_factors.enrolments.start_totp(user, rules)
    except (AlreadyEnrolled, StepMissing):
        # Set up already, or a method the policy does not accept: the choice page says so.
        raise see_other(with_next(ENROL_PATH, posted.next_target)) from None
    raise see_other(with_next(request.path, posted.next_target))


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
        raise see_other(with_next(ENROL_PATH, next_target)) from None
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
            "csrf": csrf_for(services, live),
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
        if refused.kind == "sms":
            return await _sms_page(request, live, rules, next_target, status=409)
        return await _totp_page(request, live, rules, next_target, status=409)
    return await _enrol_page(request, next_target, error=refused.message)


async def totp_page(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    live = signed_in(request)
    _, rules = await rules_for(services, live)
    return await _totp_page(request, live, rules, safe_next(request.query.get("next")))


@posted_form
async def confirm_totp(request: web.Request, posted: Posted) -> web.StreamResponse:
    services, live, fields, rules = posted.services, posted.live, posted.fields, posted.rules
    next_target = posted.next_target
    second_factors = services.second_factors
    try:
        await second_factors.enrolments.confirm_totp(live.user, fields["code"][:MAX_CODE], rules)
    except AlreadyEnrolled:
        raise see_other(with_next(ENROL_PATH, next_target)) from None
    except (StepExpired, StepMissing) as refused:
        return await _step_refused(request, live, rules, next_target, refused)
    except SecondFactorRefused as refused:
        request[OUTCOME] = "rejected"
        return await _totp_page(
            request, live, rules, next_target, error=refused.message, status=400
        )
    return await _after_primary(request, live, rules, next_target)


async def _after_primary(
    request: web.Request, live: LiveSession, rules: Rules, next_target: str
) -> web.StreamResponse:
    """Once the primary method is proved: the backup step, or the end."""
    backups = request.app[SERVICES].second_factors.backups
    if backups.channels(rules) or rules.backup_required(live.user.role):
        # The backup step comes next: offered to everyone, required for some roles.
        raise see_other(with_next(BACKUP_PATH, next_target))
    return await _finish(request, live, rules, next_target)


# A phone as the primary method


async def _sms_page(
    request: web.Request,
    live: LiveSession,
    rules: Rules,
    next_target: str,
    *,
    sent: BackupSent | None = None,
    error: str | None = None,
    status: int = 200,
    change: bool = False,
) -> web.StreamResponse:
    """The phone step's page: the number form, or (once a code is on its way, unless the user
    asked to ``change`` the number) the code form."""
    services = request.app[SERVICES]
    try:
        step = await services.second_factors.text_messages.step(live.user, rules)
    except AlreadyEnrolled:
        raise see_other(with_next(ENROL_PATH, next_target)) from None
    except StepMissing as refused:
        request[OUTCOME] = "rejected"
        return await _enrol_page(request, next_target, error=refused.message)
    if step.proved is not None:
        # Proved already (the page was opened again): on to the next step.
        raise see_other(with_next(BACKUP_PATH, next_target))
    shown = sent or (None if change else step.sent)
    return render_page(
        request,
        "mfa_sms.html",
        {
            "notice": step.notice,
            "sent": shown,
            # The number just typed, as the gateway read it: +61 412 345 678.
            "number": None if shown is None else display_phone(shown.destination),
            "error": error,
            "next": next_target,
            "csrf": csrf_for(services, live),
            "minutes": duration_text(rules.code_lifetime),
        },
        status=status,
    )


async def sms_page(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    live = signed_in(request)
    _, rules = await rules_for(services, live)
    next_target = safe_next(request.query.get("next"))
    change = request.query.get("change") == "1"
    return await _sms_page(request, live, rules, next_target, change=change)


@posted_form
async def send_sms_code(request: web.Request, posted: Posted) -> web.StreamResponse:
    services, live, fields, rules = posted.services, posted.live, posted.fields, posted.rules
    next_target = posted.next_target
    try:
        sent = await services.second_factors.text_messages.send(
            live.user, rules, fields["destination"][:256], client_addr=request[CLIENT_ADDR]
        )
    except AlreadyEnrolled:
        raise see_other(with_next(ENROL_PATH, next_target)) from None
    except (StepExpired, StepMissing) as refused:
        return await _step_refused(request, live, rules, next_target, refused)
    except SecondFactorRefused as refused:
        request[OUTCOME] = "rejected"
        status = SEND_STATUS.get(refused.reason, 400)
        return await _sms_page(
            request, live, rules, next_target, error=refused.message, status=status
        )
    return await _sms_page(request, live, rules, next_target, sent=sent)


@posted_form
async def confirm_sms(request: web.Request, posted: Posted) -> web.StreamResponse:
    services, live, fields, rules = posted.services, posted.live, posted.fields, posted.rules
    next_target = posted.next_target
    try:
        await services.second_factors.text_messages.confirm(
            live.user, rules, fields["code"][:MAX_CODE]
        )
    except AlreadyEnrolled:
        raise see_other(with_next(ENROL_PATH, next_target)) from None
    except (StepExpired, StepMissing) as refused:
        return await _step_refused(request, live, rules, next_target, refused)
    except SecondFactorRefused as refused:
        request[OUTCOME] = "rejected"
        return await _sms_page(request, live, rules, next_target, error=refused.message, status=400)
    return await _after_primary(request, live, rules, next_target)


async def _finish(
    request: web.Request, live: LiveSession, rules: Rules, next_target: str
) -> web.StreamResponse:
    """Save the enrolment, mark the session verified and show the recovery codes once."""
    services = request.app[SERVICES]
    entry = AuditEntry(actor=live.user.id, client_addr=request[CLIENT_ADDR])
    try:
        codes = await services.second_factors.enrolments.finish(live.user, rules, entry)
    except AlreadyEnrolled:
        raise see_other(with_next(ENROL_PATH, next_target)) from None
    except BackupRequired as refused:
        request[OUTCOME] = "rejected"
        return await _backup_page(request, live, rules, next_target, error=refused.message)
    except (StepExpired, StepMissing) as refused:
        return await _step_refused(request, live, rules, next_target, refused)
    enrolment = await services.second_factors.enrolments.enrolment(live.user.id)
    services.decider.note_enrolment(live.user.id, enrolment)
    raw_id = await mark_verified(services, live, min(enrolment.methods))
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
        raise see_other(with_next(ENROL_PATH, next_target)) from None
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
            "csrf": csrf_for(services, live),
            "minutes": duration_text(rules.code_lifetime),
        },
        status=status or (200 if error is None else 400),
    )


async def backup_page(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    live = signed_in(request)
    _, rules = await rules_for(services, live)
    return await _backup_page(request, live, rules, safe_next(request.query.get("next")))


@posted_form
async def send_backup_code(request: web.Request, posted: Posted) -> web.StreamResponse:
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
        status = SEND_STATUS.get(refused.reason, 400)
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


@posted_form
async def confirm_backup(request: web.Request, posted: Posted) -> web.StreamResponse:
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


@posted_form
async def finish_enrolment(request: web.Request, posted: Posted) -> web.StreamResponse:
    """Finish without a backup (skipped), or with the one a code proved."""
    return await _finish(request, posted.live, posted.rules, posted.next_target)


def add_routes(app: web.Application) -> None:
    add_get(app, ENROL_PATH, enrol_page)
    add_route(app, "POST", TOTP_PATH, start_method)
    add_get(app, TOTP_PATH, totp_page)
    add_route(app, "POST", CONFIRM_PATH, confirm_totp)
    add_route(app, "POST", SMS_PATH, start_method)
    add_get(app, SMS_PATH, sms_page)
    add_route(app, "POST", SMS_SEND_PATH, send_sms_code)
    add_route(app, "POST", SMS_CONFIRM_PATH, confirm_sms)
    add_get(app, BACKUP_PATH, backup_page)
    add_route(app, "POST", BACKUP_PATH, send_backup_code)
    add_route(app, "POST", BACKUP_CONFIRM_PATH, confirm_backup)
    add_route(app, "POST", FINISH_PATH, finish_enrolment)


# remember_device is also the JSON API's (``"don't ask again"`` on a challenge call).
__all__ = ["add_routes", "remember_device"]
