"""Requests whose target names no path (CONNECT, ``OPTIONS *``, absolute URLs): answered
with a problem and a closed connection, never routed."""

from __future__ import annotations

import logging
from collections.abc import Awaitable

from aiohttp import web

from gateway.http.problems import problem_response
from gateway.http.requests import settled
from gateway.runtime.limits import Handler
from gateway.web.context import new_request_id

log = logging.getLogger(__name__)


def origin_form_only(handler: Handler) -> Handler:
    """``handler`` for requests whose target is a path; others are answered here.

    ``CONNECT`` asks for a tunnel and ``OPTIONS *`` (like an absolute URL) names no path: the
    router would answer a bare 404 and a CONNECT would leave the connection held as a tunnel.
    Both get a problem with a request id, and the connection is closed.
    """

    def handle(request: web.BaseRequest) -> Awaitable[web.StreamResponse]:
        if request.method != "CONNECT" and request.raw_path.startswith("/"):
            return handler(request)
        request_id = new_request_id()
        if request.method == "CONNECT":
            status, slug, title = 405, "method-not-allowed", "Method not allowed"
            detail = "The gateway is not a forward proxy: CONNECT is not accepted."
        else:
            status, slug, title = 400, "bad-request-target", "Bad request target"
            detail = "The request target must be a path starting with '/'."
        log.info("refused %s %.100r (%d)", request.method, request.raw_path, status)
        response = problem_response(
            request,
            status=status,
            slug=slug,
            title=title,
            detail=detail,
            headers={"X-Request-Id": request_id},
            request_id=request_id,
        )
        response.force_close()
        return settled(response)

    return handle
