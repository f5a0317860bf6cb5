"""The rate governor: starts each call to Xero within its tenant's and the app's limits, in
arrival order, so callers wait (up to their deadline) rather than meet Xero's 429.

Per tenant at most ``Limits.in_flight`` calls at once, ``per_minute`` in any minute and the
tier's budget in any day; for the app ``app_per_minute``. A call that cannot start at once
waits in its tenant's queue (first come, first served; bounded). A call that could not start
before its deadline, or finds the queue full, is refused at once with the time to try again.
Xero's answers are fed back (``observe``): its 429 blocks the tenant (or the app) for its
``Retry-After``, and its ``X-*Limit-Remaining`` headers raise the counts to what Xero saw.

Time comes from the injected clock and every wait goes through the injected ``sleep``, so
tests move a manual clock instead of sleeping.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Protocol

from gateway.clock import Clock
from gateway.config import XeroProxyConfig
from gateway.xero.limits import (
    APP_GRANULARITY,
    DAY,
    DAY_GRANULARITY,
    MINUTE,
    MINUTE_GRANULARITY,
    Counts,
    Limits,
    RollingCount,
    daily_limit,
    may_start,
    start_times,
)
from gateway.xero.rate_headers import Block, block_of, remaining_counts, used_of
from gateway.xero.tokens import XeroError

Sleeper = Callable[[float], Awaitable[None]]

# Why a call was refused (the label of the refusals metric).
REASONS = ("queue_full", "deadline", "closed")


class RateLimitedError(XeroError):
    """The call may not go to Xero now: the listener answers 429 ``…/rate-limited`` with
    ``Retry-After: retry_after_header``. ``reason`` is one of ``REASONS``."""

    def __init__(self, message: str, *, retry_after: float, reason: str) -> None:
        super().__init__(message)
        self.retry_after = max(retry_after, 0.0)
        self.reason = reason

    @property
    def retry_after_header(self) -> str:
        """``retry_after`` as a Retry-After value: whole seconds, rounded up, at least 1."""
        return str(max(1, math.ceil(self.retry_after)))


class GovernorMetrics(Protocol):
    """What the governor reports (``gateway.ops.metrics.Metrics`` implements it)."""

    def watch_xero_load(self, load: Callable[[], Iterable[tuple[str, int, int]]]) -> None: ...

    def xero_waited(self, seconds: float) -> None: ...

    def xero_refused(self, tenant_id: str, reason: str) -> None: ...

    def xero_rate_limited(self, tenant_id: str, problem: str) -> None: ...


class _NoMetrics:
    def watch_xero_load(self, load: Callable[[], Iterable[tuple[str, int, int]]]) -> None:
        pass

    def xero_waited(self, seconds: float) -> None:
        pass

    def xero_refused(self, tenant_id: str, reason: str) -> None:
        pass

    def xero_rate_limited(self, tenant_id: str, problem: str) -> None:
        pass


@dataclass(frozen=True, kw_only=True)
class GovernorSettings:
    """The limits, each tenant's tier (``tenant_tiers`` over ``default_tier``), the queue
    bound per tenant, and the longest ``Retry-After`` honoured."""

    limits: Limits = field(default_factory=Limits)
    default_tier: str = "standard"
    tenant_tiers: Mapping[str, str] = field(default_factory=dict)
    queue_size: int = 100
    retry_after_cap: float = 600.0

    def __post_init__(self) -> None:
        for tier in (self.default_tier, *self.tenant_tiers.values()):
            daily_limit(tier)  # ValueError for an unknown tier
        if self.queue_size < 0 or self.retry_after_cap <= 0:
            raise ValueError(f"invalid governor settings: {self!r}")

    @classmethod
    def from_config(cls, config: XeroProxyConfig) -> GovernorSettings:
        tiers: dict[str, str] = {}
        for item in config.tenant_tiers:
            tenant, _, tier = item.partition("=")
            tiers[tenant.strip()] = tier.strip()
        return cls(
            default_tier=config.default_tier,
            tenant_tiers=tiers,
            queue_size=config.queue_size,
            retry_after_cap=config.retry_after_cap,
        )

    def tier_of(self, tenant_id: str) -> str:
        return self.tenant_tiers.get(tenant_id, self.default_tier)


@dataclass(frozen=True, kw_only=True)
class Budget:
    """One tenant's rate budget at a moment: what is left this minute and day (as the governor
    counts it, corrected by Xero's headers), the app's minute, calls in flight and queued, and
    the end of a block a 429 asked for (None when there is none)."""

    tenant_id: str
    tier: str
    minute_remaining: int
    day_remaining: int
    app_minute_remaining: int
    in_flight: int
    queued: int
    blocked_until: float | None
    started: int = 0  # calls this governor admitted for the tenant since it began


class Permit:
    """One call admitted to Xero: release it once Xero's answer is done with (releasing twice
    does nothing)."""

    __slots__ = ("_governor", "_released", "_tenant", "waited")

    def __init__(self, governor: Governor, tenant: _Tenant, waited: float) -> None:
        self._governor = governor
        self._tenant = tenant
        self._released = False
        self.waited = waited  # seconds the call waited before it was admitted

    @property
    def tenant_id(self) -> str:
        return self._tenant.tenant_id

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._governor._finish(self._tenant)


class _Waiter:
    __slots__ = ("deadline", "future", "queued", "queued_at", "seq")

    def __init__(self, future: asyncio.Future[Permit], deadline: float, seq: int, now: float):
        self.future = future
        self.deadline = deadline
        self.seq = seq
        self.queued_at = now
        self.queued = True


class _Tenant:
    __slots__ = (
        "blocked_until",
        "counts",
        "day",
        "in_flight",
        "minute",
        "per_day",
        "queue",
        "started",
        "tenant_id",
    )

    def __init__(self, tenant_id: str, per_day: int) -> None:
        self.tenant_id = tenant_id
        self.per_day = per_day
        self.in_flight = 0
        self.started = 0
        self.minute = RollingCount(MINUTE, MINUTE_GRANULARITY)
        self.day = RollingCount(DAY, DAY_GRANULARITY)
        self.blocked_until = 0.0
        self.queue: deque[_Waiter] = deque()
        self.counts: Counts | None = None  # the last one made (the windows are shared)


class Governor:
    """Admits calls to Xero per tenant; see the module's docstring."""

    def __init__(
        self,
        settings: GovernorSettings,
        *,
        clock: Clock,
        sleep: Sleeper = asyncio.sleep,
        metrics: GovernorMetrics | None = None,
    ) -> None:
        self._settings = settings
        self._limits = settings.limits
        self._clock = clock
        self._sleep = sleep
        self._metrics: GovernorMetrics = metrics if metrics is not None else _NoMetrics()
        self._metrics.watch_xero_load(self.loads)
        self._tenants: dict[str, _Tenant] = {}
        self._waiting: dict[str, _Tenant] = {}  # tenants with a queue
        # A heap of every waiter's deadline; a waiter that left the queue is dropped from it
        # when it comes to the top, or when such leftovers outnumber the waiters.
        self._deadlines: list[tuple[float, int, _Waiter, _Tenant]] = []
        self._queued = 0
        self._app = RollingCount(MINUTE, APP_GRANULARITY)
        self._app_blocked_until = 0.0
        self._seq = itertools.count()
        self._timer: asyncio.Task[None] | None = None
        self._timer_at = math.inf
        self._closed = False

    # -- admission ---------------------------------------------------------------------------

    async def admit(self, tenant_id: str, *, deadline: float) -> Permit:
        """Wait until a call for the tenant may go to Xero, and count it as started.

        Raises ``RateLimitedError`` at once when the queue is full or the call could not
        start by ``deadline`` (absolute, by the governor's clock), or at the deadline if it
        is still waiting then. Cancelled while waiting, it takes nothing.
        """
        permit = self.admit_now(tenant_id)
        if permit is not None:
            return permit
        tenant = self._tenants[tenant_id]
        if self._closed:
            raise self._refuse(tenant, "closed", 1.0)
        now = self._clock()
        ahead = len(tenant.queue)
        expected = self._start_times(tenant, ahead + 1, now)[-1]
        if ahead >= self._settings.queue_size:
            raise self._refuse(tenant, "queue_full", expected - now)
        if expected > deadline:
            raise self._refuse(tenant, "deadline", expected - now)
        future: asyncio.Future[Permit] = asyncio.get_running_loop().create_future()
        waiter = _Waiter(future, deadline, next(self._seq), now)
        tenant.queue.append(waiter)
        self._queued += 1
        self._waiting[tenant_id] = tenant
        heapq.heappush(self._deadlines, (deadline, waiter.seq, waiter, tenant))
        self._schedule(now)
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled() and future.exception() is None:
                future.result().release()  # admitted as the caller was cancelled
            elif waiter.queued:
                self._dequeue(tenant, waiter)
                self._schedule(self._clock())
            raise

    @asynccontextmanager
    async def slot(self, tenant_id: str, *, deadline: float) -> AsyncIterator[Permit]:
        """``admit``, with the permit released when the block ends, however it ends."""
        permit = await self.admit(tenant_id, deadline=deadline)
        try:
            yield permit
        finally:
            permit.release()

    def admit_now(self, tenant_id: str) -> Permit | None:
        """``admit`` for a call that need not wait: its permit, or None when it would have to
        (call ``admit`` then). No coroutine: the common case on the hot path."""
        tenant = self._tenant(tenant_id)
        if tenant.queue or self._closed:
            return None
        now = self._clock()
        if not self._may_start(tenant, now):
            return None
        return self._start(tenant, now, waited=0.0)

    def observe(self, tenant_id: str, status: int, headers: Mapping[str, str]) -> Block | None:
        """Take in Xero's answer to a call of the tenant: its remaining counts raise the
        governor's (never lower them), and a 429 blocks the tenant, or the app, for its capped
        ``Retry-After``; waiters the block would keep past their deadline are refused now.
        Returns the block, if any."""
        now = self._clock()
        tenant = self._tenant(tenant_id)
        day, minute, app = remaining_counts(headers)
        tightened = False
        if minute is not None:
            tightened |= _tighten(tenant.minute, self._limits.per_minute, minute, now)
        if day is not None:
            tightened |= _tighten(tenant.day, tenant.per_day, day, now)
        if app is not None:
            tightened |= _tighten(self._app, self._limits.app_per_minute, app, now)
        block = block_of(status, headers, now=now, retry_after_cap=self._settings.retry_after_cap)
        if block is not None:
            self._metrics.xero_rate_limited(tenant_id, block.problem)
            if block.app_wide:
                self._app_blocked_until = max(self._app_blocked_until, block.until)
            else:
                tenant.blocked_until = max(tenant.blocked_until, block.until)
        if tightened or block is not None:
            self._refuse_late(now)
            self._schedule(now)
        return block

    # -- read-outs ---------------------------------------------------------------------------

    def budget(self, tenant_id: str) -> Budget:
        """The tenant's budget now (a tenant never seen has its whole budget)."""
        now = self._clock()
        tenant = self._tenants.get(tenant_id) or self._new_tenant(tenant_id)
        blocked = max(tenant.blocked_until, self._app_blocked_until)
        return Budget(
            tenant_id=tenant_id,
            tier=self._settings.tier_of(tenant_id),
            minute_remaining=max(0, self._limits.per_minute - tenant.minute.used(now)),
            day_remaining=max(0, tenant.per_day - tenant.day.used(now)),
            app_minute_remaining=max(0, self._limits.app_per_minute - self._app.used(now)),
            in_flight=tenant.in_flight,
            queued=len(tenant.queue),
            blocked_until=blocked if blocked > now else None,
            started=tenant.started,
        )

    def loads(self) -> list[tuple[str, int, int]]:
        """(tenant id, calls in flight, calls waiting) of every tenant met, in the order met."""
        return [(t.tenant_id, t.in_flight, len(t.queue)) for t in self._tenants.values()]

    def budgets(self) -> list[Budget]:
        """The budget of every tenant the governor has counted a call for, by tenant id."""
        return [self.budget(tenant_id) for tenant_id in sorted(self._tenants)]

    async def close(self) -> None:
        """Refuse every waiting call and stop the timer (on shutdown)."""
        self._closed = True
        for tenant in list(self._waiting.values()):
            while tenant.queue:
                self._expire(tenant, tenant.queue[0], "closed", 1.0)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # -- the machinery -----------------------------------------------------------------------

    def _new_tenant(self, tenant_id: str) -> _Tenant:
        return _Tenant(tenant_id, daily_limit(self._settings.tier_of(tenant_id)))

    def _tenant(self, tenant_id: str) -> _Tenant:
        tenant = self._tenants.get(tenant_id)
        if tenant is None:
            tenant = self._tenants[tenant_id] = self._new_tenant(tenant_id)
        return tenant

    def _counts(self, tenant: _Tenant) -> Counts:
        # The windows are the tenant's own objects, so a Counts stays true until a block
        # changes: made again only then, not on every call.
        blocked_until = max(tenant.blocked_until, self._app_blocked_until)
        counts = tenant.counts
        if counts is None or counts.blocked_until != blocked_until:
            counts = tenant.counts = Counts(
                limits=self._limits,
                per_day=tenant.per_day,
                minute=tenant.minute,
                day=tenant.day,
                app=self._app,
                blocked_until=blocked_until,
            )
        return counts

    def _may_start(self, tenant: _Tenant, now: float) -> bool:
        return may_start(self._counts(tenant), in_flight=tenant.in_flight, now=now)

    def _start_times(self, tenant: _Tenant, n: int, now: float) -> list[float]:
        return start_times(self._counts(tenant), n=n, now=now)

    def _start(self, tenant: _Tenant, now: float, *, waited: float) -> Permit:
        tenant.in_flight += 1
        tenant.started += 1
        tenant.minute.add(now)
        tenant.day.add(now)
        self._app.add(now)
        self._metrics.xero_waited(waited)
        return Permit(self, tenant, waited)

    def _finish(self, tenant: _Tenant) -> None:
        tenant.in_flight -= 1
        if self._waiting or self._deadlines:  # else no call waits for the place it leaves
            self._dispatch()

    def _refuse(self, tenant: _Tenant, reason: str, retry_after: float) -> RateLimitedError:
        self._metrics.xero_refused(tenant.tenant_id, reason)
        return RateLimitedError(
            f"too many calls to Xero for tenant {tenant.tenant_id} ({reason.replace('_', ' ')})",
            retry_after=retry_after,
            reason=reason,
        )

    def _dequeue(self, tenant: _Tenant, waiter: _Waiter) -> None:
        if waiter is tenant.queue[0]:
            tenant.queue.popleft()
        else:
            tenant.queue.remove(waiter)
        waiter.queued = False
        self._queued -= 1
        if not tenant.queue:
            self._waiting.pop(tenant.tenant_id, None)

    def _expire(self, tenant: _Tenant, waiter: _Waiter, reason: str, retry_after: float) -> None:
        self._dequeue(tenant, waiter)
        if not waiter.future.done():
            waiter.future.set_exception(self._refuse(tenant, reason, retry_after))

    def _expire_due(self, now: float, *, inclusive: bool) -> None:
        """Refuse the waiters whose deadline has passed (or is now, when ``inclusive``)."""
        heap = self._deadlines
        while heap:
            deadline, _, waiter, tenant = heap[0]
            due = deadline <= now if inclusive else deadline < now
            if waiter.queued and not due:
                break
            heapq.heappop(heap)
            if waiter.queued:
                retry_after = self._start_times(tenant, 1, now)[0] - now
                self._expire(tenant, waiter, "deadline", retry_after)

    def _refuse_late(self, now: float) -> None:
        """Refuse now the waiters that could not start before their deadline."""
        for tenant in list(self._waiting.values()):
            starts = self._start_times(tenant, len(tenant.queue), now)
            position = 0
            for waiter in list(tenant.queue):
                if starts[position] > waiter.deadline:
                    self._expire(tenant, waiter, "deadline", starts[position] - now)
                else:
                    position += 1

    def _dispatch(self) -> None:
        """Start every waiting call that may start now, oldest first, then set the timer."""
        now = self._clock()
        self._expire_due(now, inclusive=False)
        # The oldest head first, across tenants, so the app's minute goes in arrival order.
        heads = [(t.queue[0].seq, t.tenant_id) for t in self._waiting.values()]
        heapq.heapify(heads)
        while heads:
            _, tenant_id = heapq.heappop(heads)
            tenant = self._tenants[tenant_id]
            if not self._may_start(tenant, now):
                continue
            waiter = tenant.queue[0]
            self._dequeue(tenant, waiter)
            if not waiter.future.done():  # else cancelled: it takes nothing
                permit = self._start(tenant, now, waited=now - waiter.queued_at)
                waiter.future.set_result(permit)
            if tenant.queue:
                heapq.heappush(heads, (tenant.queue[0].seq, tenant_id))
        self._expire_due(now, inclusive=True)
        self._schedule(now)

    def _schedule(self, now: float) -> None:
        """Wake at the next moment a waiting call could start or reach its deadline."""
        at = math.inf
        for tenant in self._waiting.values():
            if tenant.in_flight < self._limits.in_flight:  # else a release wakes it
                at = min(at, self._start_times(tenant, 1, now)[0])
        heap = self._deadlines
        if len(heap) > 2 * self._queued + 64:
            heap[:] = [entry for entry in heap if entry[2].queued]
            heapq.heapify(heap)
        while heap and not heap[0][2].queued:
            heapq.heappop(heap)
        if heap:
            at = min(at, heap[0][0])
        if at == math.inf or (self._timer is not None and self._timer_at <= at):
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        self._timer = asyncio.get_running_loop().create_task(self._wake(at))

    async def _wake(self, at: float) -> None:
        await self._sleep(max(0.0, at - self._clock()))
        self._timer = None
        self._timer_at = math.inf
        self._dispatch()


def _tighten(window: RollingCount, limit: int, remaining: int, now: float) -> bool:
    """Raise ``window`` to the calls Xero says it counted; whether that added any."""
    used = used_of(limit, remaining)
    return used is not None and window.raise_to(used, now) > 0
