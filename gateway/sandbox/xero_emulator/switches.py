"""Faults the emulator can be told to show: latency, 5xx, hanging calls, lost token responses.

``on`` names where a fault applies: "token" (the token and revocation endpoints) or "api"
(``/connections`` and the accounting API). Each count is spent one call at a time.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

from aiohttp import web

Target = Literal["token", "api"]
TARGETS: tuple[Target, ...] = ("token", "api")


@dataclass
class Switches:
    """Set from Python (or over ``POST /_emulator/switches``); read by every route."""

    latency: float = 0.0  # seconds added before each answer
    fail_status: int = 503
    fail_retry_after: int | None = None
    _fail: Counter[str] = field(default_factory=Counter)
    _hang: Counter[str] = field(default_factory=Counter)
    drop_token_responses: int = 0
    _released: asyncio.Event = field(default_factory=asyncio.Event)

    def fail_next(
        self, n: int, *, on: Target = "api", status: int = 503, retry_after: int | None = None
    ) -> None:
        """Answer ``status`` (a 5xx, with ``Retry-After`` if given) to the next ``n`` calls
        ``on`` a target, doing nothing else."""
        if not 500 <= status <= 599:
            raise ValueError(f"invalid status for a failure: {status}")
        self._fail[on] += n
        self.fail_status, self.fail_retry_after = status, retry_after

    def hang_next(self, n: int, *, on: Target = "api") -> None:
        """Hold the next ``n`` calls ``on`` a target, unanswered, until ``release()`` (or stop).

        On the API a held call counts as in flight; on the token endpoint nothing is done
        until it is released."""
        self._hang[on] += n
        self._released.clear()

    def drop_next_token_responses(self, n: int = 1) -> None:
        """Do the next ``n`` token calls, then close the connection without answering."""
        self.drop_token_responses += n

    def release(self) -> None:
        """Let every held call go on."""
        self._released.set()

    def clear(self) -> None:
        """Turn every switch off and release held calls."""
        self.latency = 0.0
        self._fail.clear()
        self._hang.clear()
        self.drop_token_responses = 0
        self.release()

    def take_failure(self, on: Target) -> web.Response | None:
        """The answer to fail this call with, if a failure is due."""
        if self._fail[on] <= 0:
            return None
        self._fail[on] -= 1
        wait = self.fail_retry_after
        headers = {} if wait is None else {"Retry-After": str(wait)}
        body = {"error": "server_error"}
        return web.json_response(body, status=self.fail_status, headers=headers)

    async def delay(self, on: Target) -> None:
        """Wait out the added latency, and a hang if one is due."""
        if self._hang[on] > 0:
            self._hang[on] -= 1
            await self._released.wait()
        if self.latency > 0:
            await asyncio.sleep(self.latency)

    async def fault(self, on: Target) -> web.Response | None:
        """Wait out latency or a hang; then the failure answer, if one is due."""
        await self.delay(on)
        return self.take_failure(on)

    def take_drop(self) -> bool:
        if self.drop_token_responses <= 0:
            return False
        self.drop_token_responses -= 1
        return True
