"""Policy decisions in the request path: policies and tenant facts held in memory and refreshed
when their versions move, decisions cached per user, so a warm request runs no SQL."""

from __future__ import annotations

import asyncio
import bisect
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cachetools import LRUCache

from gateway.clock import Clock
from gateway.enforcement.policy_files import facts_by_org, stored_policies
from gateway.policy import (
    Decision,
    Enrolment,
    Facts,
    Policy,
    SessionState,
    Subject,
    applicable,
    decide,
)
from gateway.secondfactor.enrolment import enrolment_of
from gateway.signin.sessions import LiveSession
from gateway.store import Store

log = logging.getLogger(__name__)

# Every "Remind me later" counts against one total per user, whichever policy asked.
PROMPT_KEY = "mfa-prompt"
NO_FACTS = Facts(tenants=())


def boundaries(policies: Iterable[Policy]) -> list[float]:
    """The instants at which a decision may change by time alone (announce and deadline)."""
    points = set()
    for p in policies:
        points.add(p.announce.timestamp())
        # A user is blocked once now > deadline: the change is just after the deadline.
        points.add(p.deadline.timestamp() + 1e-6)
    return sorted(points)


class PolicyBook:
    """The policy set and tenant facts as the request path reads them.

    ``refresh`` costs two small queries and reloads only what moved; it runs on a timer and
    right after any in-process change, never per request.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self.policies: tuple[Policy, ...] = ()
        self.set_version = -1
        self.facts: dict[str, Facts] = {}
        self.facts_version = -1
        self.boundaries: list[float] = []
        self._lock = asyncio.Lock()

    async def refresh(self) -> bool:
        """Reload what changed in the store; returns whether anything did."""
        async with self._lock:
            changed = False
            set_version = await self._store.policies.set_version()
            if set_version != self.set_version:
                # The first load is strict: better not to start than to enforce less.
                first = self.set_version < 0
                self.policies = tuple(
                    await stored_policies(self._store, self.in_force(), strict=first)
                )
                self.boundaries = boundaries(self.policies)
                self.set_version = set_version
                changed = True
            facts_version = await self._store.tenants.facts_version()
            if facts_version != self.facts_version:
                self.facts = facts_by_org(await self._store.tenants.all())
                self.facts_version = facts_version
                changed = True
            return changed

    def in_force(self) -> dict[str, Policy]:
        """The policies enforced now, by id: what stands in for a stored one that breaks."""
        return {p.id: p for p in self.policies}

    def facts_for(self, org_id: str) -> Facts:
        return self.facts.get(org_id, NO_FACTS)

    def service_refresh_window(self, org_id: str, now: float) -> timedelta | None:
        """The strictest ``service_refresh_window`` of the policies in force for any role of
        the organisation at ``now``; None when none applies (then service keys never refresh)."""
        at = datetime.fromtimestamp(now, UTC)
        facts = self.facts_for(org_id)
        windows = [
            p.service_refresh_window
            for p in self.policies
            if any(
                applicable([p], Subject(user_id="", org_id=org_id, role=role), facts, at)
                for role in p.roles
            )
        ]
        return min(windows, default=None)

    def next_boundary(self, now: float) -> float:
        index = bisect.bisect_right(self.boundaries, now)
        return self.boundaries[index] if index < len(self.boundaries) else float("inf")


def valid_until(decision: Decision, book: PolicyBook, now: float) -> float:
    """Until when ``decision`` stays right if nothing but time moves: the next announce or
    deadline, and for a prompt also the moment its count of days left goes down by one."""
    until = book.next_boundary(now)
    if decision.days_left is not None and decision.deadline is not None:
        next_day = decision.deadline.timestamp() - (decision.days_left - 1) * 86400.0
        until = min(until, next_day)
    return until


@dataclass(frozen=True, slots=True)
class _Cached:
    decision: Decision
    valid_until: float


class Decider:
    """Decides for a signed-in user, from a cache keyed by everything the decision reads."""

    def __init__(self, book: PolicyBook, store: Store, clock: Clock, cache_size: int = 100_000):
        self._book = book
        self._store = store
        self._clock = clock
        self._cache: LRUCache[tuple[object, ...], _Cached] = LRUCache(maxsize=cache_size)
        self._dismissals: LRUCache[str, int] = LRUCache(maxsize=cache_size)
        self._enrolments: LRUCache[str, Enrolment] = LRUCache(maxsize=cache_size)
        self._dismissal_marks = 0
        self._forgotten = 0  # how often users' state was forgotten (see forget_users)

    @property
    def book(self) -> PolicyBook:
        return self._book

    async def dismissals(self, user_id: str) -> int:
        count = self._dismissals.get(user_id)
        if count is None:
            forgotten = self._forgotten
            count = await self._store.dismissals.count(user_id, PROMPT_KEY)
            # Not kept if a change was learnt while it was read: it may predate the change.
            if forgotten == self._forgotten:
                self._note(user_id, count)
        return count

    async def enrolment(self, user_id: str) -> Enrolment:
        """The user's second factors as a decision reads them (cached; no secrets)."""
        enrolment = self._enrolments.get(user_id)
        if enrolment is None:
            forgotten = self._forgotten
            enrolment = enrolment_of(await self._store.factors.kinds(user_id))
            if forgotten == self._forgotten:
                self.note_enrolment(user_id, enrolment)
        return enrolment

    def note_enrolment(self, user_id: str, enrolment: Enrolment) -> None:
        """The user's factors changed in this process (or were read): decide with these."""
        self._enrolments[user_id] = enrolment
        self._dismissal_marks += 1

    def forget_users(self, user_ids: Iterable[str]) -> None:
        """Forget what is held about these users' 2FA state (their dismissal counts and
        enrolments), because the store says it changed: their next decision reads it again."""
        forgot = False
        for user_id in user_ids:
            self._dismissals.pop(user_id, None)
            self._enrolments.pop(user_id, None)
            forgot = True
        if forgot:
            self._forgotten += 1
            # Remembered decisions may rest on what was forgotten: all are re-checked.
            self._dismissal_marks += 1

    def note_dismissals(self, user_id: str, count: int) -> None:
        self._note(user_id, count)

    def _note(self, user_id: str, count: int) -> None:
        self._dismissals[user_id] = count
        # Any session's remembered decision may rest on the old count: all are re-checked.
        self._dismissal_marks += 1

    def _basis(self, live: LiveSession) -> tuple[object, ...]:
        """Everything a session's decision is made from, besides the time."""
        book = self._book
        return (
            live.user,
            book.set_version,
            book.facts_version,
            self._dismissal_marks,
            live.prompt_dismissed,
            live.mfa_verified,
        )

    def remembered(self, live: LiveSession) -> Decision | None:
        """The session's last decision if nothing it was made from has moved (the warm path,
        answered without an await), else None: then ask :meth:`decide_for`."""
        memo = live.decided
        if memo is not None and self._clock() < memo[2] and memo[0] == self._basis(live):
            return memo[1]
        return None

    async def decide_for(self, live: LiveSession) -> Decision:
        decision = self.remembered(live)
        if decision is not None:
            return decision
        basis = self._basis(live)
        decision, valid = await self._decide_cached(live, self._clock())
        live.decided = (basis, decision, valid)
        return decision

    async def _decide_cached(self, live: LiveSession, now: float) -> tuple[Decision, float]:
        """The decision from the per-user cache (shared by a user's sessions), else made."""
        user = live.user
        book = self._book
        dismissals = await self.dismissals(user.id)
        enrolment = await self.enrolment(user.id)
        key = (
            user.id,
            enrolment,
            user.org_id,
            user.role,
            book.set_version,
            book.facts_version,
            dismissals,
            live.prompt_dismissed,
            live.mfa_verified,
        )
        hit = self._cache.get(key)
        if hit is not None and now < hit.valid_until:
            return hit.decision, hit.valid_until
        decision = self.decide_at(live, dismissals, enrolment, now)
        cached = _Cached(decision=decision, valid_until=valid_until(decision, book, now))
        self._cache[key] = cached
        return decision, cached.valid_until

    def decide_at(
        self, live: LiveSession, dismissals: int, enrolment: Enrolment, now: float
    ) -> Decision:
        user = live.user
        return decide(
            self._book.policies,
            Subject(user_id=user.id, org_id=user.org_id, role=user.role),
            enrolment,
            self._book.facts_for(user.org_id),
            SessionState(
                mfa_verified=live.mfa_verified,
                dismissed=live.prompt_dismissed,
                dismissals=dismissals,
            ),
            datetime.fromtimestamp(now, UTC),
        )
