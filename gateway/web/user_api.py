"""The user JSON API's calls, for apps with their own front end: sign in and out, the user's 2FA
state, set up an authenticator app or a phone and a backup method, and the challenge (also
by a code sent to the phone or the backup), with the rules the pages follow."""

from __future__ import annotations

import datetime as dt
from typing import Any

from aiohttp import web

from gateway.admin.http import JSON_HEADERS, ApiProblem, instant, json_response, read_body
from gateway.errors import NotFoundError
from gateway.http.csrf import csrf_token
from gateway.http.requests import CLIENT_ADDR
from gateway.policy import Decision, Outcome
from gateway.schema.user_api import (
    BACKUP_KINDS,
    BackupBody,
    BackupKind,
    ChallengeBody,
    ChallengePassed,
    CodeBody,
    CodeSent,
    Confirmed,
    Me,
    MfaState,
    Next,
    OrganisationInfo,
    PhoneBody,
    RecoveryCodes,
    SendBody,
    SessionState,
    SignInBody,
    SmsEnrolment,
    TotpEnrolment,
    UserInfo,
)
from gateway.secondfactor.backup import BackupSent
from gateway.secondfactor.devices import TOKEN_BYTES, still_valid, token_hash
from gateway.secondfactor.enrolment import TotpSetup
from gateway.secondfactor.refusals import SecondFactorRefused
from gateway.secondfactor.rules import Rules
from gateway.secondfactor.sms import PhoneStep
from gateway.sending.service import Channel, masked
from gateway.services import Services
from gateway.signin.sessions import LiveSession
from gateway.store.records import AuditEntry
from gateway.web.api_guard import (
    CONFIRM_SMS_PATH,
    ENROL_BACKUP_PATH,
    ENROL_TOTP_PATH,
    FINISH_PATH,
    ApiCall,
    invalid_body,
)
from gateway.web.api_guard import refused as refused_problem
from gateway.web.pages import (
    GENERIC_FAILURE,
    clear_cookie,
    set_cookie,
    set_sign_in_cookies,
    sign_in_with_password,
    sign_out,
)
from gateway.web.second_factor import remember_device


def _csrf(services: Services, live: LiveSession) -> str:
    return csrf_token(services.keys.csrf, live.record.csrf_secret)


async def _rules(services: Services, live: LiveSession) -> tuple[Decision, Rules]:
    decision = await services.decider.decide_for(live)
    return decision, Rules.of(decision.effective)


def _next(decision: Decision) -> Next:
    if decision.outcome is Outcome.VERIFY:
        return "challenge"
    if decision.outcome in (Outcome.ENROL, Outcome.PROMPT):
        return "enrolment"
    return "none"


async def _state(services: Services, live: LiveSession) -> SessionState:
    decision, _ = await _rules(services, live)
    return SessionState(
        next=_next(decision), mfa_verified=live.mfa_verified, csrf_token=_csrf(services, live)
    )


async def _verified(call: ApiCall, live: LiveSession, method: str) -> tuple[str, LiveSession]:
    """Record the check and rotate the session id (see SessionManager.mark_verified)."""
    try:
        return await call.services.sessions.mark_verified(live, method, call.services.clock())
    except NotFoundError:
        raise ApiProblem(
            401, "unauthenticated", "Sign-in required", "The session is over; sign in again."
        ) from None


# The session


async def sign_in(call: ApiCall) -> web.StreamResponse:
    body = await read_body(call.request, SignInBody, invalid_body)
    outcome = await sign_in_with_password(call.request, body.email.strip().lower(), body.password)
    if outcome.wait > 0:
        wait = int(outcome.wait + 0.999)
        raise ApiProblem(
            429,
            "too-many-attempts",
            "Too many attempts",
            f"Too many sign-in attempts. Try again in {wait} seconds.",
            headers={"Retry-After": str(wait)},
        )
    if outcome.signed_in is None:
        raise ApiProblem(401, "sign-in-failed", "Sign-in failed", GENERIC_FAILURE)
    state = await _state(call.services, outcome.signed_in.live)
    response = json_response(state)
    set_sign_in_cookies(call.services, response, outcome.signed_in)
    return response


async def sign_out_call(call: ApiCall) -> web.StreamResponse:
    if call.live is not None:
        await sign_out(call.request, call.live)
    response = web.Response(status=204, headers={"Cache-Control": "no-store"})
    clear_cookie(call.services, response, call.services.cookies.session)
    return response


