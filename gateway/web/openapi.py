"""The OpenAPI 3.1 description of the admin API and the public operational endpoints, as code."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from aiohttp import web

import gateway
from gateway.policy import BACKUP_METHODS, COUNTRY_CODES, PRIMARY_METHODS, PROFILES, ROLES
from gateway.store import POLICY_CHANGES
from gateway.web import context

OPENAPI_PATH = "/_gateway/api/openapi.json"
ADMIN = "/_gateway/admin/api"
SCHEME = "adminToken"
OPENAPI_TEXT = web.AppKey("openapi_text", str)

JSON = "application/json"
PROBLEM = "application/problem+json"


def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def _schema(name: str) -> dict[str, str]:
    return _ref("schemas", name)


def _response(name: str) -> dict[str, str]:
    return _ref("responses", name)


def _param(name: str) -> dict[str, str]:
    return _ref("parameters", name)


def _obj(
    properties: Mapping[str, Any],
    *,
    required: Sequence[str] = (),
    closed: bool = False,
    **more: Any,
) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": dict(properties), **more}
    if required:
        schema["required"] = list(required)
    if closed:
        schema["additionalProperties"] = False
    return schema


def _array(items: Mapping[str, Any], **more: Any) -> dict[str, Any]:
    return {"type": "array", "items": dict(items), **more}


def _names(allowed: frozenset[str] | Sequence[str], what: str) -> dict[str, Any]:
    return _array({"type": "string", "enum": sorted(allowed)}, uniqueItems=True, description=what)


STRING = {"type": "string"}
INTEGER = {"type": "integer"}
BOOLEAN = {"type": "boolean"}
DATE_TIME = {"type": "string", "format": "date-time"}
NULLABLE_DATE_TIME = {"type": ["string", "null"], "format": "date-time"}
DURATION = {
    "type": "string",
    "pattern": "^[0-9]{1,9}[smhd]$",
    "description": "A whole number and a unit: s, m, h or d.",
    "examples": ["10m", "23h"],
}
SCHEDULE_INSTANT = {
    "type": "string",
    "description": (
        "A plain date, read in schedule.timezone (announce: its start; deadline: its end), or a "
        "date-time with an offset."
    ),
    "examples": ["2026-12-31", "2026-12-31T17:00:00+11:00"],
}


def _policy_document() -> dict[str, Any]:
    """The policy document as the parser takes it; the parser stays the authority."""
    return _obj(
        {
            "id": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,63}$"},
            "version": {
                "type": "integer",
                "minimum": 1,
                "description": "The policy's own rule version (not the store version in ETags).",
            },
            "description": STRING,
            "enabled": BOOLEAN,
            "compliance_profile": {"type": "string", "enum": sorted(PROFILES)},
            "scope": _obj(
                {
                    "countries": _names(COUNTRY_CODES, "ISO 3166-1 alpha-2 codes, upper case."),
                    "requires_xero_connection": BOOLEAN,
                    "roles": _names(ROLES, "Gateway roles the policy covers."),
                },
                required=("countries", "requires_xero_connection", "roles"),
                closed=True,
            ),
            "schedule": _obj(
                {
                    "announce": SCHEDULE_INSTANT,
                    "deadline": SCHEDULE_INSTANT,
                    "timezone": {"type": "string", "examples": ["Australia/Sydney"]},
                },
                required=("announce", "deadline", "timezone"),
                closed=True,
            ),
            "methods": _obj(
                {
                    "primary": _names(PRIMARY_METHODS, "Accepted second factors."),
                    "backup": _names(BACKUP_METHODS, "Accepted backup methods."),
                    "backup_required_for": _names(ROLES, "Roles that must add a backup."),
                },
                required=("primary",),
                closed=True,
            ),
            "prompt": _obj(
                {"max_dismissals": {"type": ["integer", "null"], "minimum": 0}}, closed=True
            ),
            "windows": _obj(
                {
                    "code_lifetime": DURATION,
                    "step_lifetime": DURATION,
                    "remember_device": DURATION,
                    "service_refresh_window": DURATION,
                },
                required=(
                    "code_lifetime",
                    "step_lifetime",
                    "remember_device",
                    "service_refresh_window",
                ),
                closed=True,
            ),
            "attempts": _obj(
                {"max_failed": {"type": "integer", "minimum": 1}, "lockout": DURATION},
                required=("max_failed", "lockout"),
                closed=True,
            ),
        },
        required=(
            "id",
            "version",
            "enabled",
            "compliance_profile",
            "scope",
            "schedule",
            "methods",
            "windows",
            "attempts",
        ),
        closed=True,
        description="A 2FA policy document, as in the TOML policy files.",
    )


def _schemas() -> dict[str, Any]:
    tenant = _obj(
        {
            "tenant_id": STRING,
            "name": STRING,
            "country_code": STRING,
            "active": BOOLEAN,
            "linked_at": DATE_TIME,
            "checked_at": DATE_TIME,
            "source": {"type": "string", "enum": ["manual", "xero"]},
        },
        required=("tenant_id", "name", "country_code", "active"),
    )
    history_entry = _obj(
        {
            "version": INTEGER,
            "change": {"type": "string", "enum": list(POLICY_CHANGES)},
            "enabled": BOOLEAN,
            "at": DATE_TIME,
            "by": STRING,
        },
        required=("version", "change", "enabled", "at", "by"),
    )
    counts = {
        "in_scope": INTEGER,
        "enrolled": INTEGER,
        "blocked_at_deadline": INTEGER,
    }
    return {
        "Problem": _obj(
            {
                "type": {"type": "string", "examples": ["/_gateway/problems/policy-invalid"]},
                "title": STRING,
                "status": INTEGER,
                "detail": STRING,
                "errors": _array(STRING, description="Every problem found (422)."),
                "current_version": {"type": "integer", "description": "On 412."},
                "request_id": STRING,
            },
            required=("type", "title", "status", "detail"),
            description="RFC 9457 problem details.",
        ),
        "LintWarning": _obj({"field": STRING, "message": STRING}, required=("field", "message")),
        "PolicyDocument": _policy_document(),
        "PolicyRecord": _obj(
            {
                "id": STRING,
                "version": {"type": "integer", "description": "The store version (the ETag)."},
                "enabled": BOOLEAN,
                "updated_at": DATE_TIME,
                "updated_by": STRING,
                "document": _schema("PolicyDocument"),
            },
            required=("id", "version", "enabled", "updated_at", "updated_by", "document"),
        ),
        "PolicyWritten": {
            "allOf": [
                _schema("PolicyRecord"),
                _obj(
                    {
                        "changed": {
                            "type": "boolean",
                            "description": "False when the request changed nothing.",
                        },
                        "warnings": _array(_schema("LintWarning")),
                    }
                ),
            ]
        },
        "PolicyList": _obj(
            {
                "policies": _array(
                    _obj(
                        {
                            "id": STRING,
                            "version": INTEGER,
                            "enabled": BOOLEAN,
                            "valid": {
                                "type": "boolean",
                                "description": "False if the stored document no longer parses"
                                " (it is then left out of every decision).",
                            },
                            "description": STRING,
                            "updated_at": DATE_TIME,
                            "updated_by": STRING,
                        },
                        required=("id", "version", "enabled", "valid"),
                    )
                )
            },
            required=("policies",),
        ),
        "HistoryEntry": history_entry,
        "PolicyHistory": _obj(
            {"id": STRING, "versions": _array(_schema("HistoryEntry"))},
            required=("id", "versions"),
        ),
        "PolicyVersion": {
            "allOf": [
                _schema("HistoryEntry"),
                _obj({"id": STRING, "document": _schema("PolicyDocument")}),
            ]
        },
        "PolicyDeleted": {"allOf": [_schema("HistoryEntry"), _obj({"id": STRING})]},
        "Change": _obj(
            {
                "path": {"type": "string", "examples": ["schedule.deadline", "enabled"]},
                "kind": {"type": "string", "enum": ["changed", "added", "removed"]},
                "before": {"description": "Absent when added."},
                "after": {"description": "Absent when removed."},
            },
            required=("path", "kind"),
        ),
        "PolicyDiff": _obj(
            {
                "id": STRING,
                "from": _schema("HistoryEntry"),
                "to": _schema("HistoryEntry"),
                "changes": _array(_schema("Change")),
            },
            required=("id", "from", "to", "changes"),
        ),
        "PolicyScope": _obj(
            {
                "policy_id": STRING,
                "enabled": BOOLEAN,
                "applies": BOOLEAN,
                "code": {
                    "type": "string",
                    "enum": [
                        "in-scope",
                        "disabled",
                        "not-announced",
                        "role-not-covered",
                        "no-active-tenant-in-countries",
                        "invalid",
                    ],
                },
                "why": STRING,
            },
            required=("policy_id", "enabled", "applies", "code", "why"),
        ),
        "Explanation": _obj(
            {
                "user": _obj(
                    {
                        "id": STRING,
                        "email": STRING,
                        "role": STRING,
                        "org_id": STRING,
                        "org_name": {"type": ["string", "null"]},
                        "disabled": BOOLEAN,
                    }
                ),
                "at": DATE_TIME,
                "session": _obj(
                    {"mfa_verified": BOOLEAN, "dismissed": BOOLEAN, "dismissals": INTEGER},
                    description="The session assumed: fresh, with the user's stored dismissals.",
                ),
                "outcome": {"type": "string", "enum": ["allow", "prompt", "verify", "enrol"]},
                "reason": STRING,
                "policy_ids": _array(STRING),
                "deadline": NULLABLE_DATE_TIME,
                "days_left": {"type": ["integer", "null"]},
                "dismissals_left": {"type": ["integer", "null"]},
                "mfa_header": {"type": "string", "enum": ["verified", "grace", "not-required"]},
                "effective": {"type": ["object", "null"]},
                "facts": _obj({"tenants": _array(tenant)}),
                "policies": _array(_schema("PolicyScope")),
            },
            required=("user", "at", "outcome", "reason", "policy_ids", "facts", "policies"),
        ),
        "Readiness": _obj(
            {
                "at": DATE_TIME,
                "policies": _array(
                    _obj(
                        {
                            "policy_id": STRING,
                            "enabled": BOOLEAN,
                            "deadline": DATE_TIME,
                            **counts,
                            "orgs": _array(
                                _obj(
                                    {
                                        "org_id": STRING,
                                        "org_name": {"type": ["string", "null"]},
                                        **counts,
                                    },
                                    required=("org_id", *counts),
                                )
                            ),
                        },
                        required=("policy_id", "enabled", "deadline", *counts, "orgs"),
                    )
                ),
            },
            required=("at", "policies"),
        ),
        "Tenant": tenant,
        "TenantLink": _obj(
            {
                "tenant_id": {"type": "string", "minLength": 1, "maxLength": 128},
                "name": {"type": "string", "minLength": 1, "maxLength": 200},
                "country_code": {"type": "string", "enum": sorted(COUNTRY_CODES)},
            },
            required=("tenant_id", "name", "country_code"),
            closed=True,
        ),
        "TenantChange": _obj(
            {"org_id": STRING, "changed": BOOLEAN, "tenant": _schema("Tenant")},
            required=("org_id", "changed", "tenant"),
        ),
        "OrgList": _obj(
            {
                "orgs": _array(
                    _obj(
                        {
                            "id": STRING,
                            "name": STRING,
                            "created_at": DATE_TIME,
                            "users": INTEGER,
                            "tenants": _array(_schema("Tenant")),
                        },
                        required=("id", "name", "tenants"),
                    )
                )
            },
            required=("orgs",),
        ),
        "AuditPage": _obj(
            {
                "events": _array(
                    _obj(
                        {
                            "id": INTEGER,
                            "at": DATE_TIME,
                            "kind": STRING,
                            "actor": {"type": ["string", "null"]},
                            "subject": {"type": ["string", "null"]},
                            "org_id": {"type": ["string", "null"]},
                            "client_addr": {"type": ["string", "null"]},
                            "detail": {"type": "object"},
                        },
                        required=("id", "at", "kind", "detail"),
                    )
                ),
                "more": {
                    "type": "boolean",
                    "description": "More events match: ask again with since = the last one's at.",
                },
            },
            required=("events", "more"),
        ),
        "Health": _obj(
            {
                "status": {"type": "string", "enum": ["ok", "unavailable"]},
                "checks": _obj({"store": {"type": "string", "enum": ["ok", "failing"]}}),
            },
            required=("status", "checks"),
        ),
    }


def _problem(description: str, headers: Mapping[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {PROBLEM: {"schema": _schema("Problem")}},
    }
    if headers:
        response["headers"] = dict(headers)
    return response


def _responses() -> dict[str, Any]:
    challenge = {"WWW-Authenticate": _ref("headers", "WWW-Authenticate")}
    return {
        "BadRequest": _problem(
            "A parameter or the JSON body is malformed (invalid-parameter, invalid-json)."
        ),
        "Unauthenticated": _problem(
            "No admin token, or one that is unknown, expired or revoked (admin-unauthenticated)."
            " A gateway session cookie never counts.",
            challenge,
        ),
        "Forbidden": _problem("The token lacks the scope this needs (admin-forbidden).", challenge),
        "NotFound": _problem(
            "No such policy, version, user, organisation or tenant (policy-not-found,"
            " version-not-found, user-not-found, org-not-found, tenant-not-found)."
        ),
        "Conflict": _problem("A policy with this id exists already (policy-exists)."),
        "PreconditionFailed": _problem(
            "If-Match names a version that is no longer current (precondition-failed);"
            " nothing was changed."
        ),
        "PreconditionRequired": _problem(
            "If-Match is missing or is `*` (precondition-required); nothing was changed."
        ),
        "PayloadTooLarge": _problem("The body is over 64 KiB (body-too-large)."),
        "UnsupportedMediaType": _problem(
            "The body is not application/json (unsupported-media-type)."
        ),
        "PolicyInvalid": _problem(
            "The document does not parse, or its id differs from the URL's (policy-invalid);"
            " errors lists every problem, each naming its field."
        ),
        "TenantInvalid": _problem(
            "The tenant link is invalid, e.g. an unknown country code (tenant-invalid);"
            " errors lists every problem."
        ),
    }


def _ok(
    schema: str, description: str, *, etag: bool = False, location: bool = False
) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {JSON: {"schema": _schema(schema)}},
    }
    headers = {}
    if etag:
        headers["ETag"] = _ref("headers", "ETag")
    if location:
        headers["Location"] = _ref("headers", "Location")
    if headers:
        response["headers"] = headers
    return response


def _op(
    operation_id: str,
    summary: str,
    tag: str,
    responses: Mapping[str, Any],
    *,
    parameters: Sequence[Mapping[str, Any]] = (),
    body: str | None = None,
    description: str | None = None,
) -> dict[str, Any]:
    operation: dict[str, Any] = {"operationId": operation_id, "summary": summary, "tags": [tag]}
    if description:
        operation["description"] = description
    if parameters:
        operation["parameters"] = [dict(p) for p in parameters]
    if body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {JSON: {"schema": _schema(body)}},
        }
    operation["responses"] = dict(responses)
    return operation


def _operations() -> dict[tuple[str, str], dict[str, Any]]:
    """Every operation, keyed by (method, path) as the router registers it."""
    policy = f"{ADMIN}/policies/{{policy_id}}"
    pid = _param("PolicyId")
    written = {
        "400": _response("BadRequest"),
        "413": _response("PayloadTooLarge"),
        "415": _response("UnsupportedMediaType"),
        "422": _response("PolicyInvalid"),
    }
    guarded = {
        "404": _response("NotFound"),
        "412": _response("PreconditionFailed"),
        "428": _response("PreconditionRequired"),
    }
    toggle = (
        "Changes nothing (same version, no audit event) if the policy is already so. Takes"
        " effect from the next request."
    )
    return {
        ("GET", f"{ADMIN}/policies"): _op(
            "listPolicies",
            "List stored policies with their store versions",
            "policies",
            {"200": _ok("PolicyList", "Every stored policy, by id.")},
        ),
        ("POST", f"{ADMIN}/policies"): _op(
            "createPolicy",
            "Create a policy from a document",
            "policies",
            {
                "201": _ok(
                    "PolicyWritten",
                    "Created; lint warnings (advice, not errors) in warnings.",
                    etag=True,
                    location=True,
                ),
                **written,
                "409": _response("Conflict"),
            },
            body="PolicyDocument",
        ),
        ("GET", policy): _op(
            "getPolicy",
            "Read a policy; the ETag is its store version",
            "policies",
            {"200": _ok("PolicyRecord", "The policy.", etag=True), "404": _response("NotFound")},
            parameters=(pid,),
        ),
        ("PUT", policy): _op(
            "replacePolicy",
            "Replace a policy's document (If-Match required)",
            "policies",
            {
                "200": _ok("PolicyWritten", "Replaced (or unchanged if identical).", etag=True),
                **written,
                **guarded,
            },
            parameters=(pid, _param("IfMatch")),
            body="PolicyDocument",
            description="The document's id must equal the URL's. Takes effect from the next"
            " request.",
        ),
        ("DELETE", policy): _op(
            "deletePolicy",
            "Delete a policy (If-Match required); its history stays",
            "policies",
            {
                "200": _ok("PolicyDeleted", "Deleted: the history entry of the deletion."),
                "400": _response("BadRequest"),
                **guarded,
            },
            parameters=(pid, _param("IfMatch")),
        ),
        ("POST", f"{policy}/enable"): _op(
            "enablePolicy",
            "Enable a policy (If-Match required)",
            "policies",
            {
                "200": _ok("PolicyWritten", "Enabled.", etag=True),
                "400": _response("BadRequest"),
                **guarded,
            },
            parameters=(pid, _param("IfMatch")),
            description=toggle,
        ),
        ("POST", f"{policy}/disable"): _op(
            "disablePolicy",
            "Disable a policy (If-Match required)",
            "policies",
            {
                "200": _ok("PolicyWritten", "Disabled.", etag=True),
                "400": _response("BadRequest"),
                **guarded,
            },
            parameters=(pid, _param("IfMatch")),
            description=toggle,
        ),
        ("GET", f"{policy}/versions"): _op(
            "listPolicyVersions",
            "A policy's history, oldest first (kept after deletion)",
            "policies",
            {"200": _ok("PolicyHistory", "Every version."), "404": _response("NotFound")},
            parameters=(pid,),
        ),
        ("GET", f"{policy}/versions/{{version}}"): _op(
            "getPolicyVersion",
            "One version of a policy, with its document",
            "policies",
            {"200": _ok("PolicyVersion", "The version."), "404": _response("NotFound")},
            parameters=(pid, _param("Version")),
        ),
        ("GET", f"{policy}/diff"): _op(
            "diffPolicyVersions",
            "Changed leaves between two versions, enabled included",
            "policies",
            {
                "200": _ok("PolicyDiff", "The changes, by dotted path."),
                "400": _response("BadRequest"),
                "404": _response("NotFound"),
            },
            parameters=(
                pid,
                _query("from", INTEGER, "The older version (default: the one before to)."),
                _query("to", INTEGER, "The newer version (default: the latest)."),
            ),
        ),
        ("GET", f"{ADMIN}/decisions/explain"): _op(
            "explainDecision",
            "What the gateway decides for a user at an instant, and why",
            "decisions",
            {
                "200": _ok("Explanation", "The decision and each policy's scope."),
                "400": _response("BadRequest"),
                "404": _response("NotFound"),
            },
            parameters=(
                _query("user", STRING, "A user id or email.", required=True),
                _param("At"),
            ),
            description="Assumes a fresh session (2FA not confirmed, prompt not dismissed) with"
            " the user's stored dismissal count.",
        ),
        ("GET", f"{ADMIN}/reports/readiness"): _op(
            "readinessReport",
            "Per policy and organisation: users in scope, enrolled, blocked at the deadline",
            "reports",
            {"200": _ok("Readiness", "The report."), "400": _response("BadRequest")},
            parameters=(_param("At"),),
        ),
        ("GET", f"{ADMIN}/orgs"): _op(
            "listOrgs",
            "Organisations with their tenants",
            "organisations",
            {"200": _ok("OrgList", "Every organisation.")},
        ),
        ("POST", f"{ADMIN}/orgs/{{org_id}}/tenants"): _op(
            "linkTenant",
            "Link (or relink, or update) a Xero tenant to an organisation",
            "organisations",
            {
                "201": _ok("TenantChange", "Linked for the first time."),
                "200": _ok("TenantChange", "Relinked, updated or confirmed."),
                "400": _response("BadRequest"),
                "404": _response("NotFound"),
                "413": _response("PayloadTooLarge"),
                "415": _response("UnsupportedMediaType"),
                "422": _response("TenantInvalid"),
            },
            parameters=(_param("OrgId"),),
            body="TenantLink",
        ),
        ("DELETE", f"{ADMIN}/orgs/{{org_id}}/tenants/{{tenant_id}}"): _op(
            "unlinkTenant",
            "Mark a tenant's connection inactive",
            "organisations",
            {"200": _ok("TenantChange", "Unlinked."), "404": _response("NotFound")},
            parameters=(_param("OrgId"), _param("TenantId")),
        ),
        ("GET", f"{ADMIN}/audit"): _op(
            "listAuditEvents",
            "Audit events, oldest first",
            "audit",
            {"200": _ok("AuditPage", "Matching events."), "400": _response("BadRequest")},
            parameters=(
                _query("since", DATE_TIME, "Events at or after this instant."),
                _query("until", DATE_TIME, "Events before this instant."),
                _query("kind", STRING, "Only this kind, e.g. policy.replaced."),
                _query(
                    "limit",
                    {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
                    "At most this many events.",
                ),
            ),
        ),
        ("GET", "/_gateway/health"): _op(
            "health",
            "Liveness and store check, for load balancers",
            "operations",
            {
                "200": _ok("Health", "The gateway and its store work."),
                "503": _ok("Health", "The store is failing."),
            },
        ),
        ("GET", OPENAPI_PATH): _op(
            "openapi",
            "This document",
            "operations",
            {"200": {"description": "The OpenAPI 3.1 document.", "content": {JSON: {}}}},
        ),
    }


def _query(
    name: str, schema: Mapping[str, Any], description: str, *, required: bool = False
) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "description": description,
        "schema": dict(schema),
    }


def _path_param(name: str, description: str, schema: Mapping[str, Any] = STRING) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": dict(schema),
    }


def _components() -> dict[str, Any]:
    return {
        "securitySchemes": {
            SCHEME: {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "xgw_ followed by 43 URL-safe characters",
                "description": (
                    "An admin token. Scopes: policies:read, policies:write (includes read),"
                    " orgs:write, reports:read, audit:read, or admin (all). The gateway's"
                    " session cookie never grants admin access."
                ),
            }
        },
        "schemas": _schemas(),
        "responses": _responses(),
        "parameters": {
            "PolicyId": _path_param("policy_id", "The policy's id, e.g. au-ato-2fa."),
            "Version": _path_param(
                "version", "A store version of the policy.", {"type": "integer", "minimum": 1}
            ),
            "OrgId": _path_param("org_id", "The organisation's id."),
            "TenantId": _path_param("tenant_id", "The Xero tenant id."),
            "IfMatch": {
                "name": "If-Match",
                "in": "header",
                "required": True,
                "description": 'The ETag read, e.g. "3". Missing or * gives 428; stale gives 412.',
                "schema": STRING,
            },
            "At": _query(
                "at",
                STRING,
                "An ISO date (midnight UTC) or date-time (no offset: UTC); default now.",
            ),
        },
        "headers": {
            "ETag": {
                "description": 'The policy\'s store version, quoted: "3".',
                "schema": STRING,
            },
            "Location": {"description": "The new policy's URL.", "schema": STRING},
            "WWW-Authenticate": {
                "description": 'Bearer realm="gateway-admin", with error= on a bad token or scope.',
                "schema": STRING,
            },
        },
    }


def build_document(security: Mapping[tuple[str, str], Sequence[str]]) -> dict[str, Any]:
    """The OpenAPI document; ``security`` maps each admin (method, path) to the scopes, any one
    of which admits a call (the route table's own, so the two cannot drift apart)."""
    paths: dict[str, dict[str, Any]] = {}
    for (method, path), described in _operations().items():
        operation = dict(described)
        scopes = security.get((method, path))
        if scopes is not None:
            # One requirement per scope: any one of them (or admin) is enough.
            operation["security"] = [{SCHEME: [scope]} for scope in scopes] + [{SCHEME: ["admin"]}]
            operation["responses"] = {
                **operation["responses"],
                "401": _response("Unauthenticated"),
                "403": _response("Forbidden"),
            }
        paths.setdefault(path, {})[method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Xero MFA gateway",
            "version": gateway.__version__,
            "description": (
                "The gateway's admin API (policies, tenants, readiness, audit) and its public"
                " operational endpoints. Every admin response carries Cache-Control: no-store;"
                " every error is RFC 9457 problem+json with type /_gateway/problems/<slug>."
            ),
        },
        "tags": [
            {"name": name}
            for name in ("policies", "decisions", "reports", "organisations", "audit", "operations")
        ],
        "paths": paths,
        "components": _components(),
    }


async def serve(request: web.Request) -> web.Response:
    return web.Response(
        text=request.app[OPENAPI_TEXT],
        content_type=JSON,
        headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
    )


def add_route(app: web.Application, document: Mapping[str, Any]) -> None:
    """Serve ``document`` without auth: it describes the API, it grants nothing."""
    app[OPENAPI_TEXT] = json.dumps(document, ensure_ascii=False)
    context.add_get(app, OPENAPI_PATH, serve)
