"""The admin API's part of the OpenAPI document: its token scheme, problems and parameters."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gateway
from gateway.schema.openapi import (
    INTEGER,
    PROBLEM,
    STRING,
    Components,
    Operation,
    Param,
    Reply,
    Security,
    build_document,
)
from gateway.schema.problem import Problem

SCHEME = "adminToken"
TAGS = (
    "user",
    "policies",
    "decisions",
    "reports",
    "organisations",
    "users",
    "audit",
    "operations",
)


def _problem(description: str, *headers: str) -> Reply:
    return Reply(description=description, model=Problem, media_type=PROBLEM, headers=headers)


RESPONSES = {
    "BadRequest": _problem(
        "A parameter or the JSON body is malformed (invalid-parameter, invalid-json)."
    ),
    "Unauthenticated": _problem(
        "No admin token, or one that is unknown, expired or revoked (admin-unauthenticated)."
        " A gateway session cookie never counts.",
        "WWW-Authenticate",
    ),
    "Forbidden": _problem(
        "The token lacks the scope this needs (admin-forbidden).", "WWW-Authenticate"
    ),
    "NotFound": _problem(
        "No such policy, version, user, organisation or tenant (policy-not-found,"
        " version-not-found, user-not-found, org-not-found, tenant-not-found,"
        " xero-connection-not-found)."
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
    "UnsupportedMediaType": _problem("The body is not application/json (unsupported-media-type)."),
    "PolicyInvalid": _problem(
        "The document does not parse, or its id differs from the URL's (policy-invalid);"
        " errors lists every problem, each naming its field."
    ),
    "XeroUnavailable": _problem(
        "Xero did not answer, or refused (xero-unavailable); nothing was changed: try again."
    ),
    "UserDisabled": _problem("The user is disabled (user-disabled); nothing was changed."),
    "ResetInvalid": _problem(
        "verified_by or reason is missing, blank or too long (reset-invalid); errors lists"
        " every problem. Nothing was changed."
    ),
    "TenantInvalid": _problem(
        "The tenant link is invalid, e.g. an unknown country code (tenant-invalid);"
        " errors lists every problem, each naming its field."
    ),
}

PARAMETERS = {
    "PolicyId": Param(
        name="policy_id", where="path", description="The policy's id, e.g. au-ato-2fa."
    ),
    "Version": Param(
        name="version",
        where="path",
        description="A store version of the policy.",
        schema={"type": "integer", "minimum": 1},
    ),
    "OrgId": Param(name="org_id", where="path", description="The organisation's id."),
    "UserId": Param(name="user_id", where="path", description="The user's id."),
    "TenantId": Param(name="tenant_id", where="path", description="The Xero tenant id."),
    "GrantId": Param(
        name="grant_id", where="path", description="The Xero consent's id (grant_id, xgr_…)."
    ),
    "IfMatch": Param(
        name="If-Match",
        where="header",
        required=True,
        description='The ETag read, e.g. "3". Missing or * gives 428; stale gives 412.',
    ),
    "At": Param(
        name="at",
        where="query",
        description="An ISO date (midnight UTC) or date-time (no offset: UTC); default now.",
    ),
}

HEADERS: dict[str, dict[str, Any]] = {
    "ETag": {"description": 'The policy\'s store version, quoted: "3".', "schema": dict(STRING)},
    "Location": {"description": "The new policy's URL.", "schema": dict(STRING)},
    "X-Total-Count": {
        "description": "Events matching the filters when the export began.",
        "schema": {"type": "integer"},
    },
    "X-Export-Limit": {
        "description": "The most events the export holds: fewer than X-Total-Count means cut.",
        "schema": {"type": "integer"},
    },
    "WWW-Authenticate": {
        "description": 'Bearer realm="gateway-admin", with error= on a bad token or scope.',
        "schema": dict(STRING),
    },
}

SECURITY = Security(
    scheme=SCHEME,
    definition={
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "xgw_ followed by 43 URL-safe characters",
        "description": (
            "An admin token. Scopes: policies:read, policies:write (includes read),"
            " orgs:write, reports:read, audit:read, users:write (support resets), or admin"
            " (all). The gateway's"
            " session cookie never grants admin access."
        ),
    },
    always=("admin",),
    failures={"401": "Unauthenticated", "403": "Forbidden"},
)

# What a route with a JSON body may answer besides its own replies.
BODY_REPLIES = {
    "400": "BadRequest",
    "413": "PayloadTooLarge",
    "415": "UnsupportedMediaType",
}
# What a route guarded by If-Match may answer.
GUARDED_REPLIES = {
    "404": "NotFound",
    "412": "PreconditionFailed",
    "428": "PreconditionRequired",
}


def query(name: str, description: str, *, required: bool = False, **schema: Any) -> Param:
    return Param(
        name=name,
        where="query",
        description=description,
        schema=schema or STRING,
        required=required,
    )


def whole(name: str, description: str, **limits: int) -> Param:
    return Param(name=name, where="query", description=description, schema={**INTEGER, **limits})


def document(operations: Sequence[Operation]) -> dict[str, Any]:
    """The OpenAPI document of the admin API and the public operational endpoints."""
    return build_document(
        info={
            "title": "Xero MFA gateway",
            "version": gateway.__version__,
            "description": (
                "The gateway's user JSON API (sign-in, 2FA set-up and challenge, for apps with"
                " their own front end; session cookie and X-CSRF-Token), its admin API"
                " (policies, tenants, readiness, audit) and its public operational endpoints."
                " Every admin response carries Cache-Control: no-store;"
                " every error is RFC 9457 problem+json with type /_gateway/problems/<slug>."
            ),
        },
        tags=TAGS,
        operations=operations,
        components=Components(responses=RESPONSES, parameters=PARAMETERS, headers=HEADERS),
        security=SECURITY,
    )
