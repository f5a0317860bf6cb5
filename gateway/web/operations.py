"""Health and metrics endpoints for load balancers and Prometheus."""

from __future__ import annotations

import ipaddress
import logging

from aiohttp import web

from gateway.errors import StoreError
from gateway.http.problems import problem_response
from gateway.http.requests import CLIENT_ADDR
from gateway.ops.metrics import CONTENT_TYPE
from gateway.schema.operations import Health, HealthChecks
from gateway.services import SERVICES

log = logging.getLogger(__name__)


async def health(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    headers = {"Cache-Control": "no-store"}
    try:
        await services.store.db.check()
    except StoreError as exc:
        log.error("health check failed: %s", exc)
        failing = Health(status="unavailable", checks=HealthChecks(store="failing"))
        return web.json_response(failing.model_dump(mode="json"), status=503, headers=headers)
    ok = Health(status="ok", checks=HealthChecks(store="ok"))
    return web.json_response(ok.model_dump(mode="json"), headers=headers)


async def metrics(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    if not _metrics_allowed(request):
        return await not_found(request)
    body = services.metrics.render()
    response = web.Response(body=body, headers={"Cache-Control": "no-store"})
    response.headers["Content-Type"] = CONTENT_TYPE
    return response


def _metrics_allowed(request: web.Request) -> bool:
    allowed = request.app[SERVICES].config.server.metrics_allow
    try:
        addr = ipaddress.ip_address(request[CLIENT_ADDR])
    except ValueError:
        return False
    return any(addr in ipaddress.ip_network(net, strict=False) for net in allowed)


async def not_found(request: web.Request) -> web.StreamResponse:
    """Unknown paths under /_gateway/ belong to the gateway and never reach the app."""
    return problem_response(
        request,
        status=404,
        slug="not-found",
        title="Not found",
        detail="There is no gateway page at this address.",
    )
