"""The loop that sends a call to Xero under the governor and the retry rule, on a manual clock.

``send`` stands in for Xero (the process edge): it answers from a script of statuses.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import pytest

from gateway.xero.calls import RetryingCaller
from gateway.xero.governor import Governor, GovernorSettings, RateLimitedError
from gateway.xero.limits import Limits
from gateway.xero.retries import RetryPolicy
from gateway.xero.tokens import XeroUnavailable
from tests.manual_time import START, ManualTime, settle

TENANT = "0f9a3c1e-6a8e-4c1b-9d3e-2b7f5a1c9e01"
TIMEOUT = None  # in a script: the attempt times out


class Answer:
    def __init__(self, status: int, headers: Mapping[str, str]) -> None:
        self.status = status
        self.headers = headers
        self.released = False

    def release(self) -> None:
        self.released = True


class ScriptedXero:
    """Answers each attempt with the next status of its script, noting when each came."""

    def __init__(self, time: ManualTime, *script: int | tuple[int, dict[str, str]] | None):
        self._time = time
        self._script = list(script)
        self.sent_at: list[float] = []
        self.answers: list[Answer] = []

    async def send(self) -> Answer:
        self.sent_at.append(self._time.clock() - START)
        step = self._script.pop(0)
        if step is TIMEOUT:
            raise XeroUnavailable("Xero did not answer in time")
        status, headers = step if isinstance(step, tuple) else (step, {})
        answer = Answer(status, headers)
        self.answers.append(answer)
        return answer


def _caller(time: ManualTime, governor: Governor, attempts: int = 3) -> RetryingCaller:

    return RetryingCaller(
        governor,
        RetryPolicy(attempts=attempts, backoff=1.0, max_backoff=8.0),
        clock=time.clock,
        sleep=time.sleep,
        random=lambda: 0.0,  # the shortest backoff: half the ceiling
    )


def _governor(time: ManualTime) -> Governor:
    return Governor(GovernorSettings(limits=Limits()), clock=time.clock, sleep=time.sleep)


async def _run(
    time: ManualTime,
    xero: ScriptedXero,
    *,
    method: str = "GET",
    key: bool = False,
    deadline: float = START + 30,
    governor: Governor | None = None,
) -> int | BaseException:
    governor = governor or _governor(time)
    caller = _caller(time, governor)

    async def one() -> int | BaseException:
        try:
            async with caller.call(
                TENANT, xero.send, method=method, idempotency_key=key, deadline=deadline
            ) as answer:
                assert governor.budget(TENANT).in_flight == 1  # held while the body streams
                return answer.status
        except (RateLimitedError, XeroUnavailable) as exc:
            return exc

    task = asyncio.create_task(one())
    await time.advance(120)
    await settle()
    assert governor.budget(TENANT).in_flight == 0
    return task.result()


async def test_a_get_is_tried_again_after_a_5xx_and_a_timeout_with_growing_backoff() -> None:
    time = ManualTime()
    xero = ScriptedXero(time, 503, TIMEOUT, 200)
    assert await _run(time, xero) == 200
    assert xero.sent_at == [0.0, 0.5, 1.5]  # half of 1 s, then half of 2 s
    assert [a.released for a in xero.answers] == [True, False]  # the 503 was let go


async def test_a_post_without_an_idempotency_key_is_never_tried_again() -> None:
    time = ManualTime()
    xero = ScriptedXero(time, 502, 200)
    assert await _run(time, xero, method="POST") == 502
    time = ManualTime()
    xero = ScriptedXero(time, TIMEOUT, 200)
    assert isinstance(await _run(time, xero, method="POST"), XeroUnavailable)
    assert xero.sent_at == [0.0]


async def test_a_post_with_an_idempotency_key_is_tried_again() -> None:
    time = ManualTime()
    xero = ScriptedXero(time, 500, 201)
    assert await _run(time, xero, method="POST", key=True) == 201


async def test_attempts_run_out_and_the_last_answer_is_given() -> None:
    time = ManualTime()
    xero = ScriptedXero(time, 500, 500, 503, 200)
    assert await _run(time, xero) == 503
    assert len(xero.sent_at) == 3


async def test_a_429_is_tried_again_once_its_retry_after_has_passed() -> None:
    time = ManualTime()
    xero = ScriptedXero(time, (429, {"Retry-After": "12", "X-Rate-Limit-Problem": "minute"}), 200)
    assert await _run(time, xero, method="POST") == 200
    assert xero.sent_at == [0.0, 12.0]


async def test_a_429_past_the_deadline_is_passed_on() -> None:
    time = ManualTime()
    xero = ScriptedXero(time, (429, {"Retry-After": "45", "X-Rate-Limit-Problem": "minute"}))
    assert await _run(time, xero) == 429


async def test_a_retry_the_governor_cannot_fit_before_the_deadline_is_refused() -> None:
    time = ManualTime()
    governor = _governor(time)
    # Xero says the minute is used up: the retry after the 500 would have to wait for the next.
    xero = ScriptedXero(time, (500, {"X-MinLimit-Remaining": "0"}), 200)
    refused = await _run(time, xero, governor=governor)
    assert isinstance(refused, RateLimitedError)
    assert refused.retry_after_header == "60"


@pytest.mark.parametrize("where", ["send", "body"])
async def test_a_cancelled_call_leaves_no_slot_taken(where: str) -> None:
    time = ManualTime()
    governor = _governor(time)
    caller = _caller(time, governor)
    started = asyncio.Event()

    async def send() -> Answer:
        started.set()
        if where == "send":
            await asyncio.Event().wait()
        return Answer(200, {})

    async def one() -> None:
        async with caller.call(
            TENANT, send, method="GET", idempotency_key=False, deadline=START + 30
        ):
            await asyncio.Event().wait()

    task = asyncio.create_task(one())
    await settle()
    assert started.is_set()
    assert governor.budget(TENANT).in_flight == 1
    task.cancel()
    await settle()
    assert task.cancelled()
    assert governor.budget(TENANT).in_flight == 0
