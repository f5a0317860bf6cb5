"""Admin API handlers that read: a decision explained, and the readiness report."""

from __future__ import annotations

import datetime as dt

from aiohttp import web

from gateway.admin.explain import explain, scope_sources
from gateway.admin.http import Call, bad_parameter, instant_param, json_response, not_found
from gateway.enforcement.decisions import PROMPT_KEY
from gateway.enforcement.policy_files import read_stored
from gateway.enforcement.reports import readiness_report
from gateway.errors import NotFoundError
from gateway.schema.reports import Explanation, OrgReadiness, PolicyReadiness, Readiness
from gateway.secondfactor.enrolment import enrolment_of
from gateway.services import Services
from gateway.store import Store, User


async def find_user(store: Store, key: str) -> User | None:
    """The user ``key`` names: an email (with an @) or a user id; None if there is none."""
    if "@" in key:
        return await store.users.find_by_email(key)
    try:
        return await store.users.get(key)
    except NotFoundError:
        return None


async def _user(call: Call, key: str) -> User:
    found = await find_user(call.services.store, key)
    if found is None:
        raise not_found("user-not-found", f"There is no user {key!r} (give a user id or an email).")
    return found


async def explanation_for(services: Services, user: User, at: dt.datetime) -> Explanation:
    """Why ``user`` is prompted, blocked or let through at ``at``: what the admin API's
    explainDecision answers, and the console's Explain shows."""
    store = services.store
    # Read as the policy book reads them: a stored document that no longer parses is explained
    # by the version it keeps in force, since that is what the gateway enforces.
    candidates = await read_stored(store, services.decider.book.in_force())
    try:
        org_name: str | None = (await store.organisations.get(user.org_id)).name
    except NotFoundError:
        org_name = None
    return explain(
        user=user,
        org_name=org_name,
        tenants=await store.tenants.for_org(user.org_id),
        candidates=candidates,
        dismissals=await store.dismissals.count(user.id, PROMPT_KEY),
        enrolment=enrolment_of(await store.factors.kinds(user.id)),
        at=at,
        connections=await store.xero.connections_for_org(user.org_id),
    )


async def explain_decision(call: Call) -> web.StreamResponse:
    key = call.request.query.get("user", "").strip()
    if not key:
        raise bad_parameter("user", "is required: a user id or an email")
    at = instant_param(call.request, "at", call.services.policy_clock())
    user = await _user(call, key)
    return json_response(await explanation_for(call.services, user, at))


async def readiness(call: Call) -> web.StreamResponse:
    at = instant_param(call.request, "at", call.services.policy_clock())
    store = call.services.store
    names = {org.id: org.name for org in await store.organisations.list()}
    in_force = call.services.decider.book.in_force()
    report = await readiness_report(store, at, in_force)
    stored = await read_stored(store, in_force)
    countries = {r.id: r.policy.countries for r in stored if r.policy is not None}
    tenants = await store.tenants.all()
    connections = {
        org_id: await store.xero.connections_for_org(org_id)
        for org_id in {org.org_id for item in report for org in item.orgs}
    }
    return json_response(
        Readiness(
            at=at.isoformat(),
            policies=[
                PolicyReadiness(
                    policy_id=item.policy_id,
                    enabled=item.enabled,
                    deadline=item.deadline.isoformat(),
                    in_scope=item.in_scope,
                    enrolled=item.enrolled,
                    blocked_at_deadline=item.blocked_at_deadline,
                    orgs=[
                        OrgReadiness(
                            org_id=org.org_id,
                            org_name=names.get(org.org_id),
                            in_scope=org.in_scope,
                            enrolled=org.enrolled,
                            blocked_at_deadline=org.blocked_at_deadline,
                            came_from=scope_sources(
                                countries.get(item.policy_id, frozenset()),
                                [t for t in tenants if t.org_id == org.org_id],
                                connections[org.org_id],
                            ),
                        )
                        for org in item.orgs
                    ],
                )
                for item in report
            ],
        )
    )
