"""A user's own 2FA settings over the user JSON API, with the rules of the settings page:
remembered devices (list, forget one or all), recent sign-ins, new recovery codes, a new
primary method (an authenticator app, or text messages to a phone) and a new backup method.
Looking needs a session that passed its second factor; every change, one that passed it in
the last five minutes."""

from __future__ import annotations

from aiohttp import web

from gateway.admin.http import ApiProblem, instant, json_response, read_body
from gateway.http.requests import CLIENT_ADDR, OUTCOME
from gateway.policy import Decision
from gateway.schema.openapi import Param, Reply
from gateway.schema.settings import (
    DeviceInfo,
    DeviceList,
    DevicesForgotten,
    MethodChanged,
    NewRecoveryCodes,
    SignInInfo,
    SignInList,
)
from gateway.schema.user_api import (
    BackupBody,
    CodeBody,
    CodeSent,
    PhoneBody,
    SmsEnrolment,
    TotpEnrolment,
)
from gateway.secondfactor.changes import Changed
from gateway.secondfactor.refusals import DeviceUnknown, SecondFactorRefused
from gateway.secondfactor.resets import STEP_UP_SECONDS
from gateway.secondfactor.rules import Rules
from gateway.signin.sessions import LiveSession
from gateway.web.api_guard import API, CHALLENGE_PATH, ApiCall, invalid_body
from gateway.web.api_guard import refused as refused_problem
from gateway.web.api_routes import (
    BAD_DESTINATION,
    CODE_REFUSED,
    SEND_REFUSED,
    SENT_CODE_REFUSED,
    STEP_REFUSED,
    UNAUTHENTICATED,
    problem_reply,
    user_route,
)
from gateway.web.mfa_forms import rules_for
from gateway.web.pages import clear_cookie
from gateway.web.settings_flows import (
    change_backup,
    devices,
    forget_devices,
    forgets_this_browser,
    may_change,
    may_view,
    new_recovery_codes,
    sign_ins,
    switch_primary,
    time_zone,
)
from gateway.web.team import StepUpNeeded
from gateway.web.team_api import step_up_problem
from gateway.web.user_api import code_sent, sms_enrolment, totp_enrolment

DEVICES_PATH = f"{API}/mfa/devices"
DEVICE_PATH = f"{DEVICES_PATH}/{{device_id}}"
RECOVERY_CODES_PATH = f"{API}/mfa/recovery-codes"
SIGN_INS_PATH = f"{API}/mfa/sign-ins"
PRIMARY_TOTP_PATH = f"{API}/mfa/primary/totp"
PRIMARY_TOTP_CONFIRM_PATH = f"{PRIMARY_TOTP_PATH}/confirm"
PRIMARY_SMS_PATH = f"{API}/mfa/primary/sms"
PRIMARY_SMS_CONFIRM_PATH = f"{PRIMARY_SMS_PATH}/confirm"
BACKUP_PATH = f"{API}/mfa/backup"
BACKUP_CONFIRM_PATH = f"{BACKUP_PATH}/confirm"


async def _allowed(call: ApiCall, *, change: bool) -> tuple[LiveSession, Decision]:
    """The session and its decision, once it may look (``change``: may change)."""
    services, live = call.services, call.signed_in
    try:
        if change:
            await may_change(services, live)
        else:
            await may_view(services, live)
    except StepUpNeeded as step_up:
        raise step_up_problem(call, step_up) from None
    except SecondFactorRefused as refusal:
        raise refused_problem(call.request, refusal) from None
    decision, _ = await rules_for(services, live)
    return live, decision


def _method_changed(changed: Changed) -> MethodChanged:
    return MethodChanged(
        change="primary" if changed.what == "primary" else "backup",
        method=changed.method or "",
        message=changed.summary,
    )


# Remembered devices


