"""Xero's identity endpoints: authorize (consenting at once), token and revocation."""

from __future__ import annotations

import base64
import binascii
import hmac
from typing import Any

from aiohttp import web
from multidict import MultiDictProxy
from yarl import URL

from gateway.sandbox.xero_emulator.fixtures import EmulatedClient
from gateway.sandbox.xero_emulator.grants import ACCESS_LIFETIME, GrantError, Issued, PendingCode
from gateway.sandbox.xero_emulator.state import EmulatorState

STATE = web.AppKey("xero_emulator_state", EmulatorState)
SCOPE_WORDS = frozenset({"openid", "profile", "email", "offline_access"})
SCOPE_PREFIXES = (
    "accounting.",
    "payroll.",
    "files",
    "assets",
    "projects",
    "finance.",
    "bankfeeds",
    "app.connections",
    "marketplace.billing",
)
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _known_scope(scope: str) -> bool:
    return scope in SCOPE_WORDS or scope.startswith(SCOPE_PREFIXES)


def _pkce_acceptable(challenge: str | None, method: str | None, required: bool) -> bool:
    # Only S256: a "plain" challenge would hand the verifier to whoever sees the URL.
    if challenge is None:
        return not required
    return method == "S256" and 43 <= len(challenge) <= 128


def _refuse_page(reason: str) -> web.Response:
    # Xero shows an error page and never redirects to a URI it cannot trust.
    return web.Response(status=400, text=f"Xero authorize error: {reason}\n")


async def authorize(request: web.Request) -> web.StreamResponse:
    """Consent at once as the emulator's user and send the browser back with a code."""
    state = request.app[STATE]
    query = request.query
    client = state.clients.get(query.get("client_id", ""))
    if client is None:
        return _refuse_page("unauthorized_client")
    redirect_uri = query.get("redirect_uri", "")
    if redirect_uri not in client.redirect_uris:
        return _refuse_page("invalid redirect_uri")
    back = URL(redirect_uri)
    echo = {"state": query["state"]} if "state" in query else {}
    scopes = tuple(query.get("scope", "").split())
    error = None
    if query.get("response_type") != "code":
        error = "unsupported_response_type"
    elif not scopes or not all(_known_scope(s) for s in scopes):
        error = "invalid_scope"
    elif not _pkce_acceptable(
        query.get("code_challenge"), query.get("code_challenge_method"), state.require_pkce
    ):
        error = "invalid_request"
    if error is not None:
        raise web.HTTPFound(back.update_query({"error": error, **echo}))
    code = state.grants.issue_code(
        PendingCode(
            client_id=client.client_id,
            redirect_uri=redirect_uri,
            code_challenge=query.get("code_challenge"),
            scopes=scopes,
            user_id=state.user.user_id,
            tenant_ids=state.consented_tenants(),
            issued_at=state.clock(),
        )
    )
    raise web.HTTPFound(back.update_query({"code": code, **echo}))


def _oauth_error(code: str, status: int = 400) -> web.Response:
    return web.json_response({"error": code}, status=status, headers=NO_STORE)


def _client(
    state: EmulatorState, request: web.Request, form: MultiDictProxy[Any]
) -> EmulatedClient | None:
    """The app, authenticated by HTTP Basic or by form fields; None when that fails."""
    client_id, secret = form.get("client_id"), form.get("client_secret")
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("basic "):
        try:
            client_id, _, secret = base64.b64decode(header[6:]).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
    client = state.clients.get(str(client_id or ""))
    if client is None:
        return None
    if client.client_secret is not None and not hmac.compare_digest(
        str(secret or "").encode(), client.client_secret.encode()
    ):
        return None
    return client


async def _caller(
    state: EmulatorState, request: web.Request, form: MultiDictProxy[Any]
) -> EmulatedClient | web.Response:
    """The authenticated app, or the answer that refuses the call (a fault or a bad client)."""
    failure = await state.switches.fault("token")
    if failure is not None:
        return failure
    client = _client(state, request, form)
    return _oauth_error("invalid_client") if client is None else client


def _token_body(state: EmulatorState, issued: Issued) -> dict[str, Any]:
    now = state.clock()
    body: dict[str, Any] = {
        "access_token": state.signer.access_token(issued.grant, now=now),
        "expires_in": ACCESS_LIFETIME,
        "token_type": "Bearer",
        "refresh_token": issued.refresh_token,
        "scope": " ".join(issued.grant.scopes),
    }
    if issued.with_id_token:
        body["id_token"] = state.signer.id_token(issued.grant, state.user, now=now)
    return body


async def token(request: web.Request) -> web.StreamResponse:
    """``POST /connect/token``: the authorization_code and refresh_token grants."""
    state = request.app[STATE]
    form = await request.post()
    grant_type = str(form.get("grant_type", ""))
    state.counters.token_calls[grant_type] += 1
    client = await _caller(state, request, form)
    if isinstance(client, web.Response):
        return client
    now = state.clock()
    try:
        if grant_type == "authorization_code":
            issued = state.grants.exchange_code(
                code=str(form.get("code", "")),
                client_id=client.client_id,
                redirect_uri=str(form.get("redirect_uri", "")),
                verifier=str(form["code_verifier"]) if "code_verifier" in form else None,
                now=now,
            )
        elif grant_type == "refresh_token":
            issued = state.grants.refresh(
                refresh_token=str(form.get("refresh_token", "")),
                client_id=client.client_id,
                now=now,
            )
        else:
            return _oauth_error("unsupported_grant_type")
    except GrantError as exc:
        return _oauth_error(exc.code)
    if state.switches.take_drop():
        # The grant is done; the answer is lost on the way (the connection just closes).
        if request.transport is not None:
            request.transport.abort()
        return web.Response(status=200)  # written to nowhere
    return web.json_response(_token_body(state, issued), headers=NO_STORE)


async def revocation(request: web.Request) -> web.StreamResponse:
    """``POST /connect/revocation`` with ``token=<refresh token>``: 200 whether or not known."""
    state = request.app[STATE]
    form = await request.post()
    client = await _caller(state, request, form)
    if isinstance(client, web.Response):
        return client
    if state.grants.revoke(token=str(form.get("token", "")), client_id=client.client_id):
        state.counters.revocations += 1
    return web.Response(status=200)
