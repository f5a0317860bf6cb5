"""The team page: a principal sees their organisation's members with their 2FA state, the
deadline that applies and their last sign-in, and resets a member's 2FA after a fresh second
factor. What the page and the JSON API share is here too: the list, and the checked reset."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from urllib.parse import quote
from zoneinfo import ZoneInfo

from aiohttp import web

from gateway.admin.http import ApiProblem
from gateway.audit import LoginSucceeded
from gateway.errors import NotFoundError
from gateway.http.requests import CLIENT_ADDR, OUTCOME
from gateway.policy import Policy, Subject, combine
from gateway.policy import applicable as policies_for
from gateway.secondfactor.resets import (
    STEP_UP_SECONDS,
    ResetDone,
    ResetHow,
    ResetRefused,
    fresh_enough,
    member_refusal,
    no_such_member,
    own_mfa_required,
    team_refusal,
)
from gateway.services import SERVICES, Services
from gateway.signin.sessions import LiveSession
from gateway.store.records import User
from gateway.web.context import add_get, add_route
from gateway.web.gate import VERIFY_PATH
from gateway.web.mfa_forms import (
    Posted,
    csrf_for,
    forget_here,
    same_site_form,
    see_other,
    signed_in,
)
from gateway.web.pages import render_page

log = logging.getLogger(__name__)

TEAM_PATH = "/_gateway/mfa/team"
TEAM_RESET_PATH = TEAM_PATH + "/{user_id}/reset"


@dataclass(frozen=True, kw_only=True)
class Member:
    """One row of the team: a user of the principal's organisation and their 2FA state."""

    user: User
    enrolled: bool
    methods: tuple[str, ...]
    has_backup: bool
    deadline: dt.datetime | None  # the 2FA deadline that applies to them, if any
    last_sign_in: float | None
    resettable: bool  # a member (not a principal), enabled, with something to reset or not


class StepUpNeeded(Exception):
    """The principal's last second-factor check is older than the reset allows."""

    def __init__(self, verify_url: str) -> None:
        super().__init__(verify_url)
        self.verify_url = verify_url


def _deadline(in_force: list[Policy]) -> dt.datetime | None:
    """The deadline of the policies in force, in the zone of the policy it came from."""
    if not in_force:
        return None
    effective = combine(in_force)
    return effective.deadline.astimezone(ZoneInfo(effective.timezone))


def step_up_url(back_to: str) -> str:
    """The verify page, asking for a check no older than a reset allows, then ``back_to``."""
    return f"{VERIFY_PATH}?next={quote(back_to, safe='/')}&max_age={STEP_UP_SECONDS}"


async def may_reset(services: Services, live: LiveSession) -> bool:
    """Whether ``live`` may reset members' 2FA: a principal whose own 2FA is set up (False
    for a principal without). ResetRefused for a member."""
    enrolled = (await services.decider.enrolment(live.user.id)).enrolled
    refusal = team_refusal(live.user, enrolled)
    if refusal is not None and refusal.slug != "own-mfa-required":
        raise refusal
    return refusal is None


async def team(services: Services, live: LiveSession) -> tuple[bool, list[Member]]:
    """Whether ``live`` may reset members, and their organisation's users in the order they
    were added (ResetRefused for anyone but a principal; StepUpNeeded for an enrolled
    principal whose session has not passed the second factor yet)."""
    can_reset = await may_reset(services, live)
    if can_reset and not live.mfa_verified:
        # Enrolled, signed in with the password only: the second factor first, as for the app.
        raise StepUpNeeded(step_up_url(TEAM_PATH))
    org_id = live.user.org_id
    book = services.decider.book
    at = dt.datetime.fromtimestamp(services.policy_clock(), dt.UTC)
    signed_in_at = await services.store.audit.latest_by_subject(
        org_id=org_id, kind=LoginSucceeded.kind
    )
    members = []
    for user in await services.store.users.list(org_id):
        enrolment = await services.decider.enrolment(user.id)
        subject = Subject(user_id=user.id, org_id=org_id, role=user.role)
        in_force = policies_for(book.policies, subject, book.facts_for(org_id), at)
        members.append(
            Member(
                user=user,
                enrolled=enrolment.enrolled,
                methods=tuple(sorted(enrolment.methods)),
                has_backup=enrolment.has_backup,
                deadline=_deadline(in_force),
                last_sign_in=signed_in_at.get(user.id),
                resettable=can_reset and member_refusal(live.user, user, user.id) is None,
            )
        )
    return can_reset, members


