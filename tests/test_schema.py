"""Typed bodies: request checks in the house's words, and schemas derived from declarations."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.policy import FIELDS
from gateway.schema.bodies import BodyError, validate
from gateway.schema.organisations import TenantLink
from gateway.schema.policies import policy_document_schema
from tests.test_admin_support import shipped_document

# Typed Any: the checker has no stubs for it (it comes with openapi-spec-validator).
jsonschema = pytest.importorskip("jsonschema")

LINK = {"tenant_id": "t-1", "name": "Harbour Accounting Pty Ltd", "country_code": "AU"}


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(BodyError) as info:
        validate(TenantLink, data)
    return info.value.problems


def test_a_body_that_fits_its_model_is_taken() -> None:
    link = validate(TenantLink, LINK)
    assert (link.tenant_id, link.name, link.country_code) == ("t-1", LINK["name"], "AU")


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"colour": "blue"}, ["colour: unknown key"]),
        ({"name": ...}, ["name: missing (it is required)"]),
        ({"tenant_id": 7}, ["tenant_id: must be a string"]),
        ({"name": ["x"]}, ["name: must be a string"]),
        ({"country_code": None}, ["country_code: must be a string"]),
        ({"tenant_id": " "}, ["tenant_id: must be 1 to 128 printable characters"]),
        ({"name": "x" * 201}, ["name: must be 1 to 200 printable characters"]),
        (
            {"country_code": "au"},
            [
                "country_code: 'au' is not an ISO 3166-1 alpha-2 country code"
                " (codes are upper case: 'AU')"
            ],
        ),
    ],
)
def test_each_problem_is_named_by_its_field(changes: dict[str, Any], expected: list[str]) -> None:
    data = {**LINK, **changes}
    for key, value in changes.items():
        if value is ...:
            del data[key]
    assert problems(data) == expected


def test_every_problem_of_a_body_is_listed_at_once() -> None:
    found = problems({"tenant_id": "", "country_code": 1, "extra": True})
    assert found == [
        "tenant_id: must be 1 to 128 printable characters",
        "name: missing (it is required)",
        "country_code: must be a string",
        "extra: unknown key",
    ]


def test_the_policy_schema_takes_the_shipped_policy_and_names_every_declared_field() -> None:
    schema = policy_document_schema()
    jsonschema.validate(shipped_document(), schema, cls=jsonschema.Draft202012Validator)
    for f in FIELDS:
        holder = schema if f.table is None else schema["properties"][f.table]
        assert f.key in holder["properties"], f.path
        assert (f.key in holder.get("required", [])) is f.required, f.path
        if f.choices:
            values = holder["properties"][f.key]
            listed = values.get("enum") or values["items"]["enum"]
            assert set(listed) == f.choices, f.path


@pytest.mark.parametrize(
    ("change", "path"),
    [
        (lambda d: d.update(colour="blue"), "colour"),
        (lambda d: d["scope"].update(region="APAC"), "scope.region"),
        (lambda d: d.pop("windows"), "windows"),
        (lambda d: d["windows"].update(code_lifetime="10 minutes"), "windows.code_lifetime"),
        (lambda d: d["scope"].update(roles=["owner"]), "scope.roles"),
        (lambda d: d["attempts"].update(max_failed=0), "attempts.max_failed"),
    ],
)
def test_the_policy_schema_refuses_what_the_parser_refuses(change: Any, path: str) -> None:
    document = shipped_document()
    change(document)
    validator = jsonschema.Draft202012Validator(policy_document_schema())
    assert list(validator.iter_errors(document)), path
