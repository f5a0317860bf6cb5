"""The catch-all route: decide whether a request may reach the app, then hand it to the proxy."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Collection
from urllib.parse import quote

from aiohttp import web

from gateway.errors import StoreError
from gateway.http.headers import (
    X_GATEWAY_MFA,
    X_GATEWAY_MFA_AT,
    X_GATEWAY_MFA_METHOD,
    X_GATEWAY_ORG_ID,
    X_GATEWAY_ROLE,
    X_GATEWAY_TOKEN,
    X_GATEWAY_USER_EMAIL,
    X_GATEWAY_USER_ID,
)
from gateway.http.origins import origin_allowed
from gateway.http.paths import in_gateway_namespace, normalise_path
from gateway.http.problems import problem_response, wants_html
from gateway.http.requests import CLIENT_SEEN, OUTCOME, REQUEST_ID, settled
from gateway.policy import Decision, MfaHeader, Outcome
from gateway.proxy.websocket import is_websocket_upgrade
from gateway.services import SERVICES, SESSION, Services
from gateway.signin.sessions import LiveSession
from gateway.web import operations

log = logging.getLogger(__name__)

LOGIN_PATH = "/_gateway/login"
PROMPT_PATH = "/_gateway/mfa/prompt"
BLOCKED_PATH = "/_gateway/mfa/blocked"
ENROL_PATH = "/_gateway/mfa/enrol"
VERIFY_PATH = "/_gateway/mfa/verify"


# What browsers ask for on every page they show: answered by the gateway for anyone it will
# not let through to the app (the app's own icon is for those it does).
_FAVICON = "/favicon.ico"


def identity_headers(live: LiveSession, mfa: MfaHeader) -> dict[str, str]:
    """The headers that tell the app who is asking (the contract names them); how and when
    the session last passed a second factor, once it has."""
    user = live.user
    headers: dict[str, str] = {
        X_GATEWAY_USER_ID: user.id,
        X_GATEWAY_USER_EMAIL: user.email,
        X_GATEWAY_ORG_ID: user.org_id,
        X_GATEWAY_ROLE: user.role,
        X_GATEWAY_MFA: mfa,
        # The app's bearer for the Xero listener on this user's behalf; ends with the session.
        X_GATEWAY_TOKEN: live.gateway_token,
    }
    checked = live.second_factor
    if checked is not None:
        headers[X_GATEWAY_MFA_METHOD] = checked.method
        headers[X_GATEWAY_MFA_AT] = str(int(checked.at))
    return headers


def with_next(path: str, next_target: str) -> str:
    return f"{path}?next={quote(next_target, safe='/')}"


def login_url(next_target: str) -> str:
    return with_next(LOGIN_PATH, next_target)


def _is_navigation(request: web.Request) -> bool:
    return request.method in ("GET", "HEAD") and wants_html(request)


def gate(request: web.Request) -> Awaitable[web.StreamResponse]:
    """Decide whether ``request`` may reach the app; the answer, to be awaited.

    Not a coroutine itself: a warm request (its session's decision remembered) is decided
    without an await and handed on as the proxy's own coroutine, so the request is not
    carried through one more coroutine at every resume. Only a decision that must be worked
    out (which may read the store) goes through :func:`_decide_then_pass`.
    """
    services = request.app[SERVICES]
    raw_path = request.raw_path.split("?", 1)[0]
    normalised = normalise_path(raw_path)
    if normalised is None or (normalised[1:2] == "_" and in_gateway_namespace(normalised)):
        # The second case is a path like /x/../_gateway/… or /_gateway./x: the gateway's own
        # namespace must never reach the app, however it is spelled.
        request[OUTCOME] = "rejected"
        return settled(
            problem_response(
                request,
                status=400,
                slug="bad-path",
                title="Bad path",
                detail="The request path cannot be interpreted safely.",
            )
        )
    if "Upgrade" in request.headers and is_websocket_upgrade(request.method, request.headers):
        refusal = _cross_origin_socket(request, services)
        if refusal is not None:
            return settled(refusal)
    public = services.public_paths.is_public(raw_path, normalised)
    live = request.get(SESSION)
    if live is None:
        if not public:
            if raw_path == _FAVICON:
                return operations.favicon(request)
            return settled(_ask_to_sign_in(request))
        request[OUTCOME] = "public"
        return _forward(request, services, None, {})
    decision = services.decider.remembered(live)
    if decision is None:
        return _decide_then_pass(request, services, live, public)
    return _pass(request, services, live, decision, public)


async def _decide_then_pass(
    request: web.Request, services: Services, live: LiveSession, public: bool
) -> web.StreamResponse:
    decision = await services.decider.decide_for(live)
    return await _pass(request, services, live, decision, public)


def _pass(
    request: web.Request,
    services: Services,
    live: LiveSession,
    decision: Decision,
    public: bool,
) -> Awaitable[web.StreamResponse]:
    """Hand a signed-in request on as ``decision`` says: to the app, or back to the user."""
    mfa = _admitted_as(decision)
    if mfa is None:
        if not public:
            if request.path == _FAVICON:
                return operations.favicon(request)
            return settled(_hold_back(request, decision))
        request[OUTCOME] = "public"
        return _forward(request, services, None, {})  # held back: public pages as a visitor
    if decision.outcome is Outcome.PROMPT and not public and _is_navigation(request):
        request[OUTCOME] = "mfa_prompt"
        raise web.HTTPFound(
            with_next(PROMPT_PATH, request.raw_path), headers={"Cache-Control": "no-store"}
        )
    request[OUTCOME] = "public" if public else "proxied"
    return _forward(request, services, live, identity_headers(live, mfa))


def _forward(
    request: web.Request,
    services: Services,
    live: LiveSession | None,
    identity: dict[str, str],
) -> Awaitable[web.StreamResponse]:
    still_allowed = None
    if live is not None:
        signed_in = live

        async def still_allowed(last_activity: float) -> bool:
            # Asked while a WebSocket stays open: signed out, idle, expired or blocked ends it.
            try:
                if not await services.sessions.keep_alive(signed_in, last_activity):
                    return False
                return _admitted_as(await services.decider.decide_for(signed_in)) is not None
            except StoreError:
                # Not known right now: keep the socket and ask again at the next check.
                log.warning("could not re-check an open WebSocket; will retry", exc_info=True)
                return True

    return services.proxy.forward(
        request, identity=identity, request_id=request[REQUEST_ID], still_allowed=still_allowed
    )


def from_allowed_origin(request: web.Request, allowed: Collection[str] = ()) -> bool:
    """Whether the request's Origin (if any) is the one the client reached the gateway by, or
    one of ``allowed``; behind a trusted proxy, the scheme and host it says the browser used."""
    seen = request.get(CLIENT_SEEN)
    trusted = seen is not None and seen[1]
    headers = request.headers
    scheme, host = request.scheme, headers.get("Host", "")
    if trusted:
        # What the browser used, as the trusted proxy in front tells it.
        scheme = headers.get("X-Forwarded-Proto", scheme).split(",")[0].strip()
        host = headers.get("X-Forwarded-Host", host).split(",")[0].strip()
    return origin_allowed(headers.get("Origin"), scheme=scheme, host=host, allowed=allowed)


def _cross_origin_socket(request: web.Request, services: Services) -> web.Response | None:
    """403 for a WebSocket upgrade from a page on another origin, else None.

    The browser sends the user's cookies with the upgrade whatever page asks for it, and
    WebSockets have no CORS: without this check any site could talk to the app as the user.
    """
    if from_allowed_origin(request, services.config.server.websocket_origins):
        return None
    request[OUTCOME] = "rejected"
    log.info("refused a cross-origin WebSocket", extra={"origin": request.headers.get("Origin")})
    return problem_response(
        request,
        status=403,
        slug="websocket-origin",
        title="WebSocket from another site",
        detail="The gateway accepts WebSockets only from its own pages.",
    )


def _admitted_as(decision: Decision) -> MfaHeader | None:
    """How the app is told about a request let through, or None when it is held back."""
    if decision.outcome is Outcome.ALLOW:
        return decision.mfa_header
    if decision.outcome is Outcome.PROMPT:
        # Only page loads see the prompt; API calls and form posts go on, in grace.
        return "grace"
    return None


def _hold_back(request: web.Request, decision: Decision) -> web.StreamResponse:
    request[OUTCOME] = "mfa_blocked"
    verify = decision.outcome is Outcome.VERIFY
    if _is_navigation(request):
        target = VERIFY_PATH if verify else BLOCKED_PATH
        raise web.HTTPFound(
            with_next(target, request.raw_path), headers={"Cache-Control": "no-store"}
        )
    if verify:
        return problem_response(
            request,
            status=403,
            slug="mfa-required",
            title="Two-factor authentication required",
            detail=decision.reason,
            verify_url=VERIFY_PATH,
        )
    return problem_response(
        request,
        status=403,
        slug="mfa-enrolment-required",
        title="Two-factor authentication must be set up",
        detail=decision.reason,
        enrol_url=ENROL_PATH,
        policy_ids=list(decision.policy_ids),
    )


def _ask_to_sign_in(request: web.Request) -> web.StreamResponse:
    if _is_navigation(request):
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
