"""Admin API handlers for an organisation's Xero connections: list them, disconnect one."""

from __future__ import annotations

from aiohttp import web

from gateway.admin.http import ApiProblem, Call, instant, json_response, not_found
from gateway.errors import NotFoundError
from gateway.schema.xero import XeroConnection, XeroConnectionList, XeroDisconnect
from gateway.xero.overview import ConnectionRow, load_rows
from gateway.xero.tokens import XeroError


def _connection(row: ConnectionRow) -> XeroConnection:
    return XeroConnection(
        grant_id=row.grant_id,
        connection_id=row.connection_id,
        tenant_id=row.tenant_id,
        tenant_name=row.tenant_name,
        country_code=row.country_code,
        source=row.source,
        status=row.status,
        connected_by=row.connected_by,
        connected_at=instant(row.connected_at),
        last_refresh_at=instant(row.last_refresh_at) if row.last_refresh_at is not None else None,
        access_expires_at=instant(row.access_expires_at),
        rate_budget=row.rate_budget,
    )


async def _org(call: Call) -> str:
    org_id = call.path("org_id")
    try:
        await call.services.store.organisations.get(org_id)
    except NotFoundError:
        raise not_found("org-not-found", f"There is no organisation {org_id!r}.") from None
    return org_id


async def list_connections(call: Call) -> web.StreamResponse:
    org_id = await _org(call)
    rows = await load_rows(call.services.store, org_id, call.services.xero_rate_budget)
    return json_response(
        XeroConnectionList(org_id=org_id, connections=[_connection(r) for r in rows])
    )


async def disconnect(call: Call) -> web.StreamResponse:
    org_id, grant_id = await _org(call), call.path("grant_id")
    try:
        done = await call.services.xero_connector.disconnect(
            grant_id, audit=call.audit, org_id=org_id
        )
    except NotFoundError:
        raise not_found(
            "xero-connection-not-found",
            f"Organisation {org_id!r} has no Xero connection {grant_id!r}.",
        ) from None
    except XeroError as exc:
        raise ApiProblem(
            503, "xero-unavailable", "Xero did not answer", f"{exc} Nothing was changed."
        ) from None
    rows = [r for r in await load_rows(call.services.store, org_id) if r.grant_id == grant_id]
    body = XeroDisconnect(
        org_id=org_id,
        grant_id=grant_id,
        disconnected=done,
        connections=[_connection(r) for r in rows],
    )
    return json_response(body)
