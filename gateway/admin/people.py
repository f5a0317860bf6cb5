"""Admin API handlers for people: search users, one user's 2FA state, and enrolment over
time per policy. The console's pages call the same functions."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from aiohttp import web

from gateway.admin.http import (
    Call,
    bad_parameter,
    instant,
    instant_param,
    int_param,
    json_response,
    not_found,
    page_params,
    query_text,
)
from gateway.admin.organisations import tenant_body
from gateway.admin.reports import explanation_for
from gateway.audit import LoginSucceeded
from gateway.enforcement.policy_files import facts_by_org, stored_policies
from gateway.errors import NotFoundError
from gateway.policy import Outcome, Policy
from gateway.policy.progress import MAX_DAYS, DayCount, enrolment_by_day, in_scope_users
from gateway.schema.people import (
    EnrolmentDay,
    EnrolmentSeries,
    MfaState,
    UserDetail,
    UserList,
    UserSummary,
)
from gateway.secondfactor.enrolment import enrolment_of
from gateway.services import Services
from gateway.store import User

DEFAULT_DAYS = 30
MAX_POLICY_ID = 64


async def search_users(
    services: Services, text: str, *, org_id: str | None, limit: int, offset: int
) -> UserList:
    """One page of the users whose email or name contains ``text``."""
    store = services.store
    found = await store.users.search(text, org_id=org_id, limit=limit + 1, offset=offset)
    page = found[:limit]
    names: dict[str, str | None] = {}
    for user in page:
        if user.org_id not in names:
            try:
                names[user.org_id] = (await store.organisations.get(user.org_id)).name
            except NotFoundError:
                names[user.org_id] = None
    enrolled = await store.factors.enrolled_at([user.id for user in page])
    return UserList(
        users=[
            UserSummary(
                id=user.id,
                email=user.email,
                display_name=user.display_name,
                role=user.role,  # type: ignore[arg-type]
                org_id=user.org_id,
                org_name=names[user.org_id],
                disabled=user.disabled,
                enrolled=user.id in enrolled,
            )
            for user in page
        ],
        more=len(found) > limit,
        next_offset=offset + len(page),
    )


async def user_detail(services: Services, user: User, at: dt.datetime) -> UserDetail:
    """``user`` with their organisation, its tenants, their 2FA state and last sign-in."""
    store = services.store
    explained = await explanation_for(services, user, at)
    enrolment = enrolment_of(await store.factors.kinds(user.id))
    enrolled_at = (await store.factors.enrolled_at([user.id])).get(user.id)
    signed_in = await store.audit.latest_for(subject=user.id, kind=LoginSucceeded.kind)
    return UserDetail(
        id=user.id,
        email=user.email,
        display_name=user.display_name,
        role=user.role,  # type: ignore[arg-type]
        disabled=user.disabled,
        created_at=instant(user.created_at),
        org_id=user.org_id,
        org_name=explained.user.org_name,
        tenants=[tenant_body(t) for t in await store.tenants.for_org(user.org_id)],
        mfa=MfaState(
            enrolled=enrolment.enrolled,
            methods=sorted(enrolment.methods),
            has_backup=enrolment.has_backup,
            enrolled_at=instant(enrolled_at) if enrolled_at is not None else None,
            deadline=explained.deadline,
            outcome=explained.outcome,
            blocked=explained.outcome is Outcome.ENROL,
        ),
        last_sign_in=instant(signed_in) if signed_in is not None else None,
    )


async def user_by_id(services: Services, user_id: str) -> User:
    """The user with this id; a 404 problem if there is none."""
    try:
        return await services.store.users.get(user_id)
    except NotFoundError:
        raise not_found("user-not-found", f"There is no user {user_id!r}.") from None


@dataclass(frozen=True, kw_only=True)
class PolicyEnrolment:
    """A policy, how many users it covers, and how many of them had 2FA set up each day."""

    policy: Policy
    in_scope: int
    days: list[DayCount]


async def enrolment_series(
    services: Services, at: dt.datetime, days: int, policy_id: str | None = None
) -> list[PolicyEnrolment]:
    """Per enforced policy (or only ``policy_id``'s, a 404 problem if there is none): the
    users it covers and how many of them had 2FA set up at the end of each of the ``days``
    days up to ``at`` (in its time zone)."""
    store = services.store
    policies: Sequence[Policy] = await stored_policies(store, services.decider.book.in_force())
    if policy_id is not None:
        policies = [p for p in policies if p.id == policy_id]
        if not policies:
            raise not_found("policy-not-found", f"There is no policy {policy_id!r}.")
    users = await store.users.list_all_light()
    facts = facts_by_org(await store.tenants.all())
    confirmed = await store.factors.enrolled_at()
    result = []
    for policy in policies:
        scoped = in_scope_users(policy, users, facts, at)
        series = enrolment_by_day(
            [confirmed[u] for u in scoped if u in confirmed],
            last_day=at.astimezone(ZoneInfo(policy.timezone)).date(),
            days=days,
            zone=policy.timezone,
        )
        result.append(PolicyEnrolment(policy=policy, in_scope=len(scoped), days=series))
    return result


def series_body(found: PolicyEnrolment) -> EnrolmentSeries:
    return EnrolmentSeries(
        policy_id=found.policy.id,
        timezone=found.policy.timezone,
        deadline=found.policy.deadline.isoformat(),
        in_scope=found.in_scope,
        days=[
            EnrolmentDay(date=point.day.isoformat(), enrolled=point.enrolled)
            for point in found.days
        ],
    )


# The handlers


async def list_users(call: Call) -> web.StreamResponse:
    request = call.request
    limit, offset = page_params(request)
    org = query_text(request, "org") or None
    found = await search_users(
        call.services, query_text(request, "q"), org_id=org, limit=limit, offset=offset
    )
    return json_response(found)


async def get_user(call: Call) -> web.StreamResponse:
    user = await user_by_id(call.services, call.path("user_id"))
    at = instant_param(call.request, "at", call.services.policy_clock())
    return json_response(await user_detail(call.services, user, at))


async def enrolment(call: Call) -> web.StreamResponse:
    request = call.request
    policy_id = query_text(request, "policy", MAX_POLICY_ID)
    if not policy_id:
        raise bad_parameter("policy", "is required: a policy id")
    days = int_param(request, "days", default=DEFAULT_DAYS, minimum=1, maximum=MAX_DAYS)
    at = instant_param(request, "at", call.services.policy_clock())
    [found] = await enrolment_series(call.services, at, days, policy_id)
    return json_response(series_body(found))
