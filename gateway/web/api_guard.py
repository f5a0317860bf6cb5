"""The user JSON API's addresses and the checks every call passes before its handler runs.

Cross-site requests: every state-changing call is refused (403) when ``Sec-Fetch-Site`` says
``cross-site`` or ``same-site``, or ``Origin`` is not the gateway's own. Its body must be sent
as ``application/json`` (415 otherwise), which a form on another site cannot send and a script
there can only send after a CORS preflight that the gateway never grants. Once signed in, each
such call also carries the session's CSRF token in ``X-CSRF-Token`` (from ``GET /me`` or the
answer that set the session). Signing in has no session to bind a token to yet: the origin
checks and the JSON content type stand in for it, as the login nonce does on the page.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.admin.http import ApiProblem, unprocessable
from gateway.http.csrf import csrf_valid
from gateway.http.requests import OUTCOME
from gateway.secondfactor.refusals import (
    BackupRefused,
    CodeRefused,
    SecondFactorRefused,
    SmsRefused,
    StepExpired,
)
from gateway.services import SERVICES, SESSION, Services
from gateway.signin.sessions import LiveSession
from gateway.web.gate import from_allowed_origin

API = "/_gateway/api"
SESSION_PATH = f"{API}/session"
ME_PATH = f"{API}/me"
ENROL_TOTP_PATH = f"{API}/mfa/enrol/totp"
CONFIRM_TOTP_PATH = f"{API}/mfa/enrol/totp/confirm"
ENROL_BACKUP_PATH = f"{API}/mfa/enrol/backup"
CONFIRM_BACKUP_PATH = f"{API}/mfa/enrol/backup/confirm"
FINISH_PATH = f"{API}/mfa/enrol/finish"
CHALLENGE_PATH = f"{API}/mfa/challenge"
CHALLENGE_SEND_PATH = f"{API}/mfa/challenge/send"
ENROL_SMS_PATH = f"{API}/mfa/enrol/sms"
CONFIRM_SMS_PATH = f"{API}/mfa/enrol/sms/confirm"
CSRF_HEADER = "X-CSRF-Token"
CROSS_SITE = frozenset({"cross-site", "same-site"})

invalid_body = unprocessable("invalid-body", "Invalid request body", "body")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ApiCall:
    request: web.Request
    services: Services
    live: LiveSession | None

    @property
    def signed_in(self) -> LiveSession:
        if self.live is None:
            raise ApiProblem(
                401,
                "unauthenticated",
                "Sign-in required",
                f"Sign in first: POST {SESSION_PATH}.",
                headers={"WWW-Authenticate": 'Cookie realm="gateway"'},
            )
        return self.live


UserHandler = Callable[[ApiCall], Awaitable[web.StreamResponse]]


def cross_site_refusal(request: web.Request) -> ApiProblem | None:
    fetch_site = request.headers.get("Sec-Fetch-Site", "").strip().lower()
    if fetch_site in CROSS_SITE or not from_allowed_origin(request):
        return ApiProblem(
            403,
            "cross-site",
            "Request from another site",
            "The gateway's API accepts changes only from the gateway's own origin.",
        )
    return None


def _json_only(request: web.Request) -> ApiProblem | None:
    kind = request.content_type if "Content-Type" in request.headers else ""
    if kind == "application/json":
        return None
    return ApiProblem(
        415,
        "unsupported-media-type",
        "Unsupported media type",
        "Send the body as application/json.",
    )


def api(handler: UserHandler, *, changes: bool, body: bool = False) -> Handler:
    """``handler`` behind the API's checks: a state-changing call (``changes``) from the
    gateway's own origin only, with the session's CSRF token if signed in, and a JSON body
    (``body``) sent as application/json."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        services = request.app[SERVICES]
        live: LiveSession | None = request.get(SESSION)
        try:
            if changes:
                refusal = cross_site_refusal(request)
                if refusal is None and live is not None:
                    presented = request.headers.get(CSRF_HEADER)
                    if not csrf_valid(services.keys.csrf, live.record.csrf_secret, presented):
                        refusal = ApiProblem(
                            403,
                            "csrf-failed",
                            "CSRF token missing or wrong",
                            f"Send the token from GET {ME_PATH} as {CSRF_HEADER}.",
                        )
                if refusal is not None:
                    request[OUTCOME] = "rejected"
                    raise refusal
            if body and (refusal := _json_only(request)) is not None:
                raise refusal
            return await handler(ApiCall(request=request, services=services, live=live))
        except ApiProblem as problem:
            return problem.response(request)

    return guarded


# One answer for every wrong, reused or malformed code and for a lockout.
GENERIC_MESSAGE = CodeRefused().message


# A step that sends a code refused before any code was judged, by the refusal's reason: where
# codes cannot go, no phone or backup to send to, a kind the policy does not accept, or a send
# a limit refused, that failed or is not possible here (nothing spent either way).
_SEND_REFUSALS = {
    "bad-destination": (400, "Codes cannot be sent there"),
    "method-not-allowed": (409, "Method not accepted"),
    "no-backup-factor": (409, "No backup method set up"),
    "no-sms-factor": (409, "No phone set up"),
    "send-limited": (429, "Too many codes sent"),
    "send-failed": (503, "The code could not be sent"),
    "send-unavailable": (503, "Codes cannot be sent that way here"),
}


def refused(request: web.Request, refusal: SecondFactorRefused) -> ApiProblem:
    """The problem for a refused second-factor step: the generic one for a code from the app
    or a recovery code; for a step that sends a code, why it was not sent (a send a limit
    refused says when to try again, in Retry-After) or why the code sent was not accepted
    (400, saying so when it expired or was used); else the step's own (out of order, run out,
    done already) with what to do."""
    request[OUTCOME] = "rejected"
    if isinstance(refusal, CodeRefused):
        return ApiProblem(400, "code-refused", "Code not accepted", GENERIC_MESSAGE)
    if isinstance(refusal, (BackupRefused, SmsRefused)):
        known = _SEND_REFUSALS.get(refusal.reason)
        if known is None:
            # A code sent that was not accepted: the page's message (the generic one for a
            # wrong code; "expired" or "used" says to send a new one).
            return ApiProblem(400, "code-refused", "Code not accepted", refusal.message)
        status, title = known
        wait = math.ceil(refusal.retry_after)
        headers = {"Retry-After": str(wait)} if wait > 0 else None
        return ApiProblem(status, refusal.reason, title, refusal.message, headers=headers)
    if isinstance(refusal, StepExpired):
        # The page starts the step over; over JSON, the app does, by the call that began it.
        again = ENROL_SMS_PATH if refusal.kind == "sms" else ENROL_TOTP_PATH
        detail = (
            f"That took longer than {refusal.minutes}, so this step ran out for your security."
            f" Start setting up again: POST {again}."
        )
        return ApiProblem(409, refusal.reason, "Step not possible now", detail)
    return ApiProblem(409, type(refusal).reason, "Step not possible now", refusal.message)
