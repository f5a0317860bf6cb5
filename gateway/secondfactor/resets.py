"""Resetting a user's 2FA: by their principal (the team page and its JSON twin, after a fresh
second factor) or by support (the CLI and the admin API, with who checked the person's
identity). One reset for all of them: the store removes everything in one transaction, every
process forgets the user's sessions and enrolment through the change feeds, and the user is
emailed."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from gateway.audit import MfaReset
from gateway.clock import Clock
from gateway.delivery.sender import DeliveryError, Message, Sender
from gateway.store import Store
from gateway.store.factors import ResetCounts
from gateway.store.records import AuditEntry, SecondFactor, User

log = logging.getLogger(__name__)

# How recent the principal's own second-factor check must be for a team reset.
STEP_UP_SECONDS = 300
MAX_SUPPORT_TEXT = 500  # --verified-by and --reason, each


class ResetRefused(Exception):
    """A reset that may not be done; nothing was changed. ``slug`` and ``status`` for the
    problem, ``message`` for the person who asked."""

    def __init__(self, slug: str, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.slug, self.status, self.title, self.message = slug, status, title, message


def not_a_principal() -> ResetRefused:
    return ResetRefused(
        "not-a-principal",
        403,
        "Only principals manage the team",
        "Only a principal of your organisation can see the team's two-factor set-up and"
        " reset it. Ask your principal if you have lost your phone.",
    )


def own_mfa_required() -> ResetRefused:
    return ResetRefused(
        "own-mfa-required",
        403,
        "Set up your own 2FA first",
        "Set up two-factor authentication for your own account first: only a principal whose"
        " own 2FA is set up can reset a team member's.",
    )


def no_such_member(user_id: str) -> ResetRefused:
    return ResetRefused(
        "member-not-found",
        404,
        "No such member",
        f"No member of your organisation has the id {user_id[:64]!r}.",
    )


def team_refusal(principal: User, principal_enrolled: bool) -> ResetRefused | None:
    """Why ``principal`` may not see the team page or reset anyone, or None."""
    if principal.role != "principal":
        return not_a_principal()
    if not principal_enrolled:
        return own_mfa_required()
    return None


def member_refusal(principal: User, target: User | None, user_id: str) -> ResetRefused | None:
    """Why ``principal`` may not reset ``target`` (the user ``user_id`` names, None if
    unknown), or None. A user of another organisation is not told apart from an unknown id."""
    if target is None or target.org_id != principal.org_id:
        return no_such_member(user_id)
    if target.role == "principal":
        return ResetRefused(
            "principal-reset-by-support",
            403,
            "A principal's 2FA is reset by support",
            "A principal's two-factor set-up (yours included) can only be reset by support,"
            " who check the person's identity first.",
        )
    if target.disabled:
        return ResetRefused(
            "member-disabled",
            409,
            "This member is disabled",
            "This member's account is disabled: they cannot sign in, so there is nothing to"
            " reset. Enable the account first if they need it again.",
        )
    return None


def fresh_enough(checked: SecondFactor | None, now: float) -> bool:
    """Whether the session's last second-factor check is recent enough for a reset."""
    return checked is not None and checked.fresh(STEP_UP_SECONDS, now)


def support_problems(verified_by: str, reason: str) -> list[str]:
    """What is wrong with a support reset's record (both are required, printable, short)."""
    problems = []
    for name, value in (("verified_by", verified_by), ("reason", reason)):
        if not value.strip():
            problems.append(f"{name}: required (say who checked the identity, and how / why)")
        elif len(value) > MAX_SUPPORT_TEXT or not value.isprintable():
            problems.append(f"{name}: at most {MAX_SUPPORT_TEXT} printable characters")
    return problems


@dataclass(frozen=True, kw_only=True)
class ResetHow:
    """Who asks for a reset, and how: ``via`` is ``team``, ``support-cli``,
    ``support-api`` or ``support-console``; ``by`` names the asker in the audit trail and the
    email."""

    via: str
    by: str
    actor: str  # the audit trail's actor
    client_addr: str | None = None
    reason: str | None = None
    verified_by: str | None = None
    checked_by: str | None = None  # team: the principal's fresh second factor (its method)


@dataclass(frozen=True, kw_only=True)
class ResetDone:
    user: User
    counts: ResetCounts
    at: float
    emailed: bool


def reset_notice(user: User, how: ResetHow, at: float) -> Message:
    """The email telling ``user`` their 2FA was reset: who did it and what happens next; no
    secret, no link to follow."""
    when = dt.datetime.fromtimestamp(at, dt.UTC).strftime("%d %B %Y at %H:%M UTC")
    who = "your organisation's principal" if how.via == "team" else "our support team"
    body = (
        f"Hello {user.display_name},\n\n"
        f"Two-factor authentication for your account ({user.email}) was reset by {who} on"
        f" {when}.\n\n"
        "Your authenticator app, phone and backup method, your recovery codes and every"
        " remembered device no longer work, and you have been signed out everywhere. The next"
        " time you sign in you will be asked to set up two-factor authentication again.\n\n"
        "If you did not ask for this, tell your principal or our support team straight away.\n"
    )
    return Message(to=user.email, subject="Your two-factor authentication was reset", body=body)


class Resets:
    """Does the reset; the callers check who may ask (``team_refusal``, ``member_refusal``,
    ``fresh_enough``, ``support_problems``) first."""

    def __init__(self, store: Store, clock: Clock, email: Sender | None) -> None:
        self._store = store
        self._clock = clock
        self._email = email

    async def reset(self, user: User, how: ResetHow) -> ResetDone:
        """Reset ``user``'s 2FA and email them; ResetUserGone (nothing changed) if the user is
        unknown or disabled by the time it runs. A failed email is logged: the reset stands."""
        now = self._clock()

        def event(counts: ResetCounts) -> MfaReset:
            return MfaReset(
                user_id=user.id,
                org_id=user.org_id,
                via=how.via,
                by=how.by,
                reason=how.reason,
                verified_by=how.verified_by,
                checked_by=how.checked_by,
                factors=counts.factors,
                recovery_codes=counts.recovery_codes,
                devices=counts.devices,
                sessions=counts.sessions,
            )

        entry = AuditEntry(actor=how.actor, client_addr=how.client_addr)
        counts = await self._store.factors.reset(user.id, now=now, entry=entry, event=event)
        log.info("2fa reset", extra={"user_id": user.id, "via": how.via})
        return ResetDone(user=user, counts=counts, at=now, emailed=await self._tell(user, how, now))

    async def _tell(self, user: User, how: ResetHow, at: float) -> bool:
        if self._email is None:
            log.warning("no email is set up: user %s was not told of their 2FA reset", user.id)
            return False
        try:
            await self._email.send(reset_notice(user, how, at))
        except DeliveryError as exc:
            log.warning("could not email user %s about their 2FA reset: %s", user.id, exc)
            return False
        return True
