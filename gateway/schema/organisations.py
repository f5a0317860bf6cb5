"""The admin API's bodies for organisations and the Xero tenants linked to them."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema

from gateway.accounts.tenancy import (
    MAX_TENANT_ID,
    MAX_TENANT_NAME,
    country_code_problem,
    text_problem,
)
from gateway.policy import COUNTRY_CODES
from gateway.schema.bodies import refusal
from gateway.schema.instants import Instant
from gateway.store import TENANT_SOURCES


def _text(limit: int) -> AfterValidator:
    """Checked as linking checks it (the CLI too), with the same message."""

    def check(value: str) -> str:
        problem = text_problem(value, limit)
        if problem is not None:
            raise refusal(problem)
        return value

    return AfterValidator(check)


def _country(value: str) -> str:
    problem = country_code_problem(value)
    if problem is not None:
        raise refusal(problem)
    return value


class TenantFact(BaseModel):
    """A tenant as a decision reads it."""

    tenant_id: str
    name: str
    country_code: str
    active: bool


class Tenant(TenantFact):
    """A Xero tenant linked to an organisation."""

    linked_at: Instant
    checked_at: Instant
    source: str = Field(json_schema_extra={"enum": list(TENANT_SOURCES)})


class TenantLink(BaseModel):
    """A tenant to link to an organisation, as Xero names it."""

    model_config = ConfigDict(extra="forbid")

    tenant_id: Annotated[
        str,
        _text(MAX_TENANT_ID),
        WithJsonSchema({"type": "string", "minLength": 1, "maxLength": MAX_TENANT_ID}),
    ]
    name: Annotated[
        str,
        _text(MAX_TENANT_NAME),
        WithJsonSchema({"type": "string", "minLength": 1, "maxLength": MAX_TENANT_NAME}),
    ]
    country_code: Annotated[
        str,
        AfterValidator(_country),
        WithJsonSchema({"type": "string", "enum": sorted(COUNTRY_CODES)}),
    ]


class TenantChange(BaseModel):
    org_id: str
    changed: bool
    tenant: Tenant


class Org(BaseModel):
    id: str
    name: str
    created_at: Instant
    users: int
    tenants: list[Tenant]


class OrgList(BaseModel):
    """One page of organisations, in the order they were added."""

    orgs: list[Org]
    more: bool = Field(
        default=False, description="More organisations match: ask again with offset = next_offset."
    )
    next_offset: int = 0
