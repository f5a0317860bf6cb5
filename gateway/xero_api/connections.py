"""``GET /connections`` as the gateway answers it: the caller's organisation's active
connections, in Xero's JSON shape."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from gateway.store.xero import XeroConnection, XeroGrant


def xero_time(at: float) -> str:
    """A time as Xero writes it in ``/connections`` (UTC, no zone suffix, 7 decimals)."""
    moment = datetime.fromtimestamp(at, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond * 10:07d}"


def connections_body(
    connections: Iterable[XeroConnection], grants: Mapping[str, XeroGrant]
) -> list[dict[str, Any]]:
    """Each active connection of an active grant, oldest first (as given)."""
    body = []
    for connection in connections:
        grant = grants.get(connection.grant_id)
        if connection.status != "active" or grant is None or grant.status != "active":
            continue
        body.append(
            {
                "id": connection.id,
                "authEventId": grant.auth_event_id,
                "tenantId": connection.tenant_id,
                "tenantType": connection.tenant_type,
                "tenantName": connection.tenant_name,
                "createdDateUtc": xero_time(connection.created_at),
                "updatedDateUtc": xero_time(max(connection.status_changed_at, grant.created_at)),
            }
        )
    return body
