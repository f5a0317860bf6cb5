"""The 2FA settings page: a signed-in user sees their methods, remembered devices and recent
sign-ins, and (after a fresh second factor) switches the primary method, changes the backup,
makes new recovery codes and forgets devices. Opening a change, and every change posted, asks
for a second factor no older than five minutes first; the verify page comes back here."""

from __future__ import annotations

import datetime as dt
from urllib.parse import quote
from zoneinfo import ZoneInfo

from aiohttp import web

from gateway.http.requests import CLIENT_ADDR, OUTCOME
from gateway.mfa.destinations import display_phone
from gateway.secondfactor.backup import BackupSent
from gateway.secondfactor.changes import CHANGE_BACKUP_PURPOSE
from gateway.secondfactor.enrolment import TotpSetup
from gateway.secondfactor.refusals import DeviceUnknown, SecondFactorRefused, StepMissing
from gateway.secondfactor.rules import duration_text
from gateway.sending.service import sent_message
from gateway.services import SERVICES
from gateway.signin.sessions import LiveSession
from gateway.web.context import add_get, add_route
from gateway.web.gate import ENROL_PATH, with_next
from gateway.web.mfa_forms import (
    MAX_CODE,
    SEND_STATUS,
    Posted,
    csrf_for,
    rules_for,
    same_site_form,
    see_other,
    signed_in,
)
from gateway.web.pages import clear_cookie, render_page
from gateway.web.settings_flows import (
    METHOD_WORDS,
    SETTINGS_PATH,
    change_backup,
    devices,
    forget_devices,
    forgets_this_browser,
    may_change,
    may_view,
    methods,
    new_recovery_codes,
    sign_ins,
    switch_primary,
    time_zone,
)
from gateway.web.team import TEAM_PATH, StepUpNeeded

PRIMARY_TOTP_PATH = f"{SETTINGS_PATH}/primary/totp"
PRIMARY_SMS_PATH = f"{SETTINGS_PATH}/primary/sms"
BACKUP_PATH = f"{SETTINGS_PATH}/backup"
RECOVERY_CODES_PATH = f"{SETTINGS_PATH}/recovery-codes"
FORGET_ALL_PATH = f"{SETTINGS_PATH}/devices/forget"
FORGET_PATH = f"{SETTINGS_PATH}/devices/{{device_id}}/forget"
CHANGES = ("totp", "sms", "backup")
DONE = {
    "primary": "Your sign-in method was changed.",
    "backup": "Your backup method was changed.",
    "devices": "Forgotten: those devices ask for a second factor at their next sign-in, and"
    " the sessions they let in are signed out.",
}


def _back_to(change: str | None) -> str:
    return SETTINGS_PATH if change is None else f"{SETTINGS_PATH}?change={change}"


