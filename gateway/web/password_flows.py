"""What the password pages and the JSON API share: asking for a reset link (throttled, the same
answer and the same work whoever asks), setting a password with a link, and changing it while
signed in (with a fresh second factor where one is enrolled). Each is audited and emailed;
no token or password ever reaches the log or the audit trail."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
from collections.abc import Sequence

from aiohttp import web

from gateway.accounts.password_resets import (
    PasswordResets,
    ResetRefused,
    changed_message,
    reset_message,
)
from gateway.accounts.passwords import password_problem
from gateway.audit import (
    Event,
    PasswordChanged,
    PasswordChangeFailed,
    PasswordReset,
    PasswordResetRefused,
    PasswordResetRequested,
    PasswordResetSendFailed,
    PasswordResetSent,
    PasswordResetThrottled,
)
from gateway.http.csrf import csrf_token
from gateway.http.requests import CLIENT_ADDR
from gateway.mfa.destinations import masked_email
from gateway.services import SERVICES, Services
from gateway.signin.sessions import LiveSession, hash_session_id
from gateway.store.records import User
from gateway.throttle import ThrottleRule
from gateway.web.gate import VERIFY_PATH, with_next
from gateway.web.pages import book_attempts

log = logging.getLogger(__name__)

FORGOT_PATH = "/_gateway/password/forgot"
RESET_PATH = "/_gateway/password/reset"
CHANGE_PATH = "/_gateway/password/change"
STEP_UP_MAX_AGE = 300  # seconds: a change needs a second factor no older than this
FORGOT_ANSWER = (
    "If an account uses that address, we have emailed it a link to choose a new password."
    " The link works for 15 minutes."
)
# Asking for links: per address typed (the owner's inbox), and per client address.
RESET_WINDOW = 900.0
ADDRESS_RULE = ThrottleRule(max_failures=3, window=RESET_WINDOW, lockout=RESET_WINDOW)
CLIENT_RULE = ThrottleRule(max_failures=10, window=RESET_WINDOW, lockout=RESET_WINDOW)
RESET_THROTTLE_PREFIX = "reset:"
# Wrong current passwords on the change form, per user (locking, as the user's own browsers).
CHANGE_THROTTLE_PREFIX = "password:"


def resets_for(services: Services) -> PasswordResets:
    return PasswordResets(services.store, services.keys.password_resets)


def step_up_url(next_target: str = CHANGE_PATH) -> str:
    return f"{with_next(VERIFY_PATH, next_target)}&max_age={STEP_UP_MAX_AGE}"


def link_base(request: web.Request, services: Services) -> str:
    """Where links in emails point: ``[server] public_url``, else the first allowed host, else
    the address this connection reached. Never the request's Host, which the client chooses
    (a reset link sent to an attacker's host would hand them the token)."""
    server = services.config.server
    if server.public_url:
        return server.public_url.rstrip("/")
    scheme = "https" if services.config.security.cookie_secure else "http"
    if server.allowed_hosts:
        return f"{scheme}://{server.allowed_hosts[0]}"
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    host, port = (sockname[0], sockname[1]) if sockname else ("127.0.0.1", server.port)
    return f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}"


async def _audit(request: web.Request, event: Event, actor: str | None = None) -> None:
    services = request.app[SERVICES]
    await services.store.audit.record(
        event,
        at=services.clock(),
        actor=actor,
        client_addr=request[CLIENT_ADDR],
    )


def _notify(services: Services, user: User, *, by_reset: bool) -> None:
    """Tell the user by email, after the answer; a failed notice is logged."""

    async def send() -> None:
        failure = await services.sending.send_email(changed_message(user.email, by_reset=by_reset))
        if failure is not None:
            log.warning(
                "password notice not sent", extra={"to": masked_email(user.email), "why": failure}
            )

    services.sending.in_background(send())


# Forgot password


async def request_reset(request: web.Request, email: str) -> float:
    """Ask for a reset link for ``email`` (trimmed, lower-cased): 0 when asked (the link, if
    the address has an account, is made and sent after the answer, so known and unknown
    addresses take the same time), else the seconds to wait."""
    services = request.app[SERVICES]
    client = request[CLIENT_ADDR]
    typed = services.keys.names.sign(email.encode("utf-8", "surrogatepass"))[:32]
    throttles = (
        (f"{RESET_THROTTLE_PREFIX}client:{client}", CLIENT_RULE),
        (f"{RESET_THROTTLE_PREFIX}address:{typed}", ADDRESS_RULE),
    )
    wait = await book_attempts(services, throttles, services.clock())
    if wait > 0:
        await _audit(request, PasswordResetThrottled(typed=typed))
        return wait
    services.sending.in_background(
        _send_link(services, email, typed, link_base(request, services), client)
    )
    return 0.0


async def _send_link(services: Services, email: str, typed: str, base: str, client: str) -> None:
    try:
        user = await services.store.users.find_by_email(email)
        account = user if user is not None and not user.disabled else None
        await services.store.audit.record(
            PasswordResetRequested(account_id=account.id if account else None, typed=typed),
            at=services.clock(),
            client_addr=client,
        )
        if account is None:
            return
        resets = resets_for(services)
        issued = await resets.issue(account.id, now=services.clock())
        url = f"{base}{RESET_PATH}?token={issued.token}"
        failure = await services.sending.send_email(
            reset_message(account.email, url, resets.lifetime)
        )
        to = masked_email(account.email)
        event: PasswordResetSent | PasswordResetSendFailed
        if failure is None:
            event = PasswordResetSent(user_id=account.id, org_id=account.org_id, to=to)
        else:
            log.warning("reset link not sent", extra={"to": to, "why": failure})
            await resets.retire(issued.token, now=services.clock())
            event = PasswordResetSendFailed(
                user_id=account.id, org_id=account.org_id, to=to, reason=failure
            )
        await services.store.audit.record(
            event, at=services.clock(), actor=account.id, client_addr=client
        )
    except Exception:  # after the answer: nobody to tell but the log
        log.exception("a password reset link could not be made")


