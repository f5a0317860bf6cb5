"""Xero's webhook endpoint on the front listener: ``POST /_gateway/xero/webhooks``.

Xero is the caller, so no session, sign-in or CSRF applies: the ``x-xero-signature`` over the
raw body is the only credential. A good signature gets 200 with an empty body, a bad or
missing one 401 with an empty body, as Xero's intent-to-receive check demands, and quickly:
the events are only stored here (in the request, before answering, so none is lost once Xero
has its 200); the forwarder sends them to the app in the background.
"""

from __future__ import annotations

import logging

from aiohttp import web

from gateway.errors import StoreError
from gateway.http.problems import problem_response
from gateway.services import SERVICES
from gateway.web.context import add_route, body_deadline
from gateway.web.operations import not_found
from gateway.xero.webhooks import (
    MAX_BODY_BYTES,
    SIGNATURE_HEADER,
    WebhookPayloadError,
    events_to_keep,
    parse_delivery,
    signature_valid,
)

WEBHOOKS_PATH = "/_gateway/xero/webhooks"

log = logging.getLogger(__name__)


class _TooLarge(Exception):
    pass


async def _read_capped(request: web.Request, cap: int) -> bytes:
    """The whole body, or _TooLarge once it passes ``cap`` bytes (declared or sent)."""
    if request.content_length is not None and request.content_length > cap:
        raise _TooLarge
    chunks: list[bytes] = []
    size = 0
    async with body_deadline(request):
        while chunk := await request.content.read(cap + 1 - size):
            chunks.append(chunk)
            size += len(chunk)
            if size > cap:
                raise _TooLarge
    return b"".join(chunks)


async def receive(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    config = services.config.xero
    if not config.webhook_key:
        return await not_found(request)
    count = services.metrics.xero_webhook_posts.labels
    try:
        body = await _read_capped(request, MAX_BODY_BYTES)
    except _TooLarge:
        count("too_large").inc()
        return problem_response(
            request,
            status=413,
            slug="payload-too-large",
            title="Payload too large",
            detail=f"A webhook delivery is at most {MAX_BODY_BYTES} bytes.",
        )
    if not signature_valid(config.webhook_key, body, request.headers.get(SIGNATURE_HEADER)):
        count("bad_signature").inc()
        return web.Response(status=401)
    try:
        delivery = parse_delivery(body)
    except WebhookPayloadError as exc:
        count("malformed").inc()
        log.warning("signed xero webhook post is not a delivery: %s", exc)
        return problem_response(
            request,
            status=400,
            slug="invalid-webhook",
            title="Not a webhook delivery",
            detail=str(exc),
        )
    if not delivery.events:  # intent to receive (or an empty delivery): nothing to forward
        count("intent").inc()
        return web.Response(status=200)
    forwarder = services.xero_webhooks
    if forwarder is None:
        count("accepted").inc()
        services.metrics.xero_webhooks.labels("dropped").inc(len(delivery.events))
        return web.Response(status=200)
    try:
        await services.store.xero_webhooks.add(events_to_keep(delivery), now=services.clock())
    except StoreError:
        # Not acknowledged, so Xero sends it again; nothing is half-stored (one transaction).
        log.exception("could not store xero webhook events; answering 503 so Xero retries")
        count("unavailable").inc()
        return web.Response(status=503)
    count("accepted").inc()
    services.metrics.xero_webhooks.labels("received").inc(len(delivery.events))
    forwarder.nudge()
    return web.Response(status=200)


def add_routes(app: web.Application) -> None:
    add_route(app, "POST", WEBHOOKS_PATH, receive)