async def _page(
    request: web.Request,
    live: LiveSession,
    *,
    change: str | None = None,
    sent: BackupSent | None = None,
    error: str | None = None,
    status: int = 200,
) -> web.StreamResponse:
    """The settings, with the form of ``change`` (totp, sms or backup) open if asked: that
    needs a fresh second factor, as the change itself does."""
    services = request.app[SERVICES]
    decision, rules = await rules_for(services, live)
    try:
        enrolled = await may_view(services, live, _back_to(change))
        if change is not None and enrolled:
            await may_change(services, live, _back_to(change))
    except StepUpNeeded as step_up:
        raise see_other(step_up.verify_url) from None
    second_factors = services.second_factors
    setup: TotpSetup | None = None
    if enrolled and change == "totp":
        try:
            setup = await second_factors.enrolments.totp_setup(live.user, rules, changing=True)
        except StepMissing:
            setup = None
    if enrolled and change == "sms" and sent is None and error is None:
        try:
            sent = (await second_factors.text_messages.step(live.user, rules, changing=True)).sent
        except StepMissing:
            sent = None
    if enrolled and change == "backup" and sent is None and error is None:
        live_code = await services.sending.live_code(
            user_id=live.user.id, purpose=CHANGE_BACKUP_PURPOSE
        )
        if live_code is not None:
            left = max(60.0, live_code.expires_at - services.clock())
            sent = BackupSent(
                kind=live_code.channel.value,
                destination=live_code.destination,
                message=sent_message(live_code.channel, live_code.destination, left),
                expires_at=live_code.expires_at,
            )
    zone = time_zone(decision)
    tz = ZoneInfo(zone)

    def when(at: float) -> str:
        return dt.datetime.fromtimestamp(at, tz).strftime("%d %b %Y %H:%M %Z")

    return render_page(
        request,
        "mfa_settings.html",
        {
            "email": live.user.email,
            "principal": live.user.role == "principal",
            "team_path": TEAM_PATH,
            "enrol_url": with_next(ENROL_PATH, SETTINGS_PATH),
            "methods": await methods(services, live, rules),
            "change": change if enrolled else None,
            "setup": setup,
            "sent": sent,
            "number": None
            if sent is None or sent.kind != "sms"
            else display_phone(sent.destination),
            "error": error,
            "done": DONE.get(request.query.get("done", "")),
            "devices": await devices(request, live, rules) if enrolled else [],
            "sign_ins": await sign_ins(services, live, zone),
            "zone": zone,
            "words": METHOD_WORDS,
            "when": when,
            "minutes": duration_text(rules.code_lifetime),
            "csrf": csrf_for(services, live),
        },
        status=status,
    )


async def settings_page(request: web.Request) -> web.StreamResponse:
    live = signed_in(request)
    change = request.query.get("change")
    return await _page(request, live, change=change if change in CHANGES else None)


async def _allowed(posted: Posted, change: str | None) -> None:
    """Redirect to the verify page unless the session may change its 2FA now."""
    try:
        await may_change(posted.services, posted.live, _back_to(change))
    except StepUpNeeded as step_up:
        raise see_other(step_up.verify_url) from None
    except SecondFactorRefused:  # nothing set up: the page says so, and links to set-up
        raise see_other(SETTINGS_PATH) from None


async def _refused(
    request: web.Request, live: LiveSession, change: str, refusal: SecondFactorRefused
) -> web.StreamResponse:
    """The change's form again, saying why it was refused."""
    request[OUTCOME] = "rejected"
    status = SEND_STATUS.get(refusal.reason, 409 if isinstance(refusal, StepMissing) else 400)
    return await _page(request, live, change=change, error=refusal.message, status=status)


# The primary method


@same_site_form
async def start_totp(request: web.Request, posted: Posted) -> web.StreamResponse:
    await _allowed(posted, "totp")
    try:
        await posted.services.second_factors.enrolments.start_totp(
            posted.live.user, posted.rules, changing=True
        )
    except SecondFactorRefused as refusal:
        return await _refused(request, posted.live, "totp", refusal)
    raise see_other(_back_to("totp"))


@same_site_form
async def confirm_totp(request: web.Request, posted: Posted) -> web.StreamResponse:
    return await _confirm_primary(request, posted, "totp")


async def _confirm_primary(request: web.Request, posted: Posted, kind: str) -> web.StreamResponse:
    await _allowed(posted, kind)
    decision, _ = await rules_for(posted.services, posted.live)
    try:
        await switch_primary(
            request, posted.live, decision, kind=kind, code=posted.fields["code"][:MAX_CODE]
        )
    except SecondFactorRefused as refusal:
        return await _refused(request, posted.live, kind, refusal)
    raise see_other(f"{SETTINGS_PATH}?done=primary")


@same_site_form
async def send_sms_code(request: web.Request, posted: Posted) -> web.StreamResponse:
    await _allowed(posted, "sms")
    try:
        _, sent = await posted.services.second_factors.text_messages.begin(
            posted.live.user,
            posted.rules,
            posted.fields["destination"][:256],
            client_addr=request[CLIENT_ADDR],
            changing=True,
        )
    except SecondFactorRefused as refusal:
        return await _refused(request, posted.live, "sms", refusal)
    return await _page(request, posted.live, change="sms", sent=sent)


