"""The catch-all route: decide whether a request may reach the app, then hand it to the proxy."""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web

from gateway.services import OUTCOME, REQUEST_ID, SERVICES, SESSION
from gateway.sessions import LiveSession
from gateway.web.paths import normalise_path
from gateway.web.problems import problem_response, wants_html

LOGIN_PATH = "/_gateway/login"


def identity_headers(live: LiveSession) -> dict[str, str]:
    """The headers that tell the app who is asking (the contract names them)."""
    user = live.user
    return {
        "X-Gateway-User-Id": user.id,
        "X-Gateway-User-Email": user.email,
        "X-Gateway-Org-Id": user.org_id,
        "X-Gateway-Role": user.role,
        # No 2FA policy is in force yet, so no request is held back for a second factor.
        "X-Gateway-Mfa": "not-required",
        # Filled once the gateway holds Xero tokens for the user's organisation.
        "X-Gateway-Token": "",
    }


def login_url(next_target: str) -> str:
    return f"{LOGIN_PATH}?next={quote(next_target, safe='/')}"


async def gate(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    raw_path = request.raw_path.split("?", 1)[0]
    if normalise_path(raw_path) is None:
        request[OUTCOME] = "rejected"
        return problem_response(
            request,
            status=400,
            slug="bad-path",
            title="Bad path",
            detail="The request path cannot be interpreted safely.",
        )
    live = request.get(SESSION)
    identity = identity_headers(live) if live is not None else {}
    if live is None:
        if not services.public_paths.is_public(raw_path):
            return _ask_to_sign_in(request)
        request[OUTCOME] = "public"
    else:
        request[OUTCOME] = "proxied"
    return await services.proxy.forward(request, identity=identity, request_id=request[REQUEST_ID])


def _ask_to_sign_in(request: web.Request) -> web.StreamResponse:
    if request.method in ("GET", "HEAD") and wants_html(request):
        request[OUTCOME] = "login_redirect"
        raise web.HTTPFound(login_url(request.raw_path), headers={"Cache-Control": "no-store"})
    request[OUTCOME] = "unauthenticated"
    return problem_response(
        request,
        status=401,
        slug="unauthenticated",
        title="Sign-in required",
        detail="Sign in at the gateway first.",
        headers={"WWW-Authenticate": 'Cookie realm="gateway"'},
        login_url=LOGIN_PATH,
    )
