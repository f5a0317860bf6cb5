"""The user JSON API's routes, each with the operation the OpenAPI document describes."""

from __future__ import annotations

from aiohttp import web

from gateway.schema.openapi import Param, Reply
from gateway.schema.resets import ResetAnswer, Team
from gateway.schema.user_api import (
    BackupBody,
    ChallengeBody,
    ChallengePassed,
    CodeBody,
    CodeSent,
    Confirmed,
    Me,
    PhoneBody,
    RecoveryCodes,
    SendBody,
    SessionState,
    SignInBody,
    SmsEnrolment,
    TotpEnrolment,
)
from gateway.web.api_guard import (
    CHALLENGE_PATH,
    CHALLENGE_SEND_PATH,
    CONFIRM_BACKUP_PATH,
    CONFIRM_SMS_PATH,
    CONFIRM_TOTP_PATH,
    CSRF_HEADER,
    ENROL_BACKUP_PATH,
    ENROL_SMS_PATH,
    ENROL_TOTP_PATH,
    FINISH_PATH,
    ME_PATH,
    SESSION_PATH,
)
from gateway.web.api_routes import (
    BAD_DESTINATION,
    CODE_REFUSED,
    SEND_REFUSED,
    SENT_CODE_REFUSED,
    STEP_REFUSED,
    UNAUTHENTICATED,
    add_user_routes,
    problem_reply,
    user_route,
)
from gateway.web.settings_api import SETTINGS_ROUTES
from gateway.web.team_api import TEAM_API_PATH, TEAM_API_RESET_PATH, reset_call, team_call
from gateway.web.user_api import (
    challenge,
    confirm_backup,
    confirm_sms,
    confirm_totp,
    enrol_backup,
    enrol_sms,
    enrol_totp,
    finish,
    me,
    send_challenge_code,
    sign_in,
    sign_out_call,
)

SESSION_COOKIE = "Sets the session cookie (HttpOnly, SameSite=Lax) under a new id."

