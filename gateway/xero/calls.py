"""One call to Xero under the rate governor and the retry rule: the loop the Xero listener runs.

Each attempt is admitted by the governor, sent, and its answer fed back to the governor.
A 5xx or a timeout of a request that may be repeated is tried again after a jittered
backoff; a 429 is tried again once its Retry-After has passed (the governor holds the
tenant back until then); all within the caller's deadline and the policy's attempts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, Protocol, TypeVar

from gateway.clock import Clock
from gateway.xero.governor import Governor, Sleeper
from gateway.xero.retries import Outcome, RetryPolicy, outcome_of, retry_delay
from gateway.xero.tokens import XeroUnavailable


class XeroResponse(Protocol):
    """What the loop reads of a response (aiohttp's ClientResponse is one)."""

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    def release(self) -> Any: ...


R = TypeVar("R", bound=XeroResponse)


class RetryingCaller:
    """Runs calls to Xero through ``governor`` with ``policy``; ``random`` spreads backoffs."""

    def __init__(
        self,
        governor: Governor,
        policy: RetryPolicy,
        *,
        clock: Clock,
        sleep: Sleeper,
        random: Callable[[], float],
    ) -> None:
        self._governor = governor
        self._policy = policy
        self._clock = clock
        self._sleep = sleep
        self._random = random

    @asynccontextmanager
    async def call(
        self,
        tenant_id: str,
        send: Callable[[], Awaitable[R]],
        *,
        method: str,
        idempotency_key: bool,
        deadline: float,
    ) -> AsyncIterator[R]:
        """Send until Xero gives an answer to pass on, and yield it; the call keeps its place
        among the tenant's calls in flight until the block ends (while its body streams).

        ``send`` makes one attempt; it raises ``XeroUnavailable`` for a timeout or a failed
        connection. Raises ``RateLimitedError`` when the governor refuses an attempt, and
        ``XeroUnavailable`` when the last attempt failed so.
        """
        attempt = 0
        while True:
            attempt += 1
            permit = await self._governor.admit(tenant_id, deadline=deadline)
            try:
                response = await send()
            except XeroUnavailable as exc:
                permit.release()
                delay = self._retry(
                    method, idempotency_key, attempt, deadline, None, exc.retry_after
                )
                if delay is None:
                    raise
            except BaseException:
                permit.release()
                raise
            else:
                report = self._governor.observe(tenant_id, response.status, response.headers)
                block = report.block
                retry_after = block.until - self._clock() if block is not None else None
                delay = self._retry(
                    method, idempotency_key, attempt, deadline, response.status, retry_after
                )
                if delay is None:
                    try:
                        yield response
                    finally:
                        permit.release()
                    return
                response.release()
                permit.release()
            await self._sleep(delay)

    def _retry(
        self,
        method: str,
        idempotency_key: bool,
        attempt: int,
        deadline: float,
        status: int | None,
        retry_after: float | None,
    ) -> float | None:
        """Seconds to wait before the next attempt, or None to end with this one."""
        outcome = outcome_of(status)
        delay = retry_delay(
            method=method,
            idempotency_key=idempotency_key,
            outcome=outcome,
            attempt=attempt,
            retry_after=retry_after,
            now=self._clock(),
            deadline=deadline,
            policy=self._policy,
            random=self._random,
        )
        if delay is not None and outcome is Outcome.RATE_LIMITED:
            return 0.0  # the governor holds the next attempt back until the block is over
        return delay