async def me(call: ApiCall) -> web.StreamResponse:
    services = call.services
    live = call.signed_in
    user = live.user
    decision, rules = await _rules(services, live)
    enrolment = await services.decider.enrolment(user.id)
    try:
        org_name = (await services.store.organisations.get(user.org_id)).name
    except NotFoundError:
        org_name = ""
    mfa: dict[str, Any] = {
        "enrolled": enrolment.enrolled,
        "methods": sorted(enrolment.methods),
        "has_backup": enrolment.has_backup,
        "verified": live.mfa_verified,
        "outcome": decision.outcome.value,
        "reason": decision.reason,
        "allowed_methods": sorted(services.second_factors.primary_choices(rules)),
    }
    checked = live.second_factor
    if checked is not None:
        mfa["method"] = checked.method
        mfa["verified_at"] = instant(checked.at)
    if decision.deadline is not None:
        mfa["deadline"] = decision.deadline.astimezone(dt.UTC).isoformat()
    expiry = await _remembered_until(call, live, rules)
    if expiry is not None:
        mfa["remembered_device_expires_at"] = instant(expiry)
    body = Me(
        user=UserInfo(id=user.id, email=user.email, display_name=user.display_name),
        organisation=OrganisationInfo(id=user.org_id, name=org_name),
        role=user.role,
        mfa=MfaState(**mfa),
        next=_next(decision),
        csrf_token=_csrf(services, live),
    )
    return json_response(body)


async def _remembered_until(call: ApiCall, live: LiveSession, rules: Rules) -> float | None:
    """When this browser's remembered device runs out for ``live``'s user, if it is one."""
    token = call.request.cookies.get(call.services.cookies.remembered)
    if not token or len(token) > 2 * TOKEN_BYTES:
        return None
    device = await call.services.store.factors.device(token_hash(token))
    now = call.services.clock()
    if device is None or not still_valid(device, live.user.id, now, rules.remember_device):
        return None
    return min(device.expires_at, device.created_at + rules.remember_device)


# Enrolment


async def enrol_totp(call: ApiCall) -> web.StreamResponse:
    live = call.signed_in
    _, rules = await _rules(call.services, live)
    try:
        setup = await call.services.second_factors.enrolments.start_totp(live.user, rules)
    except SecondFactorRefused as refused:
        raise refused_problem(call.request, refused) from None
    return json_response(totp_enrolment(setup), status=201)


def totp_enrolment(setup: TotpSetup) -> TotpEnrolment:
    return TotpEnrolment(
        uri=setup.uri, key=setup.key, qr_svg=setup.qr_svg, expires_at=instant(setup.expires_at)
    )


async def confirm_totp(call: ApiCall) -> web.StreamResponse:
    live = call.signed_in
    body = await read_body(call.request, CodeBody, invalid_body)
    _, rules = await _rules(call.services, live)
    try:
        await call.services.second_factors.enrolments.confirm_totp(live.user, body.code, rules)
    except SecondFactorRefused as refused:
        raise refused_problem(call.request, refused) from None
    return json_response(_backup_step(call.services, live, rules))


def _backup_step(services: Services, live: LiveSession, rules: Rules) -> Confirmed:
    """What follows the confirmed app: the backup step, required for some roles (as on the
    pages), else offered where codes can be sent, and skipped by finishing."""
    kinds = _backup_kinds(services, rules)
    if rules.backup_required(live.user.role):
        return Confirmed(next_step=ENROL_BACKUP_PATH, backup="required", backup_kinds=kinds)
    if not kinds:
        return Confirmed(next_step=FINISH_PATH, backup="none")
    return Confirmed(next_step=FINISH_PATH, backup="offered", backup_kinds=kinds)


def _backup_kinds(services: Services, rules: Rules) -> list[BackupKind]:
    """The backup methods the policy accepts that codes can be sent by here."""
    channels = services.second_factors.backups.channels(rules)
    return [kind for kind in BACKUP_KINDS if kind in channels]


async def enrol_backup(call: ApiCall) -> web.StreamResponse:
    """Send a code to the backup phone or email typed (after the primary method is confirmed)."""
    live = call.signed_in
    body = await read_body(call.request, BackupBody, invalid_body)
    _, rules = await _rules(call.services, live)
    try:
        sent = await call.services.second_factors.backups.send(
            live.user,
            rules,
            kind=body.kind,
            typed=body.destination,
            client_addr=call.request[CLIENT_ADDR],
        )
    except SecondFactorRefused as refused:
        raise refused_problem(call.request, refused) from None
    return json_response(code_sent(sent))


async def confirm_backup(call: ApiCall) -> web.StreamResponse:
    """Prove the backup method with the code sent to it; finishing comes next."""
    live = call.signed_in
    body = await read_body(call.request, CodeBody, invalid_body)
    _, rules = await _rules(call.services, live)
    backups = call.services.second_factors.backups
    try:
        await backups.confirm(live.user, rules, body.code)
    except SecondFactorRefused as refused:
        raise refused_problem(call.request, refused) from None
    kinds = _backup_kinds(call.services, rules)
    return json_response(Confirmed(next_step=FINISH_PATH, backup="proved", backup_kinds=kinds))


