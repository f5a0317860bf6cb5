"""The password calls of the user JSON API, with the rules the pages follow: ask for a reset
link (always the same 202), set a password with the link's token, change it while signed in
(with a fresh second factor where one is enrolled)."""

from __future__ import annotations

import math

from aiohttp import web

from gateway.admin.http import ApiProblem, json_response, read_body
from gateway.schema.openapi import Reply
from gateway.schema.passwords import (
    Accepted,
    ChangeBody,
    ForgotBody,
    PasswordChanged,
    PasswordSet,
    ResetBody,
)
from gateway.web.api_guard import API, CHALLENGE_PATH, ApiCall, invalid_body
from gateway.web.api_routes import add_user_routes, problem_reply
from gateway.web.api_routes import user_route as route
from gateway.web.pages import set_cookie
from gateway.web.password_flows import (
    FORGOT_ANSWER,
    STEP_UP_MAX_AGE,
    Changed,
    Refusal,
    change_password,
    needs_step_up,
    request_reset,
    reset_password,
    step_up_url,
)

FORGOT_API_PATH = f"{API}/password/forgot"
RESET_API_PATH = f"{API}/password/reset"
CHANGE_API_PATH = f"{API}/password/change"


def _refused(refusal: Refusal) -> ApiProblem:
    if refusal.wait > 0:
        wait = math.ceil(refusal.wait)
        return ApiProblem(
            429,
            "too-many-attempts",
            "Too many attempts",
            f"{refusal.message} Try again in {wait} seconds.",
            headers={"Retry-After": str(wait)},
        )
    if refusal.reason == "session-over":
        return ApiProblem(401, "unauthenticated", "Sign-in required", refusal.message)
    if refusal.reason.startswith("link-"):
        return ApiProblem(400, "link-refused", "Reset link not accepted", refusal.message)
    if refusal.reason == "wrong-password":
        return ApiProblem(400, "wrong-password", "Current password not accepted", refusal.message)
    return ApiProblem(400, "weak-password", "New password not accepted", refusal.message)


async def forgot(call: ApiCall) -> web.StreamResponse:
    body = await read_body(call.request, ForgotBody, invalid_body)
    wait = await request_reset(call.request, body.email.strip().lower())
    if wait > 0:
        raise _refused(Refusal(reason="throttled", message="Too many requests.", wait=wait))
    return json_response(Accepted(message=FORGOT_ANSWER), status=202)


async def reset(call: ApiCall) -> web.StreamResponse:
    body = await read_body(call.request, ResetBody, invalid_body)
    refusal = await reset_password(call.request, body.token, body.password)
    if refusal is not None:
        raise _refused(refusal)
    message = "Your password was changed. Sign in with it: your second factor is still asked."
    return json_response(PasswordSet(message=message, sessions_ended=True))


async def change(call: ApiCall) -> web.StreamResponse:
    services = call.services
    live = call.signed_in
    enrolled = (await services.decider.enrolment(live.user.id)).enrolled
    if needs_step_up(services, live, enrolled):
        raise ApiProblem(
            403,
            "step-up-required",
            "Second factor needed",
            f"Confirm your second factor first (no more than {STEP_UP_MAX_AGE} seconds before):"
            f" POST {CHALLENGE_PATH}, or in a browser {step_up_url()}.",
            step_up_url=step_up_url(),
        )
    body = await read_body(call.request, ChangeBody, invalid_body)
    outcome = await change_password(call.request, live, body.current_password, body.password, None)
    if not isinstance(outcome, Changed):
        raise _refused(outcome)
    response = json_response(
        PasswordChanged(
            message="Your password was changed. Every other session ended.",
            csrf_token=outcome.csrf,
        )
    )
    set_cookie(services, response, services.cookies.session, outcome.raw_id)
    return response


_TOO_MANY = problem_reply("Too many attempts (too-many-attempts); see Retry-After.")

ROUTES = (
    route(
        forgot,
        "POST",
        FORGOT_API_PATH,
        "forgotPassword",
        "Email a single-use link to choose a new password",
        {
            "202": Reply(
                description="Asked: the same answer whether or not the address has an account.",
                model=Accepted,
            ),
            "429": _TOO_MANY,
        },
        body=ForgotBody,
        csrf=False,
        description=(
            "The link works once, for 15 minutes; a new one retires the old. Limited per"
            " address and per client. No CSRF token without a session: refused unless from the"
            " gateway's own origin, and only as application/json."
        ),
    ),
    route(
        reset,
        "POST",
        RESET_API_PATH,
        "resetPassword",
        "Set a new password with the token from the emailed link",
        {
            "200": Reply(
                description="Set; every session of the user ended. No session is made.",
                model=PasswordSet,
            ),
            "400": problem_reply(
                "The link is unknown, used, replaced by a newer one or expired (link-refused),"
                " or the new password is too short or too long (weak-password)."
            ),
        },
        body=ResetBody,
        csrf=False,
        description="The next sign-in still asks for the second factor.",
    ),
    route(
        change,
        "POST",
        CHANGE_API_PATH,
        "changePassword",
        "Change the signed-in user's password",
        {
            "200": Reply(
                description=(
                    "Changed; every other session ended, this one has a new id (the cookie"
                    " is set again) and a new CSRF token."
                ),
                model=PasswordChanged,
            ),
            "400": problem_reply(
                "The current password is wrong (wrong-password), or the new one too short or"
                " too long (weak-password)."
            ),
            "403": problem_reply(
                f"A second factor is enrolled and was not passed in the last {STEP_UP_MAX_AGE}"
                " seconds (step-up-required; step_up_url names the page)."
            ),
            "429": _TOO_MANY,
        },
        body=ChangeBody,
    ),
)
OPERATIONS = tuple(r.operation for r in ROUTES)


def add_routes(app: web.Application) -> None:
    """The password calls; register before the /_gateway/ catch-all."""
    add_user_routes(app, ROUTES)