async def list_devices(call: ApiCall) -> web.StreamResponse:
    live, decision = await _allowed(call, change=False)
    shown = await devices(call.request, live, Rules.of(decision.effective))
    return json_response(
        DeviceList(
            devices=[
                DeviceInfo(
                    id=d.id,
                    label=d.label,
                    browser=d.browser,
                    created_at=instant(d.created_at),
                    last_used_at=None if d.last_used_at is None else instant(d.last_used_at),
                    expires_at=instant(d.until),
                    current=d.current,
                )
                for d in shown
            ]
        )
    )


async def _forget(call: ApiCall, device: str | None) -> web.StreamResponse:
    live, decision = await _allowed(call, change=True)
    try:
        count, changed = await forget_devices(call.request, live, decision, device)
    except DeviceUnknown as unknown:
        call.request[OUTCOME] = "rejected"
        raise ApiProblem(404, unknown.reason, "No such device", unknown.message) from None
    response = json_response(DevicesForgotten(forgotten=count, message=changed.summary))
    if forgets_this_browser(call.request, device):
        clear_cookie(call.services, response, call.services.cookies.remembered)
    return response


async def forget_device(call: ApiCall) -> web.StreamResponse:
    return await _forget(call, call.request.match_info["device_id"][:64])


async def forget_all_devices(call: ApiCall) -> web.StreamResponse:
    return await _forget(call, None)


# Recovery codes and sign-ins


async def regenerate_recovery_codes(call: ApiCall) -> web.StreamResponse:
    live, decision = await _allowed(call, change=True)
    try:
        codes, changed = await new_recovery_codes(call.request, live, decision)
    except SecondFactorRefused as refusal:
        raise refused_problem(call.request, refusal) from None
    answer = NewRecoveryCodes(recovery_codes=list(codes), message=changed.summary)
    return json_response(answer, status=201)


async def list_sign_ins(call: ApiCall) -> web.StreamResponse:
    live, decision = await _allowed(call, change=False)
    zone = time_zone(decision)
    shown = await sign_ins(call.services, live, zone)
    return json_response(
        SignInList(
            time_zone=zone,
            sign_ins=[
                SignInInfo(
                    at=s.at.isoformat(),
                    client_addr=s.client_addr,
                    browser=s.browser,
                    user_agent=s.user_agent,
                    method=s.method,  # type: ignore[arg-type]  # one of MFA_METHODS
                    current=s.current,
                )
                for s in shown
            ],
        )
    )


# The primary method


async def start_totp(call: ApiCall) -> web.StreamResponse:
    live, decision = await _allowed(call, change=True)
    rules = Rules.of(decision.effective)
    try:
        setup = await call.services.second_factors.enrolments.start_totp(
            live.user, rules, changing=True
        )
    except SecondFactorRefused as refusal:
        raise refused_problem(call.request, refusal) from None
    return json_response(totp_enrolment(setup), status=201)


async def start_sms(call: ApiCall) -> web.StreamResponse:
    live, decision = await _allowed(call, change=True)
    body = await read_body(call.request, PhoneBody, invalid_body)
    rules = Rules.of(decision.effective)
    try:
        step, sent = await call.services.second_factors.text_messages.begin(
            live.user, rules, body.phone, client_addr=call.request[CLIENT_ADDR], changing=True
        )
    except SecondFactorRefused as refusal:
        raise refused_problem(call.request, refusal) from None
    return json_response(sms_enrolment(step, sent, PRIMARY_SMS_CONFIRM_PATH), status=201)


async def _confirm_primary(call: ApiCall, kind: str) -> web.StreamResponse:
    live, decision = await _allowed(call, change=True)
    body = await read_body(call.request, CodeBody, invalid_body)
    try:
        changed = await switch_primary(call.request, live, decision, kind=kind, code=body.code)
    except SecondFactorRefused as refusal:
        raise refused_problem(call.request, refusal) from None
    return json_response(_method_changed(changed))


async def confirm_totp(call: ApiCall) -> web.StreamResponse:
    return await _confirm_primary(call, "totp")