async def enrol_sms(call: ApiCall) -> web.StreamResponse:
    live = call.signed_in
    body = await read_body(call.request, PhoneBody, invalid_body)
    _, rules = await _rules(call.services, live)
    try:
        step, sent = await call.services.second_factors.text_messages.begin(
            live.user, rules, body.phone, client_addr=call.request[CLIENT_ADDR]
        )
    except SecondFactorRefused as refused:
        raise refused_problem(call.request, refused) from None
    return json_response(sms_enrolment(step, sent, CONFIRM_SMS_PATH), status=201)


def sms_enrolment(step: PhoneStep, sent: BackupSent, next_step: str) -> SmsEnrolment:
    return SmsEnrolment(
        **code_sent(sent).model_dump(), expires_at=instant(step.expires_at), next_step=next_step
    )


def code_sent(sent: BackupSent) -> CodeSent:
    return CodeSent(
        kind="sms" if sent.kind == "sms" else "email",
        sent_to=masked(Channel(sent.kind), sent.destination),
        message=sent.message,
        code_expires_at=None if sent.expires_at is None else instant(sent.expires_at),
    )


async def confirm_sms(call: ApiCall) -> web.StreamResponse:
    live = call.signed_in
    body = await read_body(call.request, CodeBody, invalid_body)
    _, rules = await _rules(call.services, live)
    try:
        await call.services.second_factors.text_messages.confirm(live.user, rules, body.code)
    except SecondFactorRefused as refused:
        raise refused_problem(call.request, refused) from None
    return json_response(_backup_step(call.services, live, rules))


async def finish(call: ApiCall) -> web.StreamResponse:
    services = call.services
    live = call.signed_in
    _, rules = await _rules(services, live)
    enrolments = services.second_factors.enrolments
    entry = AuditEntry(actor=live.user.id, client_addr=call.request[CLIENT_ADDR])
    try:
        codes = await enrolments.finish(live.user, rules, entry)
    except SecondFactorRefused as refused:
        raise refused_problem(call.request, refused) from None
    enrolment = await enrolments.enrolment(live.user.id)
    services.decider.note_enrolment(live.user.id, enrolment)
    raw_id, verified = await _verified(call, live, min(enrolment.methods))
    state = await _state(services, verified)
    response = json_response(
        RecoveryCodes(**state.model_dump(), recovery_codes=list(codes)), status=201
    )
    set_cookie(services, response, services.cookies.session, raw_id)
    return response


# The challenge


async def _require_enrolment(services: Services, live: LiveSession) -> None:
    if not (await services.decider.enrolment(live.user.id)).enrolled:
        raise ApiProblem(
            409,
            "enrolment-required",
            "No second factor set up",
            f"Set up a second factor first: POST {ENROL_TOTP_PATH}.",
        )


async def send_challenge_code(call: ApiCall) -> web.StreamResponse:
    """Send a sign-in code for POST challenge with the same method: ``sms`` texts it to the
    user's phone (unless one sent can still be used, or ``again``); ``backup`` sends it to the
    backup phone or email ("use my backup method"). A limited send says when to try again; a
    failed one spends nothing."""
    services = call.services
    live = call.signed_in
    body = await read_body(call.request, SendBody, invalid_body)
    await _require_enrolment(services, live)
    _, rules = await _rules(services, live)
    try:
        sent = await services.second_factors.send_challenge(
            live.user,
            rules,
            method=body.method,
            again=body.again,
            client_addr=call.request[CLIENT_ADDR],
        )
    except SecondFactorRefused as refused:
        raise refused_problem(call.request, refused) from None
    return json_response(code_sent(sent))


async def challenge(call: ApiCall) -> web.StreamResponse:
    services = call.services
    live = call.signed_in
    body = await read_body(call.request, ChallengeBody, invalid_body)
    await _require_enrolment(services, live)
    _, rules = await _rules(services, live)
    try:
        passed = await services.second_factors.challenges.verify(
            live.user,
            method=body.method,
            code=body.code,
            rules=rules,
            client_addr=call.request[CLIENT_ADDR],
        )
    except SecondFactorRefused as refused:
        raise refused_problem(call.request, refused) from None
    # As on the page: a step-up never remembers the device, only the check at sign-in does.
    remember = body.remember_device and not live.mfa_verified
    raw_id, verified = await _verified(call, live, passed.method)
    state = await _state(services, verified)
    answer: dict[str, Any] = {**state.model_dump(), "method": passed.method}
    if passed.recovery_left is not None:
        answer["recovery_codes_left"] = passed.recovery_left
    response = web.Response()
    set_cookie(services, response, services.cookies.session, raw_id)
    if remember:
        expiry = await remember_device(call.request, live, rules, response)
        answer["remembered_device_expires_at"] = instant(expiry)
    return _filled(response, ChallengePassed(**answer))


def _filled(response: web.Response, body: SessionState) -> web.Response:
    """``response`` (its cookies set already) with ``body`` as its JSON."""
    made = json_response(body)
    response.body = made.body
    response.content_type = "application/json"
    response.headers.update(JSON_HEADERS)
    return response
