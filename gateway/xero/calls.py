"""One call to Xero under the rate governor and the retry rule: the loop the Xero listener runs.

Each attempt is admitted by the governor, sent, and its answer fed back to the governor.
A 5xx or a timeout of a request that may be repeated is tried again after a jittered
backoff; a 429 is tried again once its Retry-After has passed (the governor holds the
tenant back until then); all within the caller's deadline and the policy's attempts.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol, TypeVar

from gateway.clock import Clock
from gateway.xero.governor import Governor, Permit, Sleeper
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

    def call(
        self,
        tenant_id: str,
        send: Callable[[], Awaitable[R]],
        *,
        method: str,
        idempotency_key: bool,
        deadline: float,
    ) -> AbstractAsyncContextManager[R]:
        """Send until Xero gives an answer to pass on, and yield it; the call keeps its place
        among the tenant's calls in flight until the block ends (while its body streams).

        ``send`` makes one attempt; it raises ``XeroUnavailable`` for a timeout or a failed
        connection. Raises ``RateLimitedError`` when the governor refuses an attempt, and
        ``XeroUnavailable`` when the last attempt failed so.
        """
        return _Call(self, tenant_id, send, method, idempotency_key, deadline)

    async def _attempts(self, call: _Call[R]) -> R:
        """The loop of attempts for ``call``: the answer to pass on, its permit held in
        ``call.permit``."""
        governor = self._governor
        attempt = 0
        while True:
            attempt += 1
            permit = governor.admit_now(call.tenant_id) or await governor.admit(
                call.tenant_id, deadline=call.deadline
            )
            try:
                response = await call.send()
            except XeroUnavailable as exc:
                permit.release()
                delay = self._retry(call, attempt, None, exc.retry_after)
                if delay is None:
                    raise
            except BaseException:
                permit.release()
                raise
            else:
                status = response.status
                block = governor.observe(call.tenant_id, status, response.headers)
                if outcome_of(status) is Outcome.ANSWERED:  # the common case: pass it on
                    call.permit = permit
                    return response
                retry_after = block.until - self._clock() if block is not None else None
                delay = self._retry(call, attempt, status, retry_after)
                if delay is None:
                    call.permit = permit
                    return response
                response.release()
                permit.release()
            await self._sleep(delay)

    def _retry(
        self, call: _Call[R], attempt: int, status: int | None, retry_after: float | None
    ) -> float | None:
        """Seconds to wait before the next attempt, or None to end with this one."""
        outcome = outcome_of(status)
        delay = retry_delay(
            method=call.method,
            idempotency_key=call.idempotency_key,
            outcome=outcome,
            attempt=attempt,
            retry_after=retry_after,
            now=self._clock(),
            deadline=call.deadline,
            policy=self._policy,
            random=self._random,
        )
        if delay is not None and outcome is Outcome.RATE_LIMITED:
            return 0.0  # the governor holds the next attempt back until the block is over
        return delay


class _Call(AbstractAsyncContextManager[R]):
    """One call as a context: entering runs the attempts, leaving releases the answer's place
    in flight (a plain class, no generator: this runs on every request)."""

    __slots__ = ("caller", "deadline", "idempotency_key", "method", "permit", "send", "tenant_id")

    def __init__(
        self,
        caller: RetryingCaller,
        tenant_id: str,
        send: Callable[[], Awaitable[R]],
        method: str,
        idempotency_key: bool,
        deadline: float,
    ) -> None:
        self.caller = caller
        self.tenant_id = tenant_id
        self.send = send
        self.method = method
        self.idempotency_key = idempotency_key
        self.deadline = deadline
        self.permit: Permit | None = None

    async def __aenter__(self) -> R:
        return await self.caller._attempts(self)

    async def __aexit__(self, *exc_info: object) -> None:
        if self.permit is not None:
            self.permit.release()