async def reset_member(
    services: Services, live: LiveSession, user_id: str, *, back_to: str, client_addr: str | None
) -> ResetDone:
    """Reset the member ``user_id`` names for the principal ``live``: ResetRefused when they
    may not, StepUpNeeded when their second factor is not fresh (``back_to`` is where the
    verify page returns). The member's sessions end here at once, elsewhere within a poll."""
    if not await may_reset(services, live):
        raise own_mfa_required()
    try:
        target: User | None = await services.store.users.get(user_id)
    except NotFoundError:
        target = None
    refusal = member_refusal(live.user, target, user_id)
    if refusal is not None:
        raise refusal
    assert target is not None  # member_refusal refuses an unknown user
    checked = live.second_factor
    if not fresh_enough(checked, services.clock()) or checked is None:
        raise StepUpNeeded(step_up_url(back_to))
    how = ResetHow(
        via="team",
        by=f"{live.user.id} ({live.user.email})",
        actor=live.user.id,
        client_addr=client_addr,
        checked_by=checked.method,
    )
    try:
        done = await services.second_factors.resets.reset(target, how)
    except NotFoundError:  # disabled or removed meanwhile
        raise no_such_member(user_id) from None
    await forget_here(services)
    return done


def refused_page(request: web.Request, refusal: ResetRefused) -> web.Response:
    """The refusal as a page for a browser, problem+json for others."""
    request[OUTCOME] = "rejected"
    problem = ApiProblem(refusal.status, refusal.slug, refusal.title, refusal.message)
    return problem.response(request)


# The page


async def team_page(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    live = signed_in(request)
    try:
        can_reset, members = await team(services, live)
    except ResetRefused as refusal:
        return refused_page(request, refusal)
    except StepUpNeeded as step_up:
        raise see_other(step_up.verify_url) from None
    by_id = {m.user.id: m for m in members}
    confirm = by_id.get(request.query.get("reset", ""))
    done = by_id.get(request.query.get("done", ""))
    return render_page(
        request,
        "mfa_team.html",
        {
            "members": members,
            "can_reset": can_reset,
            "me": live.user.id,
            "csrf": csrf_for(services, live),
            "confirm": confirm if confirm is not None and confirm.resettable else None,
            "done": done,
            "emailed": request.query.get("emailed") == "1",
            "when": _when,
        },
    )


def _when(value: float | dt.datetime | None) -> str:
    if value is None:
        return "never"
    if isinstance(value, float):
        value = dt.datetime.fromtimestamp(value, dt.UTC)
    return value.strftime("%d %b %Y %H:%M %Z").strip()


@same_site_form
async def reset_submit(request: web.Request, posted: Posted) -> web.StreamResponse:
    user_id = request.match_info["user_id"]
    back_to = f"{TEAM_PATH}?reset={quote(user_id, safe='')}"
    try:
        done = await reset_member(
            posted.services, posted.live, user_id, back_to=back_to, client_addr=request[CLIENT_ADDR]
        )
    except ResetRefused as refusal:
        return refused_page(request, refusal)
    except StepUpNeeded as step_up:
        raise see_other(step_up.verify_url) from None
    emailed = "&emailed=1" if done.emailed else ""
    raise see_other(f"{TEAM_PATH}?done={quote(user_id, safe='')}{emailed}")


def add_routes(app: web.Application) -> None:
    add_get(app, TEAM_PATH, team_page)
    add_route(app, "POST", TEAM_RESET_PATH, reset_submit)


__all__ = ["TEAM_PATH", "Member", "StepUpNeeded", "add_routes", "reset_member", "team"]
