"""Admin API handlers for support actions on a user's account: a 2FA reset, with who checked
the person's identity and how, kept in the audit trail."""

from __future__ import annotations

from aiohttp import web

from gateway.admin.http import ApiProblem, Call, json_response, not_found, read_body, unprocessable
from gateway.errors import NotFoundError
from gateway.schema.resets import SupportResetBody
from gateway.secondfactor.resets import ResetHow, support_problems
from gateway.web.team import forget_here
from gateway.web.team_api import reset_answer

_invalid_reset = unprocessable("reset-invalid", "The reset record is invalid", "body")


def _user_gone(user_id: str) -> ApiProblem:
    return not_found("user-not-found", f"There is no enabled user {user_id!r}.")


async def reset_user_mfa(call: Call) -> web.StreamResponse:
    user_id = call.path("user_id")
    body = await read_body(call.request, SupportResetBody, _invalid_reset)
    problems = support_problems(body.verified_by, body.reason)
    if problems:
        raise _invalid_reset(problems)
    services = call.services
    try:
        user = await services.store.users.get(user_id)
    except NotFoundError:
        raise _user_gone(user_id) from None
    if user.disabled:
        raise ApiProblem(
            409,
            "user-disabled",
            "The user is disabled",
            "This user is disabled: there is nothing to reset. Enable them first if needed.",
        )
    how = ResetHow(
        via="support-api",
        by=call.actor,
        actor=call.actor,
        client_addr=call.audit.client_addr,
        reason=body.reason.strip(),
        verified_by=body.verified_by.strip(),
    )
    try:
        done = await services.second_factors.resets.reset(user, how)
    except NotFoundError:  # disabled meanwhile
        raise _user_gone(user_id) from None
    await forget_here(services)
    return json_response(reset_answer(done))
