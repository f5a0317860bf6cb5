"""The OpenAPI document: served without auth, well formed, and in step with the router."""

from __future__ import annotations

import importlib
import importlib.util
import re
from collections.abc import Iterator
from typing import Any

import pytest

from gateway.admin.api import ROUTES, route_scopes
from gateway.runtime.app import create_front_app
from gateway.web.openapi import OPENAPI_PATH, build_document
from tests.conftest import GatewayFactory, RunningGateway

ADMIN = "/_gateway/admin/api/"
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


@pytest.fixture
async def gateway(make_gateway: GatewayFactory) -> RunningGateway:
    running: RunningGateway = await make_gateway()
    return running


@pytest.fixture
def document() -> dict[str, Any]:
    return build_document(route_scopes())


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
    assert body == build_document(route_scopes())


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
