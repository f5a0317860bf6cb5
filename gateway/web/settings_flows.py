"""What the 2FA settings page and its JSON twin share: who may look (a session that passed its
second factor) and who may change (a second factor no older than five minutes, never a
remembered device), the user's methods, devices and recent sign-ins as shown, and each change
made, cached and emailed. Every decision is made here once; the page and the API only say it
their own way."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from aiohttp import web

from gateway.http.requests import CLIENT_ADDR
from gateway.mfa.destinations import masked_email
from gateway.policy import Decision
from gateway.secondfactor.backup import ProvedBackup
from gateway.secondfactor.changes import Changed, DeviceView, device_id
from gateway.secondfactor.devices import token_hash
from gateway.secondfactor.notices import change_notice
from gateway.secondfactor.refusals import NotEnrolled
from gateway.secondfactor.resets import fresh_enough
from gateway.secondfactor.rules import Rules
from gateway.sending.service import Channel, masked
from gateway.services import SERVICES, Services
from gateway.signin.browsers import browser_summary
from gateway.signin.sessions import LiveSession
from gateway.store.records import AuditEntry
from gateway.web.gate import VERIFY_PATH, with_next
from gateway.web.mfa_forms import forget_here
from gateway.web.team import StepUpNeeded, step_up_url

log = logging.getLogger(__name__)

SETTINGS_PATH = "/_gateway/mfa/settings"
METHOD_WORDS = {
    "totp": "authenticator app",
    "sms": "text message",
    "email": "email to the backup address",
    "recovery": "recovery code",
    "device": "remembered device",
}


@dataclass(frozen=True, kw_only=True)
class Methods:
    """The user's second factors as the settings show them (phones and addresses masked)."""

    enrolled: bool
    primary: str | None  # totp or sms
    phone: str | None  # the primary phone, masked
    backup: ProvedBackup | None
    choices: tuple[str, ...]  # the primary methods the user could switch to here
    backup_kinds: tuple[str, ...]  # the backup methods codes can be sent by here


@dataclass(frozen=True, kw_only=True)
class SignInView:
    """One recent sign-in as the user sees it, its time in their zone."""

    at: dt.datetime
    client_addr: str | None
    browser: str
    user_agent: str
    method: str | None  # the second factor its session passed first, if any
    current: bool  # this session's own sign-in


def time_zone(decision: Decision) -> str:
    """The zone times are shown in: the policy's that applies to the user, else UTC."""
    return decision.effective.timezone if decision.effective is not None else "UTC"


async def may_view(services: Services, live: LiveSession, back_to: str = SETTINGS_PATH) -> bool:
    """Whether the user is enrolled; StepUpNeeded when they are and this session has not
    passed its second factor (their devices and sign-ins are for them only)."""
    enrolled = (await services.decider.enrolment(live.user.id)).enrolled
    if enrolled and not live.mfa_verified:
        raise StepUpNeeded(with_next(VERIFY_PATH, back_to))
    return enrolled


async def may_change(services: Services, live: LiveSession, back_to: str = SETTINGS_PATH) -> None:
    """NotEnrolled for a user with nothing to change; StepUpNeeded unless the session passed a
    second factor within the last five minutes (a remembered device does not count)."""
    if not (await services.decider.enrolment(live.user.id)).enrolled:
        raise NotEnrolled()
    if not fresh_enough(live.second_factor, services.clock()):
        raise StepUpNeeded(step_up_url(back_to))


async def methods(services: Services, live: LiveSession, rules: Rules) -> Methods:
    second_factors = services.second_factors
    enrolment = await services.decider.enrolment(live.user.id)
    phone = await second_factors.challenges.primary_phone(live.user)
    primary = "sms" if "sms" in enrolment.methods else min(enrolment.methods, default=None)
    return Methods(
        enrolled=enrolment.enrolled,
        primary=primary,
        phone=None if phone is None else masked(Channel.SMS, phone),
        backup=await second_factors.backups.enrolled(live.user),
        choices=second_factors.primary_choices(rules),
        backup_kinds=second_factors.backups.channels(rules),
    )


def remembered_token(request: web.Request) -> str | None:
    return request.cookies.get(request.app[SERVICES].cookies.remembered) or None