async def confirm_sms(call: ApiCall) -> web.StreamResponse:
    return await _confirm_primary(call, "sms")


# The backup method


async def send_backup_code(call: ApiCall) -> web.StreamResponse:
    live, decision = await _allowed(call, change=True)
    body = await read_body(call.request, BackupBody, invalid_body)
    try:
        sent = await call.services.second_factors.changes.send_backup_code(
            live.user,
            Rules.of(decision.effective),
            kind=body.kind,
            typed=body.destination,
            client_addr=call.request[CLIENT_ADDR],
        )
    except SecondFactorRefused as refusal:
        raise refused_problem(call.request, refusal) from None
    return json_response(code_sent(sent))


async def confirm_backup(call: ApiCall) -> web.StreamResponse:
    live, decision = await _allowed(call, change=True)
    body = await read_body(call.request, CodeBody, invalid_body)
    try:
        changed = await change_backup(call.request, live, decision, body.code)
    except SecondFactorRefused as refusal:
        raise refused_problem(call.request, refusal) from None
    return json_response(_method_changed(changed))


# The routes

VIEW_REFUSED = problem_reply(
    "2FA is set up and this session has not passed it yet (step-up-required, with step_up_url)."
)
CHANGE_REFUSED = problem_reply(
    f"This session's second factor is older than {STEP_UP_SECONDS} seconds, or was a"
    " remembered device (step-up-required, with step_up_url: pass POST"
    f" {CHALLENGE_PATH}, then call again). Nothing was changed."
)
NOT_ENROLLED = "No second factor is set up yet (not-enrolled): set one up first."
STEP_OR_NOT_ENROLLED = problem_reply(f"{STEP_REFUSED.description} {NOT_ENROLLED}")
CHANGE_DESCRIPTION = (
    f"Needs a second-factor check in this session no older than {STEP_UP_SECONDS} seconds (a"
    " remembered device does not count). The user is emailed about the change, which is"
    " audited."
)


