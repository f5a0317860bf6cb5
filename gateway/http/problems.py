"""Error answers: an HTML page for a browser, RFC 9457 problem+json for everything else."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping
from typing import Any

import aiohttp_jinja2
from aiohttp import web

PROBLEM_BASE = "/_gateway/problems/"
ERROR_TEMPLATE = "error.html"

_SLUG = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_RESERVED = frozenset({"type", "title", "status", "detail"})

# Error pages need nothing but their own inline style: no scripts, no frames, no forms.
_ERROR_PAGE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)


def _accepts_html(accept: str) -> bool:
    if "html" not in accept.lower():
        return False  # the usual answer for API calls, without taking the header apart
    for media_range in accept.split(","):
        kind, *params = (p.strip() for p in media_range.split(";"))
        if kind.lower() != "text/html":
            continue
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    return float(value) > 0
                except ValueError:
                    return False
        return True
    return False


def wants_html(request: web.BaseRequest) -> bool:
    """True for a browser navigation; false for scripts (XHR, fetch in cors mode) and APIs."""
    accept = ",".join(request.headers.getall("Accept", []))
    if not _accepts_html(accept):
        return False
    if request.headers.get("X-Requested-With", "").lower() == "xmlhttprequest":
        return False
    return request.headers.get("Sec-Fetch-Mode", "").lower() != "cors"


def _render_html(request: web.BaseRequest, context: dict[str, Any]) -> str:
    if isinstance(request, web.Request) and aiohttp_jinja2.APP_KEY in request.config_dict:
        page: str = aiohttp_jinja2.render_string(ERROR_TEMPLATE, request, context)
        return page
    # No template environment (a bare app, or a low-level server error): a minimal page.
    title = html.escape(str(context["title"]))
    detail = html.escape(str(context["detail"]))
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{title}</title></head><body><main><h1>{title}</h1>"
        f"<p>{detail}</p><p>Error {int(context['status'])}</p></main></body></html>"
    )


def problem_response(
    request: web.BaseRequest,
    *,
    status: int,
    slug: str,
    title: str,
    detail: str,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> web.Response:
    """An error response for ``request``: HTML page or problem+json, never cacheable.

    ``slug`` names the problem type (``PROBLEM_BASE + slug``); ``extra`` adds members to the
    JSON body (and is available to the HTML template, e.g. ``request_id``).
    """
    if not _SLUG.fullmatch(slug):
        raise ValueError(f"problem slug {slug!r} must be lower-case words joined by '-'")
    clash = _RESERVED & extra.keys()
    if clash:
        raise ValueError(f"problem extras may not replace {sorted(clash)}")

    response_headers: dict[str, str] = dict(headers or {})
    response_headers["Cache-Control"] = "no-store"
    response_headers.setdefault("X-Content-Type-Options", "nosniff")
    # The body depends on these request headers; say so for any cache that ignores no-store.
    response_headers.setdefault("Vary", "Accept, X-Requested-With, Sec-Fetch-Mode")

    if wants_html(request):
        context: dict[str, Any] = {
            **extra,
            "status": status,
            "slug": slug,
            "type": PROBLEM_BASE + slug,
            "title": title,
            "detail": detail,
        }
        response_headers.setdefault("Content-Security-Policy", _ERROR_PAGE_CSP)
        return web.Response(
            status=status,
            text=_render_html(request, context),
            content_type="text/html",
            charset="utf-8",
            headers=response_headers,
        )

    body = {
        "type": PROBLEM_BASE + slug,
        "title": title,
        "status": status,
        "detail": detail,
        **extra,
    }
    return web.Response(
        status=status,
        text=json.dumps(body),
        content_type="application/problem+json",
        charset="utf-8",
        headers=response_headers,
    )


def body_stalled(request: web.BaseRequest, **extra: Any) -> web.Response:
    """408 for a request whose body stopped arriving; the connection is not reused after it
    (the rest of the body may still be on its way)."""
    response = problem_response(
        request,
        status=408,
        slug="request-timeout",
        title="Request timed out",
        detail="The request body stopped arriving before it was complete.",
        **extra,
    )
    response.force_close()
    return response
