"""Admin API handlers for support actions on a user's account: a 2FA reset, with who checked
the person's identity and how, kept in the audit trail."""

from __future__ import annotations

from aiohttp import web

from gateway.admin.http import ApiProblem, Call, json_response, not_found, read_body, unprocessable
from gateway.errors import NotFoundError
from gateway.schema.resets import SupportResetBody
from gateway.secondfactor.resets import ResetDone, ResetHow, support_problems
from gateway.services import Services
from gateway.web.mfa_forms import forget_here
from gateway.web.team_api import reset_answer

_invalid_reset = unprocessable("reset-invalid", "The reset record is invalid", "body")


def _user_gone(user_id: str) -> ApiProblem:
    return not_found("user-not-found", f"There is no enabled user {user_id!r}.")


async def support_reset(
    services: Services,
    user_id: str,
    *,
    verified_by: str,
    reason: str,
    via: str,
    actor: str,
    client_addr: str | None,
) -> ResetDone:
    """Reset ``user_id``'s 2FA for support (a principal's too), recording who checked the
    person's identity and why; the admin API and the console both come here. A problem (422,
    404 or 409) if it may not be done, and then nothing is changed."""
    problems = support_problems(verified_by, reason)
    if problems:
        raise _invalid_reset(problems)
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
        via=via,
        by=actor,
        actor=actor,
        client_addr=client_addr,
        reason=reason.strip(),
        verified_by=verified_by.strip(),
    )
    try:
        done = await services.second_factors.resets.reset(user, how)
    except NotFoundError:  # disabled meanwhile
        raise _user_gone(user_id) from None
    await forget_here(services)
    return done


async def reset_user_mfa(call: Call) -> web.StreamResponse:
    body = await read_body(call.request, SupportResetBody, _invalid_reset)
    done = await support_reset(
        call.services,
        call.path("user_id"),
        verified_by=body.verified_by,
        reason=body.reason,
        via="support-api",
        actor=call.actor,
        client_addr=call.audit.client_addr,
    )
    return json_response(reset_answer(done))
