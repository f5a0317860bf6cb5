"""Xero's API host: ``/connections`` and the accounting API, behind its token, tenant and
rate-limit checks, with its error shapes."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from gateway.sandbox.xero_emulator.access_tokens import Bearer
from gateway.sandbox.xero_emulator.accounting import (
    Ledger,
    ValidationError,
    envelope,
    organisation,
    validation_body,
)
from gateway.sandbox.xero_emulator.identity_routes import STATE
from gateway.sandbox.xero_emulator.state import EmulatorState

Tenanted = Callable[[web.Request, EmulatorState, str, dict[str, str]], Awaitable[web.Response]]


ORGANISATION_CREATED = 1_577_836_800.0  # 2020-01-01: when the fixture organisations began


def _iso(at: float) -> str:
    return dt.datetime.fromtimestamp(at, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]


def _problem(status: int, title: str, detail: str, **headers: str) -> web.Response:
    body: dict[str, Any] = {
        "Type": None,
        "Title": title,
        "Status": status,
        "Detail": detail,
        "Instance": str(uuid.uuid4()),
        "Extensions": {},
    }
    return web.json_response(body, status=status, headers=headers)


def _unauthorized() -> web.Response:
    return _problem(
        401,
        "Unauthorized",
        "AuthenticationUnsuccessful",
        **{"WWW-Authenticate": 'Bearer error="invalid_token"'},
    )


def _bearer(request: web.Request, state: EmulatorState) -> Bearer | None:
    header = request.headers.get("Authorization", "")
    if not header.lower().startswith("bearer "):
        return None
    return state.signer.check(header[7:].strip(), now=state.clock())


async def _caller(request: web.Request, state: EmulatorState) -> Bearer | web.Response:
    """The checked bearer of a call that needs no tenant, or the answer that refuses it."""
    bearer = _bearer(request, state)
    if bearer is None:
        return _unauthorized()
    failure = await state.switches.fault("api")
    return bearer if failure is None else failure


async def list_connections(request: web.Request) -> web.Response:
    state = request.app[STATE]
    bearer = await _caller(request, state)
    if isinstance(bearer, web.Response):
        return bearer
    found = state.grants.connections_of(
        user_id=bearer.user_id,
        client_id=bearer.client_id,
        auth_event_id=request.query.get("authEventId"),
    )
    return web.json_response(
        [
            {
                "id": c.id,
                "authEventId": c.auth_event_id,
                "tenantId": c.tenant_id,
                "tenantType": "ORGANISATION",
                "tenantName": state.tenants[c.tenant_id].name,
                "createdDateUtc": _iso(c.created_at),
                "updatedDateUtc": _iso(c.updated_at),
            }
            for c in found
        ]
    )


async def delete_connection(request: web.Request, connection_id: str) -> web.Response:
    state = request.app[STATE]
    bearer = await _caller(request, state)
    if isinstance(bearer, web.Response):
        return bearer
    removed = state.grants.disconnect(
        connection_id=connection_id, user_id=bearer.user_id, client_id=bearer.client_id
    )
    return web.Response(status=204 if removed else 404)


async def tenanted(request: web.Request, handle: Tenanted, needs: frozenset[str]) -> web.Response:
    """Check the token, its scopes (one of ``needs``) and ``xero-tenant-id``, count the call
    against the limits, answer."""
    state = request.app[STATE]
    bearer = _bearer(request, state)
    if bearer is None:
        return _unauthorized()
    if needs.isdisjoint(bearer.scopes):
        return _problem(401, "Unauthorized", "AuthorizationUnsuccessful")
    tenant_id = request.headers.get("xero-tenant-id", "").strip().lower()
    tenant = state.tenants.get(tenant_id)
    if tenant is None or not state.grants.reaches(
        tenant_id=tenant_id, auth_event_id=bearer.auth_event_id
    ):
        return _problem(403, "Forbidden", "AuthorizationUnsuccessful")
    verdict = state.limits.admit(
        tenant_id=tenant_id,
        client_id=bearer.client_id,
        day_limit=tenant.day_limit,
        now=state.clock(),
    )
    if verdict.problem is not None:
        state.counters.rejected[(tenant_id, verdict.problem)] += 1
        return web.Response(status=429, headers=verdict.headers)
    state.counters.started(tenant_id, state.clock())
    try:
        failure = await state.switches.fault("api")
        if failure is not None:
            failure.headers.update(verdict.headers)
            return failure
        return await handle(request, state, tenant_id, verdict.headers)
    finally:
        state.limits.release(tenant_id)
        state.counters.finished(tenant_id)


def _not_found(headers: dict[str, str]) -> web.Response:
    return web.Response(
        status=404, text="The resource you're looking for cannot be found", headers=headers
    )


async def get_organisation(
    request: web.Request, state: EmulatorState, tenant_id: str, headers: dict[str, str]
) -> web.Response:
    tenant = state.tenants[tenant_id]
    body = envelope(
        state.clock(), Organisations=[organisation(tenant, created_at=ORGANISATION_CREATED)]
    )
    return web.json_response(body, headers=headers)


def _ledger(state: EmulatorState, tenant_id: str) -> Ledger:
    return state.ledgers[tenant_id]


def contacts(item_id: str | None = None) -> Tenanted:
    async def answer(
        request: web.Request, state: EmulatorState, tenant_id: str, headers: dict[str, str]
    ) -> web.Response:
        ledger = _ledger(state, tenant_id)
        if item_id is None:
            found = list(ledger.contacts.values())
        elif (contact := ledger.contacts.get(item_id.lower())) is not None:
            found = [contact]
        else:
            return _not_found(headers)
        return web.json_response(envelope(state.clock(), Contacts=found), headers=headers)

    return answer


def invoices(item_id: str | None = None) -> Tenanted:
    async def answer(
        request: web.Request, state: EmulatorState, tenant_id: str, headers: dict[str, str]
    ) -> web.Response:
        ledger = _ledger(state, tenant_id)
        if request.method in ("PUT", "POST") and item_id is None:
            return await _create_invoices(request, state, ledger, headers)
        if request.method != "GET":
            return web.Response(status=405, headers=headers)
        if item_id is None:
            found = ledger.invoice_list()
        elif (invoice := ledger.invoices.get(item_id.lower())) is not None:
            found = [invoice]
        else:
            return _not_found(headers)
        return web.json_response(envelope(state.clock(), Invoices=found), headers=headers)

    return answer


async def _create_invoices(
    request: web.Request, state: EmulatorState, ledger: Ledger, headers: dict[str, str]
) -> web.Response:
    try:
        posted: Any = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError):
        return web.json_response(
            validation_body(["The request body is not valid JSON"]), status=400, headers=headers
        )
    items = posted.get("Invoices") if isinstance(posted, dict) else None
    if not isinstance(items, list):
        items = [posted]
    try:
        created = [ledger.add_invoice(item, now=state.clock()) for item in items]
    except ValidationError as exc:
        return web.json_response(validation_body(exc.messages), status=400, headers=headers)
    return web.json_response(envelope(state.clock(), Invoices=created), headers=headers)
