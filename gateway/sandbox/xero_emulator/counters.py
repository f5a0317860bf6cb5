"""What the emulator saw, for tests and the benchmarks: token calls, load per tenant, 429s."""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Counters:
    """Counts since the emulator started (or since ``reset``)."""

    token_calls: Counter[str] = field(default_factory=Counter)  # by grant_type
    revocations: int = 0
    api_calls: Counter[str] = field(default_factory=Counter)  # admitted, by tenant id
    max_in_flight: Counter[str] = field(default_factory=Counter)  # by tenant id
    max_per_minute: Counter[str] = field(default_factory=Counter)  # in any rolling 60 s
    rejected: Counter[tuple[str, str]] = field(default_factory=Counter)  # (tenant, problem)
    in_flight: Counter[str] = field(default_factory=Counter)
    _recent: dict[str, deque[float]] = field(default_factory=dict)
    _waiters: list[tuple[str, int, asyncio.Future[None]]] = field(default_factory=list)

    @property
    def token_endpoint_calls(self) -> int:
        """Every POST the token endpoint answered or dropped, whatever the grant."""
        return sum(self.token_calls.values())

    @property
    def rejections(self) -> int:
        """429s sent, for any limit."""
        return sum(self.rejected.values())

    def started(self, tenant_id: str, now: float) -> None:
        self.api_calls[tenant_id] += 1
        self.in_flight[tenant_id] += 1
        self.max_in_flight[tenant_id] = max(
            self.max_in_flight[tenant_id], self.in_flight[tenant_id]
        )
        recent = self._recent.setdefault(tenant_id, deque())
        recent.append(now)
        while recent and recent[0] <= now - 60:
            recent.popleft()
        self.max_per_minute[tenant_id] = max(self.max_per_minute[tenant_id], len(recent))
        for waiter in list(self._waiters):
            tenant, count, future = waiter
            if self.in_flight[tenant] >= count:
                self._waiters.remove(waiter)
                if not future.done():
                    future.set_result(None)

    def finished(self, tenant_id: str) -> None:
        self.in_flight[tenant_id] -= 1

    async def wait_in_flight(self, tenant_id: str, count: int) -> None:
        """Return once ``count`` calls to the tenant are in flight at once (no sleeping)."""
        if self.in_flight[tenant_id] >= count:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((tenant_id, count, future))
        await future

    def reset(self) -> None:
        """Forget the counts (calls in flight stay counted)."""
        for name in ("token_calls", "api_calls", "max_in_flight", "max_per_minute", "rejected"):
            getattr(self, name).clear()
        self._recent.clear()
        self.revocations = 0

    def snapshot(self) -> dict[str, Any]:
        """The counts as JSON, for the control route."""
        return {
            "token_calls": dict(self.token_calls),
            "token_endpoint_calls": self.token_endpoint_calls,
            "revocations": self.revocations,
            "api_calls": dict(self.api_calls),
            "max_in_flight": dict(self.max_in_flight),
            "max_per_minute": dict(self.max_per_minute),
            "rejections": self.rejections,
            "rejected": [[t, p, n] for (t, p), n in self.rejected.items()],
        }