ROUTES = (
    user_route(
        sign_in,
        "POST",
        SESSION_PATH,
        "signIn",
        "Sign in with email and password",
        {
            "200": Reply(description=f"Signed in. {SESSION_COOKIE}", model=SessionState),
            "401": problem_reply(
                "The email and password do not match an account (sign-in-failed)."
            ),
            "429": problem_reply("Too many attempts (too-many-attempts); see Retry-After."),
        },
        body=SignInBody,
        csrf=False,
        description=(
            "Throttled as the sign-in page is. No CSRF token yet: refused unless from the"
            " gateway's own origin, and only as application/json. next says what comes next."
        ),
    ),
    user_route(
        sign_out_call,
        "DELETE",
        SESSION_PATH,
        "signOut",
        "Sign out",
        {"204": Reply(description="Signed out (or was not signed in); the cookie is cleared.")},
        description=f"Needs {CSRF_HEADER} when signed in.",
    ),
    user_route(
        me,
        "GET",
        ME_PATH,
        "me",
        "The signed-in user, their organisation, role and 2FA state, and the CSRF token",
        {"200": Reply(description="The user.", model=Me), "401": UNAUTHENTICATED},
    ),
    user_route(
        enrol_totp,
        "POST",
        ENROL_TOTP_PATH,
        "enrolTotp",
        "Start setting up an authenticator app (a new key each time)",
        {
            "201": Reply(description="The key to set up.", model=TotpEnrolment),
            "409": STEP_REFUSED,
        },
    ),
    user_route(
        confirm_totp,
        "POST",
        CONFIRM_TOTP_PATH,
        "confirmTotp",
        "Confirm the authenticator app with a code from it",
        {
            "200": Reply(description="Confirmed.", model=Confirmed),
            "400": CODE_REFUSED,
            "409": STEP_REFUSED,
        },
        body=CodeBody,
    ),
    user_route(
        enrol_backup,
        "POST",
        ENROL_BACKUP_PATH,
        "enrolBackup",
        "Send a code to a backup phone number or email address (after the primary method is"
        " confirmed)",
        {
            "200": Reply(description="The code is on its way.", model=CodeSent),
            "400": BAD_DESTINATION,
            "409": problem_reply(
                "The primary method is not confirmed yet, or the step ran out (step-missing,"
                " step-expired); or the policy does not accept that kind (method-not-allowed)."
            ),
            **SEND_REFUSED,
        },
        body=BackupBody,
        description=(
            "Required before finishing for the roles in the policy's backup_required_for;"
            f" offered to others, who skip it with POST {FINISH_PATH}. Sending again replaces"
            " the code sent before."
        ),
    ),
    user_route(
        confirm_backup,
        "POST",
        CONFIRM_BACKUP_PATH,
        "confirmBackup",
        "Prove the backup method with the code sent to it",
        {
            "200": Reply(description="Proved; finishing comes next.", model=Confirmed),
            "400": SENT_CODE_REFUSED,
            "409": STEP_REFUSED,
        },
        body=CodeBody,
    ),
    user_route(
        enrol_sms,
        "POST",
        ENROL_SMS_PATH,
        "enrolSms",
        "Start setting up text messages: a code is sent to the mobile number",
        {
            "201": Reply(description="The code is on its way.", model=SmsEnrolment),
            "400": BAD_DESTINATION,
            "409": STEP_REFUSED,
            **SEND_REFUSED,
        },
        body=PhoneBody,
        description=(
            "Only where the policy accepts text messages and the gateway can send them. Each"
            " call starts the step over. An Australian 04xx xxx xxx is read as +61 4xx xxx"
            " xxx."
        ),
    ),
    user_route(
        confirm_sms,
        "POST",
        CONFIRM_SMS_PATH,
        "confirmSms",
        "Confirm the phone with the code sent to it",
        {
            "200": Reply(description="Confirmed.", model=Confirmed),
            "400": SENT_CODE_REFUSED,
            "409": STEP_REFUSED,
        },
        body=CodeBody,
    ),
    user_route(
        finish,
        "POST",
        FINISH_PATH,
        "finishEnrolment",
        "Save the enrolment and get the ten recovery codes (shown once)",
        {
            "201": Reply(
                description=f"Enrolled; the session is verified. {SESSION_COOKIE}",
                model=RecoveryCodes,
            ),
            "409": STEP_REFUSED,
        },
    ),
    user_route(
        send_challenge_code,
        "POST",
        CHALLENGE_SEND_PATH,
        "sendChallengeCode",
        "Send a sign-in code by text message to the user's phone, or to the backup phone or"
        " email (use my backup method)",
        {
            "200": Reply(
                description=(
                    f"The code is on its way (or, for sms without again, the one sent before"
                    f" still is); pass it to POST {CHALLENGE_PATH} with the same method."
                ),
                model=CodeSent,
            ),
            "409": problem_reply(
                "No second factor set up yet (enrolment-required), no phone (no-sms-factor)"
                " or no backup method (no-backup-factor) to send to."
            ),
            **SEND_REFUSED,
        },
        body=SendBody,
        description=(
            "sms: a code sent before that can still be used is not sent again unless again is"
            " true. backup: a new code each call. The answer is 200, not 202: the carrier or"
            " mail server has taken the code by then (a failed send is a 503)."
        ),
    ),
    user_route(
        challenge,
        "POST",
        CHALLENGE_PATH,
        "challenge",
        "Pass the second factor with a code from the app, a text message, the backup or a"
        " recovery code",
        {
            "200": Reply(
                description=(
                    f"Passed; the session is verified. {SESSION_COOKIE} With remember_device,"
                    " also sets the remembered-device cookie."
                ),
                model=ChallengePassed,
            ),
            "400": CODE_REFUSED,
            "409": problem_reply("No second factor set up yet (enrolment-required)."),
        },
        body=ChallengeBody,
    ),
    user_route(
        team_call,
        "GET",
        TEAM_API_PATH,
        "team",
        "A principal's organisation: each user's 2FA state, deadline and last sign-in",
        {
            "200": Reply(description="The team.", model=Team),
            "401": UNAUTHENTICATED,
            "403": problem_reply(
                "The caller is not a principal (not-a-principal), or their 2FA is set up and"
                " this session has not passed it yet (step-up-required, with step_up_url)."
            ),
        },
        description=(
            "can_reset is false for a principal whose own 2FA is not set up, and per member"
            " for principals, disabled users and the caller."
        ),
    ),
    user_route(
        reset_call,
        "POST",
        TEAM_API_RESET_PATH,
        "resetMemberMfa",
        "Reset a member's 2FA: their factors, recovery codes, remembered devices and sessions",
        {
            "200": Reply(description="Reset; the member was emailed (emailed).", model=ResetAnswer),
            "403": problem_reply(
                "Not a principal (not-a-principal); the caller's own 2FA is not set up"
                " (own-mfa-required); the user is a principal, reset only by support"
                " (principal-reset-by-support); or the caller's second factor is older than"
                " five minutes (step-up-required, with step_up_url). Nothing was changed."
            ),
            "404": problem_reply(
                "No member of the caller's organisation has that id (member-not-found)."
            ),
            "409": problem_reply("The member is disabled (member-disabled)."),
        },
        parameters=(Param(name="user_id", where="path", description="The member's user id."),),
        description=(
            "Needs a second-factor check in this session no older than 300 seconds. The"
            " member's sessions end in every gateway within seconds, they set up 2FA again at"
            " their next sign-in, and are emailed. Audited as mfa.reset."
        ),
    ),
    *SETTINGS_ROUTES,
)
OPERATIONS = tuple(route.operation for route in ROUTES)


def add_routes(app: web.Application) -> None:
    """The user JSON API; register before the /_gateway/ catch-all."""
    add_user_routes(app, ROUTES)


__all__ = ["OPERATIONS", "ROUTES", "add_routes"]