SETTINGS_ROUTES = (
    user_route(
        list_devices,
        "GET",
        DEVICES_PATH,
        "listDevices",
        "The user's remembered devices (browsers that skip the second factor at sign-in)",
        {
            "200": Reply(description="The devices, the newest first.", model=DeviceList),
            "401": UNAUTHENTICATED,
            "403": VIEW_REFUSED,
        },
    ),
    user_route(
        forget_all_devices,
        "DELETE",
        DEVICES_PATH,
        "forgetAllDevices",
        "Forget every remembered device of the user",
        {
            "200": Reply(description="Forgotten (0 when there were none).", model=DevicesForgotten),
            "403": CHANGE_REFUSED,
            "409": problem_reply(NOT_ENROLLED),
        },
        description=CHANGE_DESCRIPTION,
    ),
    user_route(
        forget_device,
        "DELETE",
        DEVICE_PATH,
        "forgetDevice",
        "Forget one remembered device",
        {
            "200": Reply(description="Forgotten.", model=DevicesForgotten),
            "403": CHANGE_REFUSED,
            "404": problem_reply(
                "None of the user's remembered devices has that id (device-not-found)."
            ),
            "409": problem_reply(NOT_ENROLLED),
        },
        parameters=(Param(name="device_id", where="path", description="The id from GET devices."),),
        description=CHANGE_DESCRIPTION,
    ),
    user_route(
        regenerate_recovery_codes,
        "POST",
        RECOVERY_CODES_PATH,
        "regenerateRecoveryCodes",
        "A new set of ten recovery codes (shown once); every earlier one stops working",
        {
            "201": Reply(description="The new codes.", model=NewRecoveryCodes),
            "403": CHANGE_REFUSED,
            "409": STEP_OR_NOT_ENROLLED,
        },
        description=CHANGE_DESCRIPTION,
    ),
    user_route(
        list_sign_ins,
        "GET",
        SIGN_INS_PATH,
        "listSignIns",
        "The user's recent sign-ins: when, from which address and browser, and how",
        {
            "200": Reply(description="The newest first.", model=SignInList),
            "401": UNAUTHENTICATED,
            "403": VIEW_REFUSED,
        },
    ),
    user_route(
        start_totp,
        "POST",
        PRIMARY_TOTP_PATH,
        "startPrimaryTotp",
        "Start switching the primary method to a (new) authenticator app: a new key",
        {
            "201": Reply(description="The key to set up.", model=TotpEnrolment),
            "403": CHANGE_REFUSED,
            "409": STEP_OR_NOT_ENROLLED,
        },
        description=(
            f"{CHANGE_DESCRIPTION} Nothing changes until POST {PRIMARY_TOTP_CONFIRM_PATH}"
            " confirms a code from the app; the step runs out as an enrolment's does."
        ),
    ),
    user_route(
        confirm_totp,
        "POST",
        PRIMARY_TOTP_CONFIRM_PATH,
        "confirmPrimaryTotp",
        "Confirm the new authenticator app with a code from it; it replaces the primary method",
        {
            "200": Reply(description="Switched.", model=MethodChanged),
            "400": CODE_REFUSED,
            "403": CHANGE_REFUSED,
            "409": STEP_OR_NOT_ENROLLED,
        },
        body=CodeBody,
        description=CHANGE_DESCRIPTION,
    ),
    user_route(
        start_sms,
        "POST",
        PRIMARY_SMS_PATH,
        "startPrimarySms",
        "Start switching the primary method to text messages: a code is sent to the phone",
        {
            "201": Reply(description="The code is on its way.", model=SmsEnrolment),
            "400": BAD_DESTINATION,
            "403": CHANGE_REFUSED,
            "409": STEP_OR_NOT_ENROLLED,
            **SEND_REFUSED,
        },
        body=PhoneBody,
        description=(
            f"{CHANGE_DESCRIPTION} The phone must differ from the backup phone. Nothing changes"
            f" until POST {PRIMARY_SMS_CONFIRM_PATH} confirms the code."
        ),
    ),
    user_route(
        confirm_sms,
        "POST",
        PRIMARY_SMS_CONFIRM_PATH,
        "confirmPrimarySms",
        "Confirm the phone with the code sent to it; it replaces the primary method",
        {
            "200": Reply(description="Switched.", model=MethodChanged),
            "400": SENT_CODE_REFUSED,
            "403": CHANGE_REFUSED,
            "409": STEP_OR_NOT_ENROLLED,
        },
        body=CodeBody,
        description=CHANGE_DESCRIPTION,
    ),
    user_route(
        send_backup_code,
        "POST",
        BACKUP_PATH,
        "sendNewBackupCode",
        "Send a code to a new backup phone number or email address",
        {
            "200": Reply(description="The code is on its way.", model=CodeSent),
            "400": BAD_DESTINATION,
            "403": CHANGE_REFUSED,
            "409": problem_reply(
                "The policy does not accept that kind, or codes cannot go by it here"
                f" (method-not-allowed). Or: {NOT_ENROLLED}"
            ),
            **SEND_REFUSED,
        },
        body=BackupBody,
        description=(
            f"{CHANGE_DESCRIPTION} A backup phone must differ from the primary phone. The"
            f" backup in place now stays until POST {BACKUP_CONFIRM_PATH} proves the new one."
        ),
    ),
    user_route(
        confirm_backup,
        "POST",
        BACKUP_CONFIRM_PATH,
        "confirmNewBackup",
        "Prove the new backup method with the code sent to it; it replaces the old one",
        {
            "200": Reply(description="Changed.", model=MethodChanged),
            "400": SENT_CODE_REFUSED,
            "403": CHANGE_REFUSED,
            "409": STEP_OR_NOT_ENROLLED,
        },
        body=CodeBody,
        description=CHANGE_DESCRIPTION,
    ),
)