# Reset with a link


@dataclasses.dataclass(frozen=True, kw_only=True)
class Refusal:
    """Why a reset or a change was refused: ``reason`` for code, ``message`` for the user,
    ``wait`` seconds when throttled."""

    reason: str
    message: str
    wait: float = 0.0


def new_password_refusal(password: str, confirm: str | None = None) -> Refusal | None:
    problem = password_problem(password)
    if problem is not None:
        return Refusal(reason="weak-password", message=f"The new password {problem}.")
    if confirm is not None and not secrets.compare_digest(
        password.encode("utf-8", "surrogatepass"), confirm.encode("utf-8", "surrogatepass")
    ):
        return Refusal(reason="mismatch", message="The two new passwords differ.")
    return None


async def refused_link(request: web.Request, refused: ResetRefused) -> Refusal:
    await _audit(request, PasswordResetRefused(user_id=refused.user_id, reason=refused.reason))
    return Refusal(reason=f"link-{refused.reason}", message=refused.message)


async def reset_password(
    request: web.Request, token: str, password: str, confirm: str | None = None
) -> Refusal | None:
    """Set the password with the link ``token``; None when done. Every session of the user
    ends (in every process), and none is made: the next sign-in asks for the second factor."""
    services = request.app[SERVICES]
    resets = resets_for(services)
    try:
        link = await resets.check(token, now=services.clock())
    except ResetRefused as refused:
        return await refused_link(request, refused)
    refusal = new_password_refusal(password, confirm)
    if refusal is not None:
        return refusal
    password_hash = await asyncio.to_thread(services.passwords.hash, password)
    try:
        done = await resets.reset(token, password_hash, now=services.clock())
    except ResetRefused as refused:
        return await refused_link(request, refused)
    user = await services.store.users.get(link.user_id)
    await _drop_cached(services, done.ended)
    await _audit(
        request,
        PasswordReset(user_id=user.id, org_id=user.org_id, sessions_ended=len(done.ended)),
        actor=user.id,
    )
    _notify(services, user, by_reset=True)
    return None


async def _drop_cached(services: Services, ended: Sequence[str]) -> None:
    """Let this process forget the ended sessions now (others do within their poll); they
    ended in the store already, so nothing is written again."""
    for id_hash in ended:
        await services.sessions.end(id_hash)


def reset_csrf(services: Services, token_hash: str) -> str:
    """The reset form's token, bound to the link (there is no session)."""
    return csrf_token(services.keys.csrf, token_hash, "password-reset")


# Change while signed in


def needs_step_up(services: Services, live: LiveSession, enrolled: bool) -> bool:
    """Whether a change must first pass a second factor (as the verify page judges it)."""
    checked = live.second_factor
    fresh = checked is not None and checked.fresh(STEP_UP_MAX_AGE, services.clock())
    return enrolled and not fresh


@dataclasses.dataclass(frozen=True, kw_only=True)
class Changed:
    """A change done: this session's new raw id (for the cookie) and its CSRF token."""

    raw_id: str
    csrf: str


async def change_password(
    request: web.Request, live: LiveSession, current: str, password: str, confirm: str | None
) -> Changed | Refusal:
    """Change the signed-in user's password (the caller checked the step-up): the current one
    must be right (attempts throttled as the user's own sign-ins are), every other session of
    the user ends and this one gets a new id."""
    services = request.app[SERVICES]
    refusal = new_password_refusal(password, confirm)
    if refusal is not None:
        return refusal
    user = await services.store.users.get(live.user.id)
    key = f"{CHANGE_THROTTLE_PREFIX}change:{user.id}"
    rule = services.account_throttle.locking()
    wait = await book_attempts(services, ((key, rule),), services.clock())
    if wait > 0:
        await _audit(
            request,
            PasswordChangeFailed(user_id=user.id, org_id=user.org_id, reason="throttled"),
            actor=user.id,
        )
        return Refusal(
            reason="too-many-attempts",
            message="Too many wrong passwords. Try again later.",
            wait=wait,
        )
    if not await services.passwords.verify(user.password_hash, current):
        await _audit(
            request,
            PasswordChangeFailed(user_id=user.id, org_id=user.org_id, reason="wrong-password"),
            actor=user.id,
        )
        return Refusal(reason="wrong-password", message="Your current password is not right.")
    await services.store.throttle.clear(key)
    password_hash = await asyncio.to_thread(services.passwords.hash, password)
    now = services.clock()
    raw_id = secrets.token_urlsafe(32)
    successor = dataclasses.replace(
        live.record,
        id_hash=hash_session_id(raw_id),
        csrf_secret=secrets.token_urlsafe(32),
        last_seen_at=now,
    )
    ended = await services.store.passwords.change(
        user_id=user.id,
        password_hash=password_hash,
        now=now,
        session_hash=live.id_hash,
        successor=successor,
    )
    if ended is None:
        return Refusal(reason="session-over", message="Your session is over. Sign in again.")
    await _drop_cached(services, ended)  # this session's old id among them
    await _audit(
        request,
        PasswordChanged(user_id=user.id, org_id=user.org_id, sessions_ended=len(ended) - 1),
        actor=user.id,
    )
    _notify(services, user, by_reset=False)
    return Changed(raw_id=raw_id, csrf=csrf_token(services.keys.csrf, successor.csrf_secret))
