"""The OpenAPI document: served without auth, well formed, and in step with the router."""

from __future__ import annotations

import importlib
import importlib.util
import re
from collections.abc import Iterator
from typing import Any

import pytest

from gateway.admin.api import ROUTES, openapi_document, route_scopes
from gateway.runtime.app import create_front_app
from gateway.web.openapi import OPENAPI_PATH
from tests.conftest import GatewayFactory, RunningGateway
from tests.test_admin_support import (
    AU_MEMBER,
    AU_POLICY,
    NZ_ORG,
    bearer,
    mint,
    org_id,
    shipped_document,
)

ADMIN = "/_gateway/admin/api/"
SCHEME = "adminToken"
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


@pytest.fixture
async def gateway(make_gateway: GatewayFactory) -> RunningGateway:
    running: RunningGateway = await make_gateway(policies=True)
    return running


@pytest.fixture
def document() -> dict[str, Any]:
    return openapi_document()


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def admin_routes_in_router(gateway: RunningGateway) -> set[tuple[str, str]]:
    # A second app over the same services, never started: only its router is read.
    app = create_front_app(gateway.services)
    found = set()
    for resource in app.router.resources():
        path = resource.canonical
        if not path.startswith(ADMIN) or "{tail" in path:
            continue  # the admin fallback (404/405) is not an operation
        for route in resource:
            if route.method not in ("HEAD", "*"):
                found.add((route.method.lower(), path))
    return found


async def test_the_document_is_served_without_a_token(gateway: RunningGateway) -> None:
    async with gateway.client() as http:
        response = await http.get(OPENAPI_PATH)
        body = await response.json()
    assert response.status == 200
    assert response.content_type == "application/json"
    assert body["openapi"] == "3.1.0"
    assert body == openapi_document()


async def test_every_admin_route_is_documented_and_nothing_else(
    gateway: RunningGateway, document: dict[str, Any]
) -> None:
    in_router = admin_routes_in_router(gateway)
    documented = {(m, p) for p, m, _ in operations(document) if p.startswith(ADMIN)}
    assert len(in_router) == len(ROUTES)
    assert in_router - documented == set(), "routes missing from the OpenAPI document"
    assert documented - in_router == set(), "documented operations with no route"


def test_the_public_operational_endpoints_are_documented(document: dict[str, Any]) -> None:
    assert "get" in document["paths"]["/_gateway/health"]
    assert "security" not in document["paths"]["/_gateway/health"]["get"]
    assert "get" in document["paths"][OPENAPI_PATH]


def test_admin_operations_name_the_bearer_scheme_and_their_errors(
    document: dict[str, Any],
) -> None:
    scheme = document["components"]["securitySchemes"]["adminToken"]
    assert scheme == {**scheme, "type": "http", "scheme": "bearer"}
    writes_with_if_match = 0
    for path, method, operation in operations(document):
        if not path.startswith(ADMIN):
            continue
        assert operation["security"], f"{method} {path} has no security"
        assert {"adminToken": ["admin"]} in operation["security"]
        assert {"401", "403"} <= operation["responses"].keys(), f"{method} {path}"
        names = [p.get("$ref", "").rsplit("/", 1)[-1] for p in operation.get("parameters", [])]
        if "IfMatch" in names:
            writes_with_if_match += 1
            assert {"412", "428"} <= operation["responses"].keys()
        if "requestBody" in operation:
            assert {"400", "413", "415", "422"} <= operation["responses"].keys()
    assert writes_with_if_match == 4  # PUT, DELETE, enable, disable
    put = document["paths"][f"{ADMIN}policies/{{policy_id}}"]["put"]
    assert {"404", "409"} & put["responses"].keys() == {"404"}
    post = document["paths"][f"{ADMIN}policies"]["post"]
    assert "409" in post["responses"]


def resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        assert part in node, f"unresolved $ref {ref}"
        node = node[part]
    return node


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def test_the_document_is_well_formed(document: dict[str, Any]) -> None:
    assert document["openapi"] == "3.1.0"
    assert document["info"]["title"]
    assert document["info"]["version"]
    for ref in refs(document):
        resolve(document, ref)
    ids = [operation["operationId"] for _, _, operation in operations(document)]
    assert len(ids) == len(set(ids))
    problem = document["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"type", "title", "status", "detail"}
    for path, method, operation in operations(document):
        assert operation["responses"], f"{method} {path} has no responses"
        for status, response in operation["responses"].items():
            assert re.fullmatch(r"[1-5][0-9][0-9]", status)
            response = resolve(document, response["$ref"]) if "$ref" in response else response
            assert response["description"]
            if status.startswith("4"):
                assert "application/problem+json" in response["content"]
        parameters = [
            resolve(document, p["$ref"]) if "$ref" in p else p
            for p in operation.get("parameters", [])
        ]
        in_path = {p["name"] for p in parameters if p["in"] == "path"}
        assert in_path == set(re.findall(r"{(\w+)}", path)), f"{method} {path}"
        for parameter in parameters:
            assert parameter["in"] in {"path", "query", "header", "cookie"}
            assert "schema" in parameter
            if parameter["in"] == "path":
                assert parameter["required"] is True
        for requirement in operation.get("security", []):
            assert set(requirement) <= document["components"]["securitySchemes"].keys()


@pytest.mark.skipif(
    importlib.util.find_spec("openapi_spec_validator") is None,
    reason="openapi-spec-validator is not installed (the structural test above still runs)",
)
def test_the_document_passes_openapi_spec_validator(document: dict[str, Any]) -> None:
    validator = importlib.import_module("openapi_spec_validator")
    validator.validate(document)


def test_each_operation_admits_the_scopes_its_route_does(document: dict[str, Any]) -> None:
    for (method, path), scopes in route_scopes().items():
        operation = document["paths"][path][method.lower()]
        admitted = [scope for requirement in operation["security"] for scope in requirement[SCHEME]]
        assert admitted == [*scopes, "admin"], f"{method} {path}"


def body_schema(document: dict[str, Any], path: str, method: str, status: int) -> dict[str, Any]:
    """The JSON Schema the document gives for one answer, able to resolve its references."""
    response = document["paths"][path][method]["responses"][str(status)]
    response = resolve(document, response["$ref"]) if "$ref" in response else response
    (content,) = response["content"].values()
    return {**content["schema"], "components": document["components"]}


async def test_answers_fit_the_schemas_the_document_gives_them(
    gateway: RunningGateway, document: dict[str, Any]
) -> None:
    """The models that describe the answers are the ones that make them: a sample of each."""
    jsonschema = pytest.importorskip("jsonschema")
    token = await mint(gateway)
    nz = await org_id(gateway, NZ_ORG)
    found = await gateway.services.store.users.find_by_email(AU_MEMBER)
    assert found is not None
    member = found.id
    link = {"tenant_id": "nz-au-branch", "name": "Kauri Australia Pty Ltd", "country_code": "AU"}
    policy = f"{ADMIN}policies/{{policy_id}}"
    calls = [
        ("get", f"{ADMIN}policies", f"{ADMIN}policies", None, {}),
        ("get", policy, f"{ADMIN}policies/{AU_POLICY}", None, {}),
        ("post", f"{policy}/lint", f"{ADMIN}policies/{AU_POLICY}/lint", shipped_document(), {}),
        ("post", f"{policy}/lint", f"{ADMIN}policies/{AU_POLICY}/lint", {"id": 1}, {}),
        (
            "post",
            f"{policy}/disable",
            f"{ADMIN}policies/{AU_POLICY}/disable",
            None,
            {"If-Match": '"1"'},
        ),
        ("get", f"{policy}/versions", f"{ADMIN}policies/{AU_POLICY}/versions", None, {}),
        (
            "get",
            f"{policy}/versions/{{version}}",
            f"{ADMIN}policies/{AU_POLICY}/versions/1",
            None,
            {},
        ),
        ("get", f"{policy}/diff", f"{ADMIN}policies/{AU_POLICY}/diff", None, {}),
        (
            "get",
            f"{ADMIN}decisions/explain",
            f"{ADMIN}decisions/explain?user={AU_MEMBER}",
            None,
            {},
        ),
        ("get", f"{ADMIN}reports/readiness", f"{ADMIN}reports/readiness", None, {}),
        ("post", f"{ADMIN}orgs/{{org_id}}/tenants", f"{ADMIN}orgs/{nz}/tenants", link, {}),
        ("get", f"{ADMIN}orgs", f"{ADMIN}orgs", None, {}),
        ("get", f"{ADMIN}audit", f"{ADMIN}audit", None, {}),
        ("get", f"{ADMIN}users", f"{ADMIN}users?q=harbour", None, {}),
        ("get", f"{ADMIN}users/{{user_id}}", f"{ADMIN}users/{member}", None, {}),
        ("get", f"{ADMIN}users/{{user_id}}", f"{ADMIN}users/usr_nobody", None, {}),
        (
            "get",
            f"{ADMIN}reports/enrolment",
            f"{ADMIN}reports/enrolment?policy={AU_POLICY}&days=7",
            None,
            {},
        ),
        ("get", f"{ADMIN}audit/export", f"{ADMIN}audit/export?format=xml", None, {}),
        ("post", f"{ADMIN}orgs/{{org_id}}/tenants", f"{ADMIN}orgs/{nz}/tenants", {"x": 1}, {}),
        ("get", "/_gateway/health", "/_gateway/health", None, {}),
    ]
    async with gateway.client() as http:
        for method, template, url, body, headers in calls:
            response = await http.request(method, url, json=body, headers=bearer(token, **headers))
            answer = await response.json(content_type=None)
            schema = body_schema(document, template, method, response.status)
            jsonschema.validate(answer, schema, cls=jsonschema.Draft202012Validator)


# The console's pages, each with the admin API operations that give the same data or action.
CONSOLE_PAGES = {
    "/_gateway/admin/": ("readinessReport", "enrolmentSeries"),
    "/_gateway/admin/orgs": ("listOrgs",),
    "/_gateway/admin/users": ("searchUsers",),
    "/_gateway/admin/users/{user_id}": ("getUser", "resetUserMfa"),
    "/_gateway/admin/users/{user_id}/explain": ("explainDecision",),
    "/_gateway/admin/audit": ("listAuditEvents", "exportAuditEvents"),
}


def test_every_console_page_is_also_an_admin_api_operation(
    gateway: RunningGateway, document: dict[str, Any]
) -> None:
    ids = {operation["operationId"] for _, _, operation in operations(document)}
    app = create_front_app(gateway.services)
    pages = {
        resource.canonical
        for resource in app.router.resources()
        if resource.canonical.startswith("/_gateway/admin/")
        and not resource.canonical.startswith(ADMIN)
        and any(route.method == "GET" for route in resource)
    }
    assert set(CONSOLE_PAGES) <= pages
    for page, operation_ids in CONSOLE_PAGES.items():
        assert set(operation_ids) <= ids, page


def test_the_audit_export_is_documented_with_its_formats_and_filters(
    document: dict[str, Any],
) -> None:
    export = document["paths"][f"{ADMIN}audit/export"]["get"]
    assert "text/csv" in export["responses"]["200"]["content"]
    params = {p["name"]: p for p in export["parameters"] if "name" in p}
    assert params["format"]["schema"]["enum"] == ["csv", "jsonl"]
    listing = document["paths"][f"{ADMIN}audit"]["get"]
    listed = {p["name"] for p in listing["parameters"] if "name" in p}
    assert {"kind", "actor", "subject", "org", "since", "until"} <= listed
    assert {"kind", "actor", "subject", "org", "since", "until", "limit"} <= params.keys()
