"""Sign-in and sign-out pages: the first factor, CSRF, throttling, session rotation."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from gateway.audit import LoggedOut, LoginFailed, LoginSucceeded, LoginThrottled, MfaPassed
from gateway.http.csrf import csrf_token, csrf_valid, new_nonce
from gateway.http.problems import problem_response
from gateway.http.redirects import safe_next
from gateway.http.requests import CLIENT_ADDR, OUTCOME
from gateway.secondfactor.rules import Rules
from gateway.services import SERVICES, SESSION, Services
from gateway.signin.devices import (
    DEVICE_COOKIE_SECONDS,
    device_cookie,
    known_device,
    new_device_id,
)
from gateway.signin.sessions import LiveSession
from gateway.store.records import ThrottleState
from gateway.throttle import ThrottleRule, book_attempt, refund, retry_after
from gateway.web.context import read_form

log = logging.getLogger(__name__)

GENERIC_FAILURE = "That email and password do not match an account."
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
}
MAX_EMAIL = 320
NONCE_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")
MAX_PASSWORD = 1024


def render_page(
    request: web.Request, template: str, context: Mapping[str, Any], *, status: int = 200
) -> web.Response:
    """A gateway page: never cached, never framed, no scripts."""
    response = aiohttp_jinja2.render_template(template, request, dict(context), status=status)
    response.headers.update(PAGE_HEADERS)
    return response


def expired_form(request: web.Request) -> web.Response:
    """The answer to a form post whose CSRF token is missing, forged or out of date."""
    request[OUTCOME] = "rejected"
    return problem_response(
        request,
        status=403,
        slug="csrf-failed",
        title="This form had expired",
        detail="Go back, reload the page and try again.",
    )


def set_cookie(
    services: Services,
    response: web.StreamResponse,
    name: str,
    value: str,
    max_age: int | None = None,
) -> None:
    response.set_cookie(
        name,
        value,
        path="/",
        max_age=max_age,
        secure=services.config.security.cookie_secure,
        httponly=True,
        samesite="Lax",
    )


def clear_cookie(services: Services, response: web.StreamResponse, name: str) -> None:
    # A __Host- cookie is only replaced by one with the same Secure attribute and path.
    response.del_cookie(
        name, path="/", secure=services.config.security.cookie_secure, httponly=True, samesite="Lax"
    )


def _login_form(
    request: web.Request,
    *,
    next_target: str,
    email: str = "",
    error: str | None = None,
    notice: str | None = None,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    services = request.app[SERVICES]
    # One nonce per browser until sign-in, so two open sign-in tabs both stay valid.
    nonce = request.cookies.get(services.cookies.login_nonce, "")
    if not NONCE_SHAPE.fullmatch(nonce):
        nonce = new_nonce()
    context = {
        "csrf": csrf_token(services.keys.csrf, nonce, "login"),
        "next": next_target,
        "email": email,
        "error": error,
        "notice": notice,
    }
    response = render_page(request, "login.html", context, status=status)
    if headers:
        response.headers.update(headers)
    set_cookie(services, response, services.cookies.login_nonce, nonce)
    return response


async def login_page(request: web.Request) -> web.StreamResponse:
    next_target = safe_next(request.query.get("next"))
    if SESSION in request:
        raise web.HTTPSeeOther(next_target)
    notice = "You have signed out." if request.query.get("signed_out") == "1" else None
    if request.query.get("password") == "reset":
        notice = "Your password was changed. Sign in with your new password."
    return _login_form(request, next_target=next_target, notice=notice)


async def login_submit(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    form = await read_form(request)
    next_target = safe_next(form_field(form, "next", 2048))
    email = form_field(form, "email", MAX_EMAIL).strip().lower()
    password = form_field(form, "password", MAX_PASSWORD)
    nonce = request.cookies.get(services.cookies.login_nonce)
    if not csrf_valid(services.keys.csrf, nonce, form_field(form, "csrf", 128), "login"):
        request[OUTCOME] = "rejected"
        return _login_form(
            request,
            next_target=next_target,
            email=email,
            error="This form had expired. Please sign in again.",
            status=403,
        )
    outcome = await sign_in_with_password(request, email, password)
    if outcome.wait > 0:
        minutes = max(1, math.ceil(outcome.wait / 60))
        return _login_form(
            request,
            next_target=next_target,
            email=email,
            error=f"Too many attempts. Try again in {minutes} minute{'s' if minutes > 1 else ''}.",
            status=429,
            headers={"Retry-After": str(math.ceil(outcome.wait))},
        )
    if outcome.signed_in is None:
        return _login_form(
            request, next_target=next_target, email=email, error=GENERIC_FAILURE, status=401
        )
    response = web.HTTPSeeOther(next_target, headers={"Cache-Control": "no-store"})
    set_sign_in_cookies(services, response, outcome.signed_in)
    raise response


@dataclass(frozen=True, kw_only=True)
class SignedIn:
    """A sign-in that succeeded: the session (verified already if a remembered device let it
    skip the second factor) and the cookies that go with it."""

    raw_id: str
    live: LiveSession
    device_cookie: str
    forget_remembered: bool


@dataclass(frozen=True, kw_only=True)
class SignInOutcome:
    """``wait`` > 0: throttled for that many seconds; else ``signed_in`` or None (refused)."""

    wait: float = 0.0
    signed_in: SignedIn | None = None


async def sign_in_with_password(request: web.Request, email: str, password: str) -> SignInOutcome:
    """The first factor, as the sign-in page and the JSON API both check it: throttled per
    known device, address and account, audited, and a new session id on success (a session
    the request came with is ended). ``email`` is already trimmed and lower-cased."""
    services = request.app[SERVICES]
    client = request[CLIENT_ADDR]
    now = services.clock()
    # What was typed is kept only as a keyed hash: people do type passwords into the email box.
    typed = services.keys.names.sign(email.encode("utf-8", "surrogatepass"))[:32]
    # The cookie is bound to the address itself (inside its HMAC only), not to ``typed``:
    # that hash changes with the secret key, and a rotation must not forget the owner's devices.
    device = known_device(
        services.keys.devices, email, request.cookies.get(services.cookies.device)
    )
    throttles = _throttles(services, typed, device, client)
    wait = await book_attempts(services, throttles, now)
    if wait > 0:
        await services.store.audit.record(LoginThrottled(typed=typed), at=now, client_addr=client)
        services.metrics.logins.labels(result="throttled").inc()
        return SignInOutcome(wait=wait)

    result = await services.identity.authenticate(email, password)
    if result.user is None:
        # The attempt was counted as a failure when it was booked.
        failed = LoginFailed(account_id=result.account_id, reason=result.reason, typed=typed)
        await services.store.audit.record(failed, at=now, client_addr=client)
        services.metrics.logins.labels(result="failed").inc()
        log.info("sign-in failed", extra={"reason": result.reason, "client": client})
        return SignInOutcome()

    user = result.user
    account_key, _ = throttles[-1]
    await services.store.throttle.clear(account_key)
    for key, rule in throttles[:-1]:
        await services.store.throttle.update(key, partial(refund, rule=rule))
    previous = request.get(SESSION)
    if previous is not None:
        await services.sessions.end(previous.id_hash)
    # A new id at every sign-in: a session id planted before sign-in is worth nothing after it.
    raw_id, live = await services.sessions.create(user, client_addr=client)
    await services.store.audit.record(
        LoginSucceeded(user_id=user.id, org_id=user.org_id),
        at=now,
        actor=user.id,
        client_addr=client,
    )
    services.metrics.logins.labels(result="succeeded").inc()
    skipped, forget = await _skip_with_device(request, services, live)
    if skipped is not None:
        raw_id, live = skipped
    # Kept for the user's list of recent sign-ins; the method follows the session's first check.
    await services.store.sign_ins.record(
        user_id=user.id,
        at=now,
        client_addr=client,
        user_agent=request.headers.get("User-Agent", ""),
        method=None if live.second_factor is None else live.second_factor.method,
        session_hash=live.id_hash,
    )
    # From now on this browser has an allowance of its own for this account (see _throttles).
    cookie = device_cookie(services.keys.devices, email, device or new_device_id())
    return SignInOutcome(
        signed_in=SignedIn(raw_id=raw_id, live=live, device_cookie=cookie, forget_remembered=forget)
    )


def set_sign_in_cookies(
    services: Services, response: web.StreamResponse, signed_in: SignedIn
) -> None:
    set_cookie(services, response, services.cookies.session, signed_in.raw_id)
    clear_cookie(services, response, services.cookies.login_nonce)
    if signed_in.forget_remembered:
        clear_cookie(services, response, services.cookies.remembered)
    set_cookie(
        services,
        response,
        services.cookies.device,
        signed_in.device_cookie,
        DEVICE_COOKIE_SECONDS,
    )


async def _skip_with_device(
    request: web.Request, services: Services, live: LiveSession
) -> tuple[tuple[str, LiveSession] | None, bool]:
    """Right after sign-in, a device this user chose to be remembered on skips the second
    factor (method ``device``): returns the session's new raw id and the session then. The
    second value says whether the device cookie is to be cleared: it does not count (another
    user's, or its window is over)."""
    token = request.cookies.get(services.cookies.remembered)
    if not token or not (await services.decider.enrolment(live.user.id)).enrolled:
        return None, False
    decision = await services.decider.decide_for(live)
    now = services.clock()
    if not await services.second_factors.devices.recognise(
        token, live.user.id, now=now, window=Rules.of(decision.effective).remember_device
    ):
        return None, True
    verified = await services.sessions.mark_verified(live, "device", now)
    await services.store.audit.record(
        MfaPassed(user_id=live.user.id, org_id=live.user.org_id, method="device"),
        at=now,
        actor=live.user.id,
        client_addr=request[CLIENT_ADDR],
    )
    return verified, False


async def logout_page(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    live = request.get(SESSION)
    if live is None:
        raise web.HTTPSeeOther("/_gateway/login")
    context = {
        "email": live.user.email,
        "csrf": csrf_token(services.keys.csrf, live.record.csrf_secret),
    }
    return render_page(request, "logout.html", context)


async def logout_submit(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    live = request.get(SESSION)
    form = await read_form(request)
    if live is not None:
        if not csrf_valid(
            services.keys.csrf, live.record.csrf_secret, form_field(form, "csrf", 128)
        ):
            request[OUTCOME] = "rejected"
            return render_page(
                request,
                "logout.html",
                {
                    "email": live.user.email,
                    "csrf": csrf_token(services.keys.csrf, live.record.csrf_secret),
                },
                status=403,
            )
        await sign_out(request, live)
    response = web.HTTPSeeOther(
        "/_gateway/login?signed_out=1", headers={"Cache-Control": "no-store"}
    )
    clear_cookie(services, response, services.cookies.session)
    raise response


async def sign_out(request: web.Request, live: LiveSession) -> None:
    """End ``live`` everywhere and audit it (the page and the JSON API alike)."""
    services = request.app[SERVICES]
    await services.sessions.end(live.id_hash)
    await services.store.audit.record(
        LoggedOut(user_id=live.user.id, org_id=live.user.org_id),
        at=services.clock(),
        actor=live.user.id,
        client_addr=request[CLIENT_ADDR],
    )


def _throttles(
    services: Services, typed: str, device: str | None, client: str
) -> tuple[tuple[str, ThrottleRule], ...]:
    """The counters one sign-in attempt is booked on, the account's last.

    A browser that signed in to this account before (``device``, from its signed cookie)
    has its own allowance, which locks like any other: guesses from elsewhere, or from the
    same network, cannot use it up. Every other browser counts against the client address
    and one shared counter per account, which slows rather than locks (see ThrottleRule): a
    few stray guesses delay the owner on a new device by seconds, and a stranger who keeps
    guessing holds that shared counter at most ``lockout`` at a time, but nobody but the
    owner's own browsers can touch the allowance of the devices the owner uses.
    """
    if device is not None:
        return ((f"login:account:{typed}:device:{device}", services.account_throttle.locking()),)
    return (
        (f"login:address:{client}", services.address_throttle),
        (f"login:account:{typed}", services.account_throttle),
    )


class _Booking:
    """One key's check-and-count, run by the store inside its write transaction."""

    def __init__(self, rule: ThrottleRule, now: float) -> None:
        self.rule, self.now, self.allowed = rule, now, False

    def __call__(self, state: ThrottleState | None) -> ThrottleState | None:
        new, self.allowed = book_attempt(state, self.rule, self.now)
        return new


async def book_attempts(
    services: Services, throttles: tuple[tuple[str, ThrottleRule], ...], now: float
) -> float:
    """Book this attempt on each key in turn; returns 0 when it may go ahead, else the seconds
    to wait (handing back any booking already made, as nothing will be judged; the keys
    after a refusal are left alone)."""
    booked: list[tuple[str, ThrottleRule]] = []
    wait = 0.0
    for key, rule in throttles:
        booking = _Booking(rule, now)
        state = await services.store.throttle.update(key, booking)
        if not booking.allowed:
            wait = retry_after(state, now)
            break
        booked.append((key, rule))
    if wait > 0:
        for key, rule in booked:
            await services.store.throttle.update(key, partial(refund, rule=rule))
    return wait


def form_field(form: Mapping[str, Any], name: str, limit: int) -> str:
    value = form.get(name, "")
    return value[:limit] if isinstance(value, str) else ""
