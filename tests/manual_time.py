"""A manual clock whose sleeps end when a test moves it on: waiting tested without sleeping."""

from __future__ import annotations

import asyncio
import heapq
import itertools

from gateway.clock import ManualClock

START = 1_800_000_000.0


async def settle() -> None:
    """Let every task that can run, run (and those it wakes), before time moves on."""
    for _ in range(300):
        await asyncio.sleep(0)


class ManualTime:
    """A manual clock whose sleeps end when the test moves it on, in order of their end."""

    def __init__(self, start: float = START) -> None:
        self.clock = ManualClock(start)
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.clock() + seconds, next(self._seq), future))
        await future

    def next_wake(self) -> float | None:
        """When the earliest sleep ends, or None when nothing sleeps."""
        return self._sleepers[0][0] if self._sleepers else None

    async def step(self, most: float) -> None:
        """Move on by ``most`` seconds, or only to the end of the earliest sleep if that comes
        sooner: whatever it wakes then starts at the time it was due, not later."""
        wake = self.next_wake()
        now = self.clock()
        await self.advance(most if wake is None else max(0.0, min(most, wake - now)))

    async def advance(self, seconds: float) -> None:
        target = self.clock() + seconds
        await settle()
        while self._sleepers and self._sleepers[0][0] <= target:
            at, _, future = heapq.heappop(self._sleepers)
            self.clock.set(max(at, self.clock()))
            if not future.done():
                future.set_result(None)
                await settle()
        self.clock.set(target)
        await settle()