@same_site_form
async def confirm_sms(request: web.Request, posted: Posted) -> web.StreamResponse:
    return await _confirm_primary(request, posted, "sms")


# The backup method


@same_site_form
async def send_backup_code(request: web.Request, posted: Posted) -> web.StreamResponse:
    await _allowed(posted, "backup")
    try:
        sent = await posted.services.second_factors.changes.send_backup_code(
            posted.live.user,
            posted.rules,
            kind=posted.fields["kind"],
            typed=posted.fields["destination"][:256],
            client_addr=request[CLIENT_ADDR],
        )
    except SecondFactorRefused as refusal:
        return await _refused(request, posted.live, "backup", refusal)
    return await _page(request, posted.live, change="backup", sent=sent)


@same_site_form
async def confirm_backup(request: web.Request, posted: Posted) -> web.StreamResponse:
    await _allowed(posted, "backup")
    decision, _ = await rules_for(posted.services, posted.live)
    try:
        await change_backup(request, posted.live, decision, posted.fields["code"][:MAX_CODE])
    except SecondFactorRefused as refusal:
        return await _refused(request, posted.live, "backup", refusal)
    raise see_other(f"{SETTINGS_PATH}?done=backup")


# Recovery codes and remembered devices


@same_site_form
async def regenerate_codes(request: web.Request, posted: Posted) -> web.StreamResponse:
    await _allowed(posted, None)
    decision, _ = await rules_for(posted.services, posted.live)
    try:
        codes, _ = await new_recovery_codes(request, posted.live, decision)
    except SecondFactorRefused:
        raise see_other(SETTINGS_PATH) from None
    body = "".join(f"{code}\r\n" for code in codes)
    return render_page(
        request,
        "mfa_recovery.html",
        {
            "codes": codes,
            "next": SETTINGS_PATH,
            "notice": "New recovery codes are ready. The earlier ones no longer work.",
            "download": "data:text/plain;charset=utf-8," + quote(body),
        },
    )


async def _forget(request: web.Request, posted: Posted, device: str | None) -> web.StreamResponse:
    await _allowed(posted, None)
    decision, _ = await rules_for(posted.services, posted.live)
    try:
        await forget_devices(request, posted.live, decision, device)
    except DeviceUnknown as unknown:
        return await _page(request, posted.live, error=unknown.message, status=404)
    except SecondFactorRefused:
        raise see_other(SETTINGS_PATH) from None
    response = see_other(f"{SETTINGS_PATH}?done=devices")
    if forgets_this_browser(request, device):
        clear_cookie(posted.services, response, posted.services.cookies.remembered)
    raise response


@same_site_form
async def forget_all(request: web.Request, posted: Posted) -> web.StreamResponse:
    return await _forget(request, posted, None)


@same_site_form
async def forget_one(request: web.Request, posted: Posted) -> web.StreamResponse:
    return await _forget(request, posted, request.match_info["device_id"][:64])


def add_routes(app: web.Application) -> None:
    add_get(app, SETTINGS_PATH, settings_page)
    add_route(app, "POST", PRIMARY_TOTP_PATH, start_totp)
    add_route(app, "POST", f"{PRIMARY_TOTP_PATH}/confirm", confirm_totp)
    add_route(app, "POST", PRIMARY_SMS_PATH, send_sms_code)
    add_route(app, "POST", f"{PRIMARY_SMS_PATH}/confirm", confirm_sms)
    add_route(app, "POST", BACKUP_PATH, send_backup_code)
    add_route(app, "POST", f"{BACKUP_PATH}/confirm", confirm_backup)
    add_route(app, "POST", RECOVERY_CODES_PATH, regenerate_codes)
    add_route(app, "POST", FORGET_ALL_PATH, forget_all)
    add_route(app, "POST", FORGET_PATH, forget_one)


__all__ = ["SETTINGS_PATH", "add_routes"]