async def devices(request: web.Request, live: LiveSession, rules: Rules) -> list[DeviceView]:
    changes = request.app[SERVICES].second_factors.changes
    return await changes.devices(live.user, rules, remembered_token(request))


async def sign_ins(services: Services, live: LiveSession, zone: str) -> list[SignInView]:
    tz = ZoneInfo(zone)
    return [
        SignInView(
            at=dt.datetime.fromtimestamp(sign_in.at, tz),
            client_addr=sign_in.client_addr,
            browser=browser_summary(sign_in.user_agent),
            user_agent=sign_in.user_agent,
            method=sign_in.method,
            current=sign_in.session_hash == live.id_hash,
        )
        for sign_in in await services.store.sign_ins.recent(live.user.id)
    ]


def entry_for(request: web.Request, live: LiveSession) -> AuditEntry:
    return AuditEntry(actor=live.user.id, client_addr=request[CLIENT_ADDR])


async def after_change(
    services: Services, live: LiveSession, changed: Changed, decision: Decision
) -> None:
    """What follows every change: this process decides with the user's factors as they are
    now (others learn it from the feed), and the user is emailed after the answer."""
    if changed.what in ("primary", "backup"):
        enrolment = await services.second_factors.enrolments.enrolment(live.user.id)
        services.decider.note_enrolment(live.user.id, enrolment)
    user = live.user
    message = change_notice(user, changed, at=services.clock(), zone=time_zone(decision))

    async def send() -> None:
        failure = await services.sending.send_email(message)
        if failure is not None:
            log.warning(
                "2FA change notice not sent", extra={"to": masked_email(user.email), "why": failure}
            )

    services.sending.in_background(send())


def forgets_this_browser(request: web.Request, forgotten: str | None) -> bool:
    """Whether forgetting ``forgotten`` (a device id; None: all) forgets this browser's own
    remembered device, whose cookie then goes too."""
    token = remembered_token(request)
    if token is None:
        return False
    return forgotten is None or device_id(token_hash(token)) == forgotten


# The changes, each made, cached and emailed the one way for the page and the API


async def switch_primary(
    request: web.Request, live: LiveSession, decision: Decision, *, kind: str, code: str
) -> Changed:
    """Confirm the new primary method under way (``kind``: totp or sms) with ``code`` and put
    it in place of the old one; a SecondFactorRefused says why not."""
    services = request.app[SERVICES]
    second_factors = services.second_factors
    rules = Rules.of(decision.effective)
    if kind == "totp":
        await second_factors.enrolments.confirm_totp(live.user, code, rules, changing=True)
    else:
        await second_factors.text_messages.confirm(live.user, rules, code, changing=True)
    changed = await second_factors.changes.switch_primary(
        live.user, rules, entry_for(request, live)
    )
    await after_change(services, live, changed, decision)
    return changed


async def change_backup(
    request: web.Request, live: LiveSession, decision: Decision, code: str
) -> Changed:
    """Prove the new backup with ``code`` and put it in place of the old one."""
    services = request.app[SERVICES]
    _, changed = await services.second_factors.changes.confirm_backup(
        live.user, Rules.of(decision.effective), code, entry_for(request, live)
    )
    await after_change(services, live, changed, decision)
    return changed


async def new_recovery_codes(
    request: web.Request, live: LiveSession, decision: Decision
) -> tuple[tuple[str, ...], Changed]:
    """A new set of recovery codes (the old ones die), to be shown once."""
    services = request.app[SERVICES]
    codes, changed = await services.second_factors.changes.regenerate_recovery_codes(
        live.user, entry_for(request, live)
    )
    await after_change(services, live, changed, decision)
    return codes, changed


async def forget_devices(
    request: web.Request, live: LiveSession, decision: Decision, device: str | None
) -> tuple[int, Changed]:
    """Forget one remembered device (by its id) or, with None, all of them; DeviceUnknown
    when none of the user's has that id."""
    services = request.app[SERVICES]
    count, changed = await services.second_factors.changes.forget_devices(
        live.user, entry_for(request, live), device, session_hash=live.id_hash
    )
    if count:
        await forget_here(services)  # the sessions the devices let in end here at once
        await after_change(services, live, changed, decision)
    return count, changed
