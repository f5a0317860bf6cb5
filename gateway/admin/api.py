"""The admin API's route table: each route's handler, token scopes and OpenAPI description."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from gateway.admin import (
    audit_trail,
    openapi,
    organisations,
    people,
    policies,
    reports,
    support,
    xero,
)
from gateway.admin.http import (
    ADMIN_PREFIX,
    DEFAULT_PAGE,
    MAX_OFFSET,
    MAX_PAGE,
    AdminHandler,
    fallback,
    guard,
)
from gateway.admin.openapi import BODY_REPLIES, GUARDED_REPLIES, query, whole
from gateway.admin.tokens import (
    AUDIT_READ,
    ORGS_WRITE,
    POLICIES_READ,
    POLICIES_WRITE,
    REPORTS_READ,
    USERS_WRITE,
)
from gateway.policy.progress import MAX_DAYS
from gateway.schema.openapi import DATE_TIME, Operation, Reply
from gateway.schema.organisations import OrgList, TenantChange, TenantLink
from gateway.schema.people import EnrolmentSeries, UserDetail, UserList
from gateway.schema.policies import (
    PolicyDeleted,
    PolicyDiff,
    PolicyDocument,
    PolicyHistory,
    PolicyLint,
    PolicyList,
    PolicyRecord,
    PolicyVersion,
    PolicyWritten,
)
from gateway.schema.reports import AuditPage, Explanation, Readiness
from gateway.schema.resets import ResetAnswer, SupportResetBody
from gateway.schema.xero import XeroConnectionList, XeroDisconnect
from gateway.web import openapi as served
from gateway.web import password_api, user_routes
from gateway.web.context import add_route


@dataclass(frozen=True, kw_only=True)
class AdminRoute:
    """One admin endpoint: its handler, and the operation the OpenAPI document describes
    (whose ``scopes`` are the token scopes any one of which admits a call)."""

    handler: AdminHandler
    operation: Operation

    @property
    def method(self) -> str:
        return self.operation.method

    @property
    def path(self) -> str:
        return self.operation.path

    @property
    def scopes(self) -> tuple[str, ...]:
        return self.operation.scopes or ()


def _route(
    method: str,
    path: str,
    handler: AdminHandler,
    scopes: tuple[str, ...],
    operation_id: str,
    summary: str,
    tag: str,
    replies: Mapping[str, Reply | str],
    **more: Any,
) -> AdminRoute:
    return AdminRoute(
        handler=handler,
        operation=Operation(
            method=method,
            path=path,
            operation_id=operation_id,
            summary=summary,
            tag=tag,
            replies=replies,
            scopes=scopes,
            **more,
        ),
    )


def _ok(model: type[Any], description: str, *headers: str) -> Reply:
    return Reply(description=description, model=model, headers=headers)


POLICIES = policies.POLICIES
POLICY = f"{POLICIES}/{{policy_id}}"
TENANTS = f"{ADMIN_PREFIX}/orgs/{{org_id}}/tenants"
XERO = f"{ADMIN_PREFIX}/orgs/{{org_id}}/xero"
READ, WRITE = (POLICIES_READ,), (POLICIES_WRITE,)
PID = "PolicyId"
TOGGLE = (
    "Changes nothing (same version, no audit event) if the policy is already so. Takes"
    " effect from the next request."
)
POLICY_WRITES = {**BODY_REPLIES, "422": "PolicyInvalid"}
USERS = f"{ADMIN_PREFIX}/users"
FOUND_OR_NOT = {"400": "BadRequest", "404": "NotFound"}
PAGE = (
    whole("limit", "At most this many.", minimum=1, maximum=MAX_PAGE, default=DEFAULT_PAGE),
    whole(
        "offset",
        "Skip this many (next_offset of the page before).",
        minimum=0,
        maximum=MAX_OFFSET,
        default=0,
    ),
)
AUDIT_FILTERS = (
    query("since", "Events at or after this instant.", **DATE_TIME),
    query("until", "Events before this instant.", **DATE_TIME),
    query("kind", "Only this kind, e.g. policy.replaced."),
    query("actor", "Only events by this actor, as the trail names them."),
    query("subject", "Only events about this subject: an id, or a user's email."),
    query("org", "Only events of this organisation (its id)."),
)

ROUTES: tuple[AdminRoute, ...] = (
    _route(
        "GET",
        POLICIES,
        policies.list_policies,
        READ,
        "listPolicies",
        "List stored policies with their store versions",
        "policies",
        {"200": _ok(PolicyList, "Every stored policy, by id.")},
    ),
    _route(
        "POST",
        POLICIES,
        policies.create_policy,
        WRITE,
        "createPolicy",
        "Create a policy from a document",
        "policies",
        {
            "201": _ok(
                PolicyWritten,
                "Created; lint warnings (advice, not errors) in warnings.",
                "ETag",
                "Location",
            ),
            **POLICY_WRITES,
            "409": "Conflict",
        },
        body=PolicyDocument,
    ),
    _route(
        "GET",
        POLICY,
        policies.get_policy,
        READ,
        "getPolicy",
        "Read a policy; the ETag is its store version",
        "policies",
        {"200": _ok(PolicyRecord, "The policy.", "ETag"), "404": "NotFound"},
        parameters=(PID,),
    ),
    _route(
        "PUT",
        POLICY,
        policies.replace_policy,
        WRITE,
        "replacePolicy",
        "Replace a policy's document (If-Match required)",
        "policies",
        {
            "200": _ok(PolicyWritten, "Replaced (or unchanged if identical).", "ETag"),
            **POLICY_WRITES,
            **GUARDED_REPLIES,
        },
        parameters=(PID, "IfMatch"),
        body=PolicyDocument,
        description="The document's id must equal the URL's. Takes effect from the next request.",
    ),
    _route(
        "DELETE",
        POLICY,
        policies.delete_policy,
        WRITE,
        "deletePolicy",
        "Delete a policy (If-Match required); its history stays",
        "policies",
        {
            "200": _ok(PolicyDeleted, "Deleted: the history entry of the deletion."),
            "400": "BadRequest",
            **GUARDED_REPLIES,
        },
        parameters=(PID, "IfMatch"),
    ),
    *(
        _route(
            "POST",
            f"{POLICY}/{verb}",
            handler,
            WRITE,
            f"{verb}Policy",
            f"{verb.capitalize()} a policy (If-Match required)",
            "policies",
            {
                "200": _ok(PolicyWritten, f"{verb.capitalize()}d.", "ETag"),
                "400": "BadRequest",
                **GUARDED_REPLIES,
            },
            parameters=(PID, "IfMatch"),
            description=TOGGLE,
        )
        for verb, handler in (
            ("enable", policies.enable_policy),
            ("disable", policies.disable_policy),
        )
    ),
    _route(
        "POST",
        f"{POLICY}/lint",
        policies.lint_policy,
        READ,
        "lintPolicy",
        "Check a document against the stored policy without saving it",
        "policies",
        {
            "200": _ok(
                PolicyLint,
                "A replace would be accepted: its lint warnings and the changes it would"
                " make; the ETag is the version compared with.",
                "ETag",
            ),
            **POLICY_WRITES,
            "404": "NotFound",
        },
        parameters=(PID,),
        body=PolicyDocument,
        description="Saves nothing: the preview before a PUT, as the console's editor shows it."
        " A document a PUT would refuse gets the same 422, listing every problem.",
    ),
    _route(
        "GET",
        f"{POLICY}/versions",
        policies.list_versions,
        READ,
        "listPolicyVersions",
        "A policy's history, oldest first (kept after deletion)",
        "policies",
        {"200": _ok(PolicyHistory, "Every version."), "404": "NotFound"},
        parameters=(PID,),
    ),
    _route(
        "GET",
        f"{POLICY}/versions/{{version}}",
        policies.get_version,
        READ,
        "getPolicyVersion",
        "One version of a policy, with its document",
        "policies",
        {"200": _ok(PolicyVersion, "The version."), "404": "NotFound"},
        parameters=(PID, "Version"),
    ),
    _route(
        "GET",
        f"{POLICY}/diff",
        policies.diff_versions,
        READ,
        "diffPolicyVersions",
        "Changed leaves between two versions, enabled included",
        "policies",
        {
            "200": _ok(PolicyDiff, "The changes, by dotted path."),
            "400": "BadRequest",
            "404": "NotFound",
        },
        parameters=(
            PID,
            whole("from", "The older version (default: the one before to)."),
            whole("to", "The newer version (default: the latest)."),
        ),
    ),
    # Explaining a decision is reading policies, or reporting on a user: either scope will do.
    _route(
        "GET",
        f"{ADMIN_PREFIX}/decisions/explain",
        reports.explain_decision,
        (POLICIES_READ, REPORTS_READ),
        "explainDecision",
        "What the gateway decides for a user at an instant, and why",
        "decisions",
        {
            "200": _ok(Explanation, "The decision and each policy's scope."),
            "400": "BadRequest",
            "404": "NotFound",
        },
        parameters=(query("user", "A user id or email.", required=True), "At"),
        description="Assumes a fresh session (2FA not confirmed, prompt not dismissed) with"
        " the user's stored dismissal count.",
    ),
    _route(
        "GET",
        f"{ADMIN_PREFIX}/reports/readiness",
        reports.readiness,
        (REPORTS_READ,),
        "readinessReport",
        "Per policy and organisation: users in scope, enrolled, blocked at the deadline",
        "reports",
        {"200": _ok(Readiness, "The report."), "400": "BadRequest"},
        parameters=("At",),
    ),
    # Whoever links tenants needs to see the organisations, as does whoever reads reports.
    _route(
        "GET",
        f"{ADMIN_PREFIX}/orgs",
        organisations.list_orgs,
        (REPORTS_READ, ORGS_WRITE),
        "listOrgs",
        "Search organisations by name, with their users and tenants, a page at a time",
        "organisations",
        {
            "200": _ok(OrgList, "The matching organisations, in the order they were added."),
            "400": "BadRequest",
        },
        parameters=(query("q", "Text the name contains (any case); all if empty."), *PAGE),
    ),
    _route(
        "POST",
        TENANTS,
        organisations.link_tenant,
        (ORGS_WRITE,),
        "linkTenant",
        "Link (or relink, or update) a Xero tenant to an organisation",
        "organisations",
        {
            "201": _ok(TenantChange, "Linked for the first time."),
            "200": _ok(TenantChange, "Relinked, updated or confirmed."),
            **BODY_REPLIES,
            "404": "NotFound",
            "422": "TenantInvalid",
        },
        parameters=("OrgId",),
        body=TenantLink,
    ),
    _route(
        "DELETE",
        f"{TENANTS}/{{tenant_id}}",
        organisations.unlink_tenant,
        (ORGS_WRITE,),
        "unlinkTenant",
        "Mark a tenant's connection inactive",
        "organisations",
        {"200": _ok(TenantChange, "Unlinked."), "404": "NotFound"},
        parameters=("OrgId", "TenantId"),
    ),
    _route(
        "POST",
        f"{USERS}/{{user_id}}/reset-mfa",
        support.reset_user_mfa,
        (USERS_WRITE,),
        "resetUserMfa",
        "Support reset of a user's 2FA (principal or member), after checking their identity",
        "users",
        {
            "200": _ok(ResetAnswer, "Reset; the user was emailed (emailed)."),
            **BODY_REPLIES,
            "404": "NotFound",
            "409": "UserDisabled",
            "422": "ResetInvalid",
        },
        parameters=("UserId",),
        body=SupportResetBody,
        description=(
            "Removes the user's factors, recovery codes, remembered devices and enrolment"
            " under way and ends their sessions (in every gateway within seconds); they set up"
            " 2FA again at their next sign-in and are emailed. Audited as mfa.reset with"
            " verified_by and reason."
        ),
    ),
    _route(
        "GET",
        XERO,
        xero.list_connections,
        (REPORTS_READ, ORGS_WRITE),
        "listXeroConnections",
        "An organisation's Xero connections: tenant, country, status, token expiry",
        "organisations",
        {"200": _ok(XeroConnectionList, "Every connection, active first."), "404": "NotFound"},
        parameters=("OrgId",),
    ),
    _route(
        "POST",
        f"{XERO}/{{grant_id}}/disconnect",
        xero.disconnect,
        (ORGS_WRITE,),
        "disconnectXero",
        "Disconnect a Xero consent: revoke it and delete its connections at Xero",
        "organisations",
        {
            "200": _ok(XeroDisconnect, "Disconnected (or disconnected already)."),
            "404": "NotFound",
            "503": "XeroUnavailable",
        },
        parameters=("OrgId", "GrantId"),
        description="Its tenants' links from Xero end (a manual link stays). Takes effect"
        " from the next request.",
    ),
    _route(
        "GET",
        f"{ADMIN_PREFIX}/reports/enrolment",
        people.enrolment,
        (REPORTS_READ,),
        "enrolmentSeries",
        "A policy's users in scope with 2FA set up, per day: the dashboard's chart",
        "reports",
        {"200": _ok(EnrolmentSeries, "The series, oldest day first."), **FOUND_OR_NOT},
        parameters=(
            query("policy", "The policy's id.", required=True),
            whole(
                "days",
                "How many days, ending with the day of at.",
                minimum=1,
                maximum=MAX_DAYS,
                default=people.DEFAULT_DAYS,
            ),
            "At",
        ),
        description="Counts the users the policy covers at its deadline, by when their"
        " primary method was confirmed (in the policy's time zone).",
    ),
    # Support reads users to reset them, as does whoever reads reports.
    _route(
        "GET",
        USERS,
        people.list_users,
        (REPORTS_READ, USERS_WRITE),
        "searchUsers",
        "Search users by email or name, a page at a time",
        "users",
        {
            "200": _ok(UserList, "The matching users, in the order they were added."),
            "400": "BadRequest",
        },
        parameters=(
            query("q", "Text the email or display name contains (any case); all if empty."),
            query("org", "Only this organisation's users (its id)."),
            *PAGE,
        ),
    ),
    _route(
        "GET",
        f"{USERS}/{{user_id}}",
        people.get_user,
        (REPORTS_READ, USERS_WRITE),
        "getUser",
        "One user: organisation, linked tenants, 2FA state, last sign-in",
        "users",
        {"200": _ok(UserDetail, "The user."), **FOUND_OR_NOT},
        parameters=("UserId", "At"),
    ),
    _route(
        "GET",
        f"{ADMIN_PREFIX}/audit",
        audit_trail.audit_events,
        (AUDIT_READ,),
        "listAuditEvents",
        "Audit events, oldest first",
        "audit",
        {"200": _ok(AuditPage, "Matching events."), "400": "BadRequest"},
        parameters=(
            *AUDIT_FILTERS,
            whole(
                "limit",
                "At most this many events.",
                minimum=1,
                maximum=audit_trail.MAX_AUDIT_LIMIT,
                default=audit_trail.DEFAULT_AUDIT_LIMIT,
            ),
        ),
    ),
    _route(
        "GET",
        f"{ADMIN_PREFIX}/audit/export",
        audit_trail.export_audit,
        (AUDIT_READ,),
        "exportAuditEvents",
        "Audit events as a CSV or JSON-lines file, oldest first, streamed",
        "audit",
        {
            "200": Reply(
                description=(
                    "The events: CSV (a header line, then one record per event, detail as"
                    " JSON; cells starting with = + - @ are prefixed with ') or, for"
                    " format=jsonl, application/jsonl with one event object per line."
                ),
                media_type="text/csv",
                headers=("X-Total-Count", "X-Export-Limit"),
            ),
            "400": "BadRequest",
        },
        parameters=(
            query("format", "csv (the default) or jsonl.", type="string", enum=["csv", "jsonl"]),
            *AUDIT_FILTERS,
            whole(
                "limit",
                "At most this many events.",
                minimum=1,
                maximum=audit_trail.MAX_EXPORT,
                default=audit_trail.MAX_EXPORT,
            ),
        ),
    ),
)


def route_scopes() -> dict[tuple[str, str], tuple[str, ...]]:
    """(method, path) → the scopes that admit it: what the OpenAPI document says of security."""
    return {(route.method, route.path): route.scopes for route in ROUTES}


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document: the admin routes, the user JSON API and the public operational
    endpoints."""
    return openapi.document(
        [
            *(route.operation for route in ROUTES),
            *user_routes.OPERATIONS,
            *password_api.OPERATIONS,
            *served.OPERATIONS,
        ]
    )


def add_routes(app: web.Application) -> None:
    """The admin API and its OpenAPI document; register before the /_gateway/ catch-all."""
    for route in ROUTES:
        add_route(app, route.method, route.path, guard(route.handler, route.scopes))
    add_route(app, "*", f"{ADMIN_PREFIX}/{{tail:.*}}", fallback)
    served.add_route(app, openapi_document())


__all__ = ["ROUTES", "AdminRoute", "add_routes", "openapi_document", "route_scopes"]
