"""The admin API's routes, and its handlers for decisions, readiness, organisations and audit."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from gateway.accounts import tenancy
from gateway.accounts.tenancy import (
    MAX_TENANT_ID,
    MAX_TENANT_NAME,
    country_code_problem,
    text_problem,
)
from gateway.admin import policies
from gateway.admin.explain import explain
from gateway.admin.http import (
    ADMIN_PREFIX,
    AdminHandler,
    ApiProblem,
    Call,
    bad_parameter,
    fallback,
    guard,
    instant,
    instant_param,
    int_param,
    json_response,
    not_found,
    optional_instant_param,
    read_json_object,
)
from gateway.admin.tokens import AUDIT_READ, ORGS_WRITE, POLICIES_READ, POLICIES_WRITE, REPORTS_READ
from gateway.enforcement.decisions import PROMPT_KEY
from gateway.enforcement.policy_files import read_stored
from gateway.enforcement.reports import readiness_report
from gateway.errors import NotFoundError
from gateway.store import User, event_document, tenant_document
from gateway.web import openapi
from gateway.web.context import add_route

MAX_KIND = 64
DEFAULT_AUDIT_LIMIT = 100
MAX_AUDIT_LIMIT = 1000


@dataclass(frozen=True, kw_only=True)
class AdminRoute:
    """One admin endpoint: ``scopes`` lists the token scopes any one of which admits a call."""

    method: str
    path: str
    handler: AdminHandler
    scopes: tuple[str, ...]


async def _user(call: Call, key: str) -> User:
    users = call.services.store.users
    if "@" in key:
        found = await users.find_by_email(key)
        if found is not None:
            return found
    else:
        try:
            return await users.get(key)
        except NotFoundError:
            pass
    raise not_found("user-not-found", f"There is no user {key!r} (give a user id or an email).")


async def explain_decision(call: Call) -> web.StreamResponse:
    key = call.request.query.get("user", "").strip()
    if not key:
        raise bad_parameter("user", "is required: a user id or an email")
    at = instant_param(call.request, "at", call.now)
    user = await _user(call, key)
    store = call.services.store
    # Read as the policy book reads them: a stored document that no longer parses is explained
    # by the version it keeps in force, since that is what the gateway enforces.
    candidates = await read_stored(store, call.services.decider.book.in_force())
    try:
        org_name: str | None = (await store.organisations.get(user.org_id)).name
    except NotFoundError:
        org_name = None
    return json_response(
        explain(
            user=user,
            org_name=org_name,
            tenants=await store.tenants.for_org(user.org_id),
            candidates=candidates,
            dismissals=await store.dismissals.count(user.id, PROMPT_KEY),
            at=at,
        )
    )


async def readiness(call: Call) -> web.StreamResponse:
    at = instant_param(call.request, "at", call.now)
    store = call.services.store
    names = {org.id: org.name for org in await store.organisations.list()}
    report = await readiness_report(store, at, call.services.decider.book.in_force())
    return json_response(
        {
            "at": at.isoformat(),
            "policies": [
                {
                    "policy_id": item.policy_id,
                    "enabled": item.enabled,
                    "deadline": item.deadline.isoformat(),
                    "in_scope": item.in_scope,
                    "enrolled": item.enrolled,
                    "blocked_at_deadline": item.blocked_at_deadline,
                    "orgs": [
                        {
                            "org_id": org.org_id,
                            "org_name": names.get(org.org_id),
                            "in_scope": org.in_scope,
                            "enrolled": org.enrolled,
                            "blocked_at_deadline": org.blocked_at_deadline,
                        }
                        for org in item.orgs
                    ],
                }
                for item in report
            ],
        }
    )


async def list_orgs(call: Call) -> web.StreamResponse:
    store = call.services.store
    tenants: dict[str, list[dict[str, Any]]] = {}
    for tenant in await store.tenants.all():
        tenants.setdefault(tenant.org_id, []).append(tenant_document(tenant))
    users = await store.users.count_by_org()
    return json_response(
        {
            "orgs": [
                {
                    "id": org.id,
                    "name": org.name,
                    "created_at": instant(org.created_at),
                    "users": users.get(org.id, 0),
                    "tenants": tenants.get(org.id, []),
                }
                for org in await store.organisations.list()
            ]
        }
    )


def _text(data: Mapping[str, Any], key: str, limit: int, errors: list[str]) -> str:
    value = data.get(key)
    if value is None:
        errors.append(f"{key}: missing (it is required)")
    elif not isinstance(value, str):
        errors.append(f"{key}: must be a string")
    elif (problem := text_problem(value, limit)) is not None:
        errors.append(f"{key}: {problem}")
    else:
        return value
    return ""


def _invalid_tenant(errors: list[str]) -> ApiProblem:
    return ApiProblem(
        422,
        "tenant-invalid",
        "The tenant is invalid",
        f"The tenant has {len(errors)} problem(s); see errors.",
        errors=errors,
    )


def _link_request(data: Mapping[str, Any]) -> tuple[str, str, str]:
    """The link asked for, checked as linking checks it; 422 listing every problem otherwise."""
    errors = [f"{key}: unknown key" for key in data if key not in _LINK_KEYS]
    tenant_id = _text(data, "tenant_id", MAX_TENANT_ID, errors)
    name = _text(data, "name", MAX_TENANT_NAME, errors)
    country = data.get("country_code")
    code = ""
    if country is None:
        errors.append("country_code: missing (it is required)")
    elif (problem := country_code_problem(country)) is not None:
        errors.append(f"country_code: {problem}")
    else:
        code = country
    if errors:
        raise _invalid_tenant(errors)
    return tenant_id, name, code


_LINK_KEYS = frozenset({"tenant_id", "name", "country_code"})


async def link_tenant(call: Call) -> web.StreamResponse:
    org_id = call.path("org_id")
    tenant_id, name, country = _link_request(await read_json_object(call.request))
    try:
        change = await tenancy.link_tenant(
            call.services.store,
            org_id=org_id,
            tenant_id=tenant_id,
            name=name,
            country_code=country,
            now=call.now,
            audit=call.audit,
        )
    except tenancy.TenantLinkError as exc:  # pragma: no cover - _link_request checks the same
        raise _invalid_tenant([f"{field}: {message}" for field, message in exc.problems]) from None
    except NotFoundError:
        raise not_found("org-not-found", f"There is no organisation {org_id!r}.") from None
    if change.changed:  # confirming a link as it stands is no change, and was not audited
        await call.refresh()
    return json_response(
        {"org_id": org_id, "changed": change.changed, "tenant": tenant_document(change.after)},
        status=201 if change.created else 200,
    )


async def unlink_tenant(call: Call) -> web.StreamResponse:
    org_id, tenant_id = call.path("org_id"), call.path("tenant_id")
    try:
        change = await tenancy.unlink_tenant(
            call.services.store, org_id=org_id, tenant_id=tenant_id, now=call.now, audit=call.audit
        )
    except NotFoundError:
        raise not_found(
            "tenant-not-found", f"Organisation {org_id!r} has no tenant {tenant_id!r}."
        ) from None
    if change.changed:
        await call.refresh()
    return json_response(
        {"org_id": org_id, "changed": change.changed, "tenant": tenant_document(change.after)}
    )


async def audit_events(call: Call) -> web.StreamResponse:
    request = call.request
    since = optional_instant_param(request, "since")
    until = optional_instant_param(request, "until")
    kind = request.query.get("kind", "").strip() or None
    if kind is not None and len(kind) > MAX_KIND:
        raise bad_parameter("kind", f"must be at most {MAX_KIND} characters")
    limit = int_param(
        request, "limit", default=DEFAULT_AUDIT_LIMIT, minimum=1, maximum=MAX_AUDIT_LIMIT
    )
    events = await call.services.store.audit.list(
        since=since.timestamp() if since is not None else None,
        until=until.timestamp() if until is not None else None,
        kind=kind,
        limit=limit + 1,  # one more than asked, to tell whether there are more
    )
    return json_response(
        {
            "events": [event_document(event, when=instant) for event in events[:limit]],
            "more": len(events) > limit,
        }
    )


def _route(method: str, path: str, handler: AdminHandler, *scopes: str) -> AdminRoute:
    return AdminRoute(method=method, path=path, handler=handler, scopes=scopes)


POLICY = f"{policies.POLICIES}/{{policy_id}}"
TENANTS = f"{ADMIN_PREFIX}/orgs/{{org_id}}/tenants"
ROUTES: tuple[AdminRoute, ...] = (
    _route("GET", policies.POLICIES, policies.list_policies, POLICIES_READ),
    _route("POST", policies.POLICIES, policies.create_policy, POLICIES_WRITE),
    _route("GET", POLICY, policies.get_policy, POLICIES_READ),
    _route("PUT", POLICY, policies.replace_policy, POLICIES_WRITE),
    _route("DELETE", POLICY, policies.delete_policy, POLICIES_WRITE),
    _route("POST", f"{POLICY}/enable", policies.enable_policy, POLICIES_WRITE),
    _route("POST", f"{POLICY}/disable", policies.disable_policy, POLICIES_WRITE),
    _route("GET", f"{POLICY}/versions", policies.list_versions, POLICIES_READ),
    _route("GET", f"{POLICY}/versions/{{version}}", policies.get_version, POLICIES_READ),
    _route("GET", f"{POLICY}/diff", policies.diff_versions, POLICIES_READ),
    # Explaining a decision is reading policies, or reporting on a user: either scope will do.
    _route(
        "GET", f"{ADMIN_PREFIX}/decisions/explain", explain_decision, POLICIES_READ, REPORTS_READ
    ),
    _route("GET", f"{ADMIN_PREFIX}/reports/readiness", readiness, REPORTS_READ),
    # Whoever links tenants needs to see the organisations, as does whoever reads reports.
    _route("GET", f"{ADMIN_PREFIX}/orgs", list_orgs, REPORTS_READ, ORGS_WRITE),
    _route("POST", TENANTS, link_tenant, ORGS_WRITE),
    _route("DELETE", f"{TENANTS}/{{tenant_id}}", unlink_tenant, ORGS_WRITE),
    _route("GET", f"{ADMIN_PREFIX}/audit", audit_events, AUDIT_READ),
)


def route_scopes() -> dict[tuple[str, str], tuple[str, ...]]:
    """(method, path) → the scopes that admit it: what the OpenAPI document says of security."""
    return {(route.method, route.path): route.scopes for route in ROUTES}


def add_routes(app: web.Application) -> None:
    """The admin API and its OpenAPI document; register before the /_gateway/ catch-all."""
    for route in ROUTES:
        add_route(app, route.method, route.path, guard(route.handler, route.scopes))
    add_route(app, "*", f"{ADMIN_PREFIX}/{{tail:.*}}", fallback)
    openapi.add_route(app, openapi.build_document(route_scopes()))


__all__ = ["ROUTES", "AdminRoute", "add_routes", "route_scopes"]
