"""The OpenAPI document served at /_gateway/api/openapi.json, and the public operations in it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from gateway.http.paths import HEALTH_PATH
from gateway.schema.openapi import JSON, Operation, Reply
from gateway.schema.operations import Health
from gateway.web import context

OPENAPI_PATH = "/_gateway/api/openapi.json"
OPENAPI_TEXT = web.AppKey("openapi_text", str)

# The public operational endpoints: no token, as load balancers and tooling call them.
OPERATIONS = (
    Operation(
        method="GET",
        path=HEALTH_PATH,
        operation_id="health",
        summary="Liveness and store check, for load balancers",
        tag="operations",
        replies={
            "200": Reply(description="The gateway and its store work.", model=Health),
            "503": Reply(description="The store is failing.", model=Health),
        },
    ),
    Operation(
        method="GET",
        path=OPENAPI_PATH,
        operation_id="openapi",
        summary="This document",
        tag="operations",
        replies={"200": Reply(description="The OpenAPI 3.1 document.")},
    ),
)


async def serve(request: web.Request) -> web.Response:
    return web.Response(
        text=request.app[OPENAPI_TEXT],
        content_type=JSON,
        headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
    )


def add_route(app: web.Application, document: Mapping[str, Any]) -> None:
    """Serve ``document`` without auth: it describes the API, it grants nothing."""
    app[OPENAPI_TEXT] = json.dumps(document, ensure_ascii=False)
    context.add_get(app, OPENAPI_PATH, serve)
