"""A round of reminders: read the state, ask the pure rules what is due, claim each in the store
(so that of several gateway processes on one database only one sends it), send, record.

A failed send is tried again after a wait that doubles each time (15 minutes, then 30...,
at most 6 hours), and given up after five tries; every failure is audited. A reminder
superseded meanwhile by a later point (or a summary by a new week) is not tried again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from gateway.audit import ReminderFailed, ReminderSent
from gateway.clock import Clock
from gateway.delivery.sender import DeliveryError, Message, Sender
from gateway.enforcement.policy_files import facts_by_org, stored_policies
from gateway.errors import StoreError
from gateway.mfa.destinations import masked_email
from gateway.policy import Policy
from gateway.reminders.due import Recipient, ReminderDue, State, SummaryDue
from gateway.reminders.due import due as all_due
from gateway.reminders.emails import reminder_message, summary_message
from gateway.store import Store
from gateway.store.reminders import Claim, ClaimKey

INTERVAL_SECONDS = 15 * 60.0  # how often a running gateway looks for reminders due
FIRST_RETRY_SECONDS = 15 * 60.0
LONGEST_RETRY_SECONDS = 6 * 3600.0
MAX_ATTEMPTS = 5

log = logging.getLogger(__name__)


def retry_delay(attempts: int) -> float | None:
    """Seconds to wait after ``attempts`` failed tries before the next; None: give up."""
    if attempts >= MAX_ATTEMPTS:
        return None
    return min(FIRST_RETRY_SECONDS * float(2 ** (attempts - 1)), LONGEST_RETRY_SECONDS)


@dataclass(frozen=True, kw_only=True)
class Planned:
    """One email a round would send (a dry run) or tried to send, and what became of it."""

    kind: Literal["reminder", "summary"]
    message: Message
    retry: bool
    outcome: Literal["due", "sent", "failed", "taken"]  # taken: another process claimed it


@dataclass(frozen=True, kw_only=True)
class RoundReport:
    planned: tuple[Planned, ...]

    def count(self, outcome: str) -> int:
        return sum(1 for p in self.planned if p.outcome == outcome)


Due = ReminderDue | SummaryDue


class Reminders:
    """Rounds of reminders from the store's policies, users and claims, sent by ``email``."""

    def __init__(
        self,
        *,
        store: Store,
        email: Sender | None,
        clock: Clock,
        base_url: str = "",
        in_force: Callable[[], Mapping[str, Policy]] | None = None,
    ) -> None:
        """``in_force``: a running gateway's policies, standing in for a stored one that no
        longer parses (as its enforcement does); without it such a policy is left out."""
        self._store, self._email, self._clock, self._base_url = store, email, clock, base_url
        self._in_force = in_force
        self._warned = False

    async def due(self) -> tuple[list[Due], dict[ClaimKey, Claim]]:
        """What is due now, and the claims it was judged against."""
        store = self._store
        now = datetime.fromtimestamp(self._clock(), UTC)
        policies = await stored_policies(store, self._in_force() if self._in_force else None)
        facts = facts_by_org(await store.tenants.all())
        enrolled = await store.factors.enrolled_user_ids()
        users = [
            Recipient(
                user_id=u.id,
                org_id=u.org_id,
                role=u.role,
                email=u.email,
                name=u.display_name,
                enrolled=u.id in enrolled,
            )
            for u in await store.users.list()
            if not u.disabled
        ]
        claims = {c.key: c for c in await store.reminders.all()}
        state = State(policies=policies, users=users, facts=facts, claims=claims)
        return all_due(state, now), claims

    def message(self, due: Due) -> Message:
        if isinstance(due, ReminderDue):
            return reminder_message(due, base_url=self._base_url)
        return summary_message(due, base_url=self._base_url)

    async def run(self, *, dry_run: bool = False) -> RoundReport:
        """One round: send what is due (or, with ``dry_run``, only say what would be sent)."""
        found, claims = await self.due()
        if dry_run:
            return RoundReport(planned=tuple(self._planned(d, "due") for d in found))
        if self._email is None:
            if found and not self._warned:
                log.warning("reminders are due but no email delivery is set up ([email])")
                self._warned = True  # once, not every round
            return RoundReport(planned=())
        done = [await self._send(d, self._email, claims) for d in found]
        return RoundReport(planned=tuple(done))

    async def run_forever(
        self,
        *,
        interval: float = INTERVAL_SECONDS,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """A round every ``interval`` seconds, the first one interval from now (so a starting
        gateway is not slowed; a point that came meanwhile is sent late, not missed)."""
        while True:
            await sleep(interval)
            try:
                await self.run()
            except StoreError:
                log.exception("the reminder round could not read or write the store; will retry")
            except Exception:
                # One bad round must not end reminders until the next restart.
                log.exception("the reminder round failed; will retry")

    def _planned(self, due: Due, outcome: Literal["due", "sent", "failed", "taken"]) -> Planned:
        return Planned(
            kind=due.key.kind, message=self.message(due), retry=due.retry, outcome=outcome
        )

    async def _send(self, due: Due, email: Sender, claims: dict[ClaimKey, Claim]) -> Planned:
        store, key, now = self._store, due.key, self._clock()
        claimed = await (store.reminders.reclaim if due.retry else store.reminders.claim)(key, now)
        if not claimed:
            return self._planned(due, "taken")
        attempts = claims[key].attempts + 1 if due.retry else 1
        message = self.message(due)
        who = due.recipient
        what: dict[str, Any] = {
            "user_id": who.user_id,
            "org_id": who.org_id,
            "reminder": key.kind,
            "policy_id": key.policy_id,
            "point": key.point,
            "attempts": attempts,
        }
        try:
            try:
                await email.send(message)
            except DeliveryError:
                raise
            except Exception as exc:
                # Whatever else went wrong, the claim is settled and tried again later; its
                # message could carry anything, so only its kind is kept.
                raise DeliveryError(f"the send failed ({type(exc).__name__})") from exc
        except DeliveryError as exc:
            delay = retry_delay(attempts)
            retry_at = now + delay if delay is not None else None
            failed = ReminderFailed(**what, retry_at=retry_at, reason=str(exc))
            status: Literal["failed", "abandoned"] = "failed" if delay is not None else "abandoned"
            await store.reminders.settle(key, status, failed, now=self._clock(), retry_at=retry_at)
            log.warning(
                "reminder not sent",
                extra={"to": masked_email(who.email), "kind": key.kind, "attempts": attempts},
            )
            return self._planned(due, "failed")
        sent = ReminderSent(**what, to=masked_email(who.email))
        await store.reminders.settle(key, "sent", sent, now=self._clock(), retry_at=None)
        return self._planned(due, "sent")


def describe(report: RoundReport) -> Sequence[str]:
    """One line per email of a round, for the CLI."""
    return [
        f"{p.outcome:<7} {p.kind:<8} {p.message.to:<32} {p.message.subject}"
        + (" (retry)" if p.retry else "")
        for p in report.planned
    ]
