"""The admin API's bodies for an organisation's Xero connections."""

from __future__ import annotations

from pydantic import BaseModel, Field

from gateway.schema.instants import Instant
from gateway.store import TENANT_SOURCES
from gateway.store.xero import CONNECTION_STATUSES


class XeroConnection(BaseModel):
    """One connected tenant of one grant (one consent)."""

    grant_id: str
    connection_id: str = Field(description="Xero's id of the connection.")
    tenant_id: str
    tenant_name: str
    country_code: str | None = Field(description="From the tenant's active link; null if none.")
    source: str | None = Field(
        description="Where the tenant's active link came from (null if none).",
        json_schema_extra={"enum": [*TENANT_SOURCES, None]},
    )
    status: str = Field(json_schema_extra={"enum": list(CONNECTION_STATUSES)})
    connected_by: str = Field(description="The email of the principal who consented.")
    connected_at: Instant
    last_refresh_at: Instant | None
    access_expires_at: Instant
    rate_budget: str | None = Field(description="What is left of the tenant's call budget.")


class XeroConnectionList(BaseModel):
    org_id: str
    connections: list[XeroConnection]


class XeroDisconnect(BaseModel):
    org_id: str
    grant_id: str
    disconnected: bool = Field(description="False if it was disconnected already.")
    connections: list[XeroConnection]
