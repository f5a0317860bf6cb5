"""Where the current time comes from: passed in, never read ad hoc, so tests can move it."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def __call__(self) -> float:
        """Seconds since the Unix epoch."""
        ...


def system_clock() -> float:
    return time.time()


class ManualClock:
    """A clock that only moves when told to: for tests and the demo's time override."""

    def __init__(self, start: float) -> None:
        self._now = start

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds

    def set(self, now: float) -> None:
        self._now = now


class ShiftedClock:
    """The system clock moved to start at another instant: the time the demo's ``--at`` decides
    policies at (never ``serve``; codes and sessions keep the system clock)."""

    def __init__(self, start: float) -> None:
        self._offset = start - time.time()

    def __call__(self) -> float:
        return time.time() + self._offset
