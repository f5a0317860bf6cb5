"""The team over the user JSON API: a principal lists their organisation's 2FA state and
resets a member's 2FA, with the rules of the team page."""

from __future__ import annotations

from aiohttp import web

from gateway.admin.http import ApiProblem, instant, json_response
from gateway.http.requests import CLIENT_ADDR, OUTCOME
from gateway.schema.resets import ResetAnswer, Team, TeamMember
from gateway.secondfactor.resets import STEP_UP_SECONDS, ResetDone, ResetRefused
from gateway.web.api_guard import API, ApiCall
from gateway.web.team import Member, StepUpNeeded, reset_member, team

TEAM_API_PATH = f"{API}/team"
TEAM_API_RESET_PATH = f"{TEAM_API_PATH}/{{user_id}}/reset-mfa"


def _problem(call: ApiCall, refusal: ResetRefused) -> ApiProblem:
    call.request[OUTCOME] = "rejected"
    return ApiProblem(refusal.status, refusal.slug, refusal.title, refusal.message)


def step_up_problem(call: ApiCall, step_up: StepUpNeeded) -> ApiProblem:
    """The refusal of a call that needs a second factor this session has not passed lately."""
    call.request[OUTCOME] = "rejected"
    return ApiProblem(
        403,
        "step-up-required",
        "Confirm your second factor first",
        "This needs your second factor checked (for a change, within the last"
        f" {STEP_UP_SECONDS} seconds): pass POST /_gateway/api/mfa/challenge (or open"
        " step_up_url), then try again.",
        step_up_url=step_up.verify_url,
    )


def _member(member: Member) -> TeamMember:
    user = member.user
    return TeamMember(
        id=user.id,
        email=user.email,
        display_name=user.display_name,
        role="principal" if user.role == "principal" else "member",
        disabled=user.disabled,
        enrolled=member.enrolled,
        methods=list(member.methods),
        has_backup=member.has_backup,
        deadline=None if member.deadline is None else member.deadline.isoformat(),
        last_sign_in=None if member.last_sign_in is None else instant(member.last_sign_in),
        can_reset=member.resettable,
    )


async def team_call(call: ApiCall) -> web.StreamResponse:
    try:
        can_reset, members = await team(call.services, call.signed_in)
    except ResetRefused as refusal:
        raise _problem(call, refusal) from None
    except StepUpNeeded as step_up:
        raise step_up_problem(call, step_up) from None
    return json_response(
        Team(
            can_reset=can_reset,
            step_up_seconds=STEP_UP_SECONDS,
            members=[_member(m) for m in members],
        )
    )


def reset_answer(done: ResetDone) -> ResetAnswer:
    return ResetAnswer(
        user_id=done.user.id,
        email=done.user.email,
        reset_at=instant(done.at),
        factors=done.counts.factors,
        recovery_codes=done.counts.recovery_codes,
        devices=done.counts.devices,
        sessions=done.counts.sessions,
        emailed=done.emailed,
    )


async def reset_call(call: ApiCall) -> web.StreamResponse:
    user_id = call.request.match_info["user_id"]
    try:
        done = await reset_member(
            call.services,
            call.signed_in,
            user_id,
            back_to="/_gateway/mfa/team",
            client_addr=call.request[CLIENT_ADDR],
        )
    except ResetRefused as refusal:
        raise _problem(call, refusal) from None
    except StepUpNeeded as step_up:
        raise step_up_problem(call, step_up) from None
    return json_response(reset_answer(done))
