"""The rate governor with many callers at once, on a manual clock: nothing sleeps for real."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable

import pytest

from gateway.config import XeroProxyConfig
from gateway.ops.metrics import Metrics
from gateway.xero.governor import REASONS, Governor, GovernorSettings, Permit, RateLimitedError
from gateway.xero.limits import Limits
from gateway.xero.retries import RetryPolicy
from tests.manual_time import START, ManualTime, settle

TENANT = "0f9a3c1e-6a8e-4c1b-9d3e-2b7f5a1c9e01"
OTHER = "5d2e8b47-1f3a-4e6c-8a9b-7c0d1e2f3a4b"


def _governor(
    time: ManualTime,
    *,
    limits: Limits | None = None,
    queue_size: int = 500,
    metrics: Metrics | None = None,
    **settings: object,
) -> Governor:
    return Governor(
        GovernorSettings(limits=limits or Limits(), queue_size=queue_size, **settings),  # type: ignore[arg-type]
        clock=time.clock,
        sleep=time.sleep,
        metrics=metrics,
    )


async def _outcome(call: Awaitable[Permit]) -> Permit | RateLimitedError:
    try:
        return await call
    except RateLimitedError as exc:
        return exc


async def _fill(governor: Governor) -> list[Permit]:
    """Take all five of TENANT's slots."""
    return [await governor.admit(TENANT, deadline=START) for _ in range(5)]


def _wait(governor: Governor, deadline: float) -> asyncio.Task[Permit | RateLimitedError]:
    """A call for TENANT that waits, by its own task; its result is the permit or the refusal."""
    return asyncio.create_task(_outcome(governor.admit(TENANT, deadline=deadline)))


def _most_in_any_minute(starts: list[float]) -> int:
    return max((sum(1 for s in starts if t - 60 < s <= t) for t in starts), default=0)


@pytest.mark.parametrize("hold", [0.0, 2.0, 13.0], ids=["instant", "2s", "13s"])
async def test_two_hundred_callers_on_one_tenant_never_break_a_limit(hold: float) -> None:
    time = ManualTime()
    governor = _governor(time)
    deadline = START + 150
    in_flight = 0
    most_in_flight = 0
    starts: dict[int, float] = {}
    refused: dict[int, RateLimitedError] = {}

    async def caller(number: int) -> None:
        nonlocal in_flight, most_in_flight
        try:
            async with governor.slot(TENANT, deadline=deadline):
                starts[number] = time.clock()
                in_flight += 1
                most_in_flight = max(most_in_flight, in_flight)
                await time.sleep(hold)
                in_flight -= 1
        except RateLimitedError as exc:
            refused[number] = exc

    tasks = [asyncio.create_task(caller(n)) for n in range(200)]
    await settle()
    # Callers whose deadline the minute windows already rule out are refused at once.
    assert sorted(refused) == list(range(180, 200))
    assert {exc.reason for exc in refused.values()} == {"deadline"}
    assert {exc.retry_after for exc in refused.values()} == {180.0}
    await time.advance(400)  # (each sleep along the way ends at its own time, in order)
    assert all(task.done() for task in tasks)
    assert most_in_flight == 5
    assert _most_in_any_minute(list(starts.values())) == (60 if hold <= 2.0 else 25)
    # First come, first served: they started in the order they came.
    assert sorted(starts, key=lambda n: (starts[n], n)) == sorted(starts)
    assert max(starts.values()) <= deadline
    if hold <= 2.0:  # the minute windows decide: everyone they let wait gets through
        assert sorted(starts) == list(range(180))
        assert max(starts.values()) == START + 120 + 11 * hold
    else:  # 5 calls per 13 s: some wait past their deadline after all, and are told so
        assert len(starts) + len(refused) == 200
        late = [exc for n, exc in refused.items() if n < 180]
        assert len(late) == 200 - 20 - 5 * (150 // 13 + 1)
        assert {exc.reason for exc in late} == {"deadline"}
    budget = governor.budget(TENANT)
    assert (budget.in_flight, budget.queued) == (0, 0)


@pytest.mark.parametrize("seed", range(4))
async def test_random_callers_on_three_tenants_keep_every_limit_and_leak_nothing(
    seed: int,
) -> None:
    """Callers arrive over ten minutes on three tenants with their own deadlines and hold
    times; some are cancelled while they wait or work, and Xero now and then answers 429."""
    rng = random.Random(seed)
    time = ManualTime()
    limits = Limits(in_flight=3, per_minute=20, app_per_minute=45)
    governor = _governor(time, limits=limits, queue_size=8)
    tenants = [TENANT, OTHER, "8c3b1f0e-2d4a-4b5c-9e6f-0a1b2c3d4e5f"]
    starts: dict[str, list[tuple[float, int]]] = {t: [] for t in tenants}
    in_flight = dict.fromkeys(tenants, 0)
    refused: list[tuple[int, RateLimitedError, float]] = []
    tasks: list[asyncio.Task[None]] = []

    async def caller(number: int, tenant: str, deadline: float, hold: float) -> None:
        try:
            async with governor.slot(tenant, deadline=deadline) as permit:
                now = time.clock()
                assert now <= deadline
                assert permit.waited >= 0
                starts[tenant].append((now, number))
                in_flight[tenant] += 1
                assert in_flight[tenant] <= limits.in_flight
                try:
                    await time.sleep(hold)
                finally:
                    in_flight[tenant] -= 1
                if rng.random() < 0.05:
                    governor.observe(tenant, 429, {"Retry-After": "7"})
        except RateLimitedError as exc:
            refused.append((number, exc, time.clock()))

    for number in range(300):
        tenant = rng.choice(tenants)
        deadline = time.clock() + rng.choice([0, 5, 30, 90, 200, 900])
        tasks.append(asyncio.create_task(caller(number, tenant, deadline, rng.uniform(0, 6))))
        if rng.random() < 0.1:
            rng.choice(tasks).cancel()
        await time.advance(rng.choice([0.0, 0.0, 0.5, 2.0]))
    await time.advance(1000)
    assert all(task.done() for task in tasks)
    everyone = sorted(t for calls in starts.values() for t, _ in calls)
    for calls in starts.values():
        times = [t for t, _ in calls]
        assert _most_in_any_minute(times) <= limits.per_minute
        numbers = [n for _, n in calls]
        assert numbers == sorted(numbers)  # first come, first served within a tenant
    assert _most_in_any_minute(everyone) <= limits.app_per_minute
    assert all(exc.retry_after >= 0 and exc.reason in REASONS for _, exc, _ in refused)
    assert {exc.reason for _, exc, _ in refused} >= {"deadline", "queue_full"}
    for tenant in tenants:
        budget = governor.budget(tenant)
        assert (budget.in_flight, budget.queued) == (0, 0)


async def test_a_sixth_call_waits_for_a_release_and_is_refused_at_its_deadline() -> None:
    time = ManualTime()
    governor = _governor(time)
    held = await _fill(governor)
    sixth = _wait(governor, START + 10)
    seventh = _wait(governor, START + 10)
    await settle()
    assert governor.budget(TENANT).queued == 2
    held[0].release()
    held[0].release()  # a second release does nothing
    await settle()
    admitted = sixth.result()
    assert isinstance(admitted, Permit)
    assert admitted.waited == 0.0
    assert not seventh.done()
    await time.advance(9.5)
    assert not seventh.done()
    await time.advance(0.5)
    refused = seventh.result()
    assert isinstance(refused, RateLimitedError)
    assert (refused.reason, refused.retry_after_header) == ("deadline", "1")
    budget = governor.budget(TENANT)
    assert (budget.in_flight, budget.queued, budget.minute_remaining) == (5, 0, 54)


async def test_a_full_queue_refuses_at_once_with_a_time_to_retry() -> None:
    time = ManualTime()
    governor = _governor(time, limits=Limits(in_flight=1, per_minute=2), queue_size=2)
    await governor.admit(TENANT, deadline=START)
    waiting = [asyncio.create_task(governor.admit(TENANT, deadline=START + 300)) for _ in range(2)]
    await settle()
    with pytest.raises(RateLimitedError) as caught:
        await governor.admit(TENANT, deadline=START + 300)
    assert caught.value.reason == "queue_full"
    assert caught.value.retry_after == 60.0  # the third call in this minute waits for the next
    assert caught.value.retry_after_header == "60"
    for task in waiting:
        task.cancel()
    await settle()


async def test_a_cancelled_waiter_takes_nothing_and_leaks_no_slot() -> None:
    time = ManualTime()
    governor = _governor(time)
    held = await _fill(governor)
    first = asyncio.create_task(governor.admit(TENANT, deadline=START + 30))
    second = asyncio.create_task(governor.admit(TENANT, deadline=START + 30))
    await settle()
    first.cancel()
    await settle()
    assert first.cancelled()
    assert governor.budget(TENANT).queued == 1
    held[0].release()
    await settle()
    assert isinstance(second.result(), Permit)  # the slot went to the next in line
    budget = governor.budget(TENANT)
    assert (budget.in_flight, budget.queued, budget.minute_remaining) == (5, 0, 54)


async def test_a_caller_cancelled_as_it_is_admitted_gives_its_slot_back() -> None:
    time = ManualTime()
    governor = _governor(time)
    held = await _fill(governor)
    waiter = asyncio.create_task(governor.admit(TENANT, deadline=START + 30))
    after = asyncio.create_task(governor.admit(TENANT, deadline=START + 30))
    await settle()
    held[0].release()  # admits the waiter, which has not run yet ...
    waiter.cancel()  # ... and is cancelled before it does
    await settle()
    assert waiter.cancelled()
    assert isinstance(after.result(), Permit)  # the slot it gave back went on
    assert governor.budget(TENANT).in_flight == 5


async def test_a_429_blocks_the_tenant_for_its_retry_after() -> None:
    time = ManualTime()
    governor = _governor(time)
    async with governor.slot(TENANT, deadline=START):
        pass
    governor.observe(TENANT, 429, {"Retry-After": "30", "X-Rate-Limit-Problem": "minute"})
    assert governor.budget(TENANT).blocked_until == START + 30
    with pytest.raises(RateLimitedError) as caught:
        await governor.admit(TENANT, deadline=START + 10)
    assert (caught.value.reason, caught.value.retry_after) == ("deadline", 30.0)
    waiter = asyncio.create_task(governor.admit(TENANT, deadline=START + 60))
    other = await governor.admit(OTHER, deadline=START)  # another tenant is not blocked
    other.release()
    await time.advance(29.9)
    assert not waiter.done()
    await time.advance(0.1)
    assert waiter.result().waited == pytest.approx(30.0)
    assert governor.budget(TENANT).blocked_until is None


async def test_a_429s_retry_after_is_capped() -> None:
    time = ManualTime()
    governor = _governor(time, retry_after_cap=120.0)
    governor.observe(TENANT, 429, {"Retry-After": "40000", "X-Rate-Limit-Problem": "day"})
    assert governor.budget(TENANT).blocked_until == START + 120


async def test_an_app_wide_429_blocks_every_tenant() -> None:
    time = ManualTime()
    governor = _governor(time)
    governor.observe(TENANT, 429, {"Retry-After": "5", "X-Rate-Limit-Problem": "AppMinute"})
    assert governor.budget(OTHER).blocked_until == START + 5
    with pytest.raises(RateLimitedError):
        await governor.admit(OTHER, deadline=START + 4)


async def test_waiters_a_new_block_would_keep_past_their_deadline_are_refused_at_once() -> None:
    time = ManualTime()
    governor = _governor(time)
    held = await _fill(governor)
    short = _wait(governor, START + 10)
    long = _wait(governor, START + 100)
    await settle()
    governor.observe(TENANT, 429, {"Retry-After": "45", "X-Rate-Limit-Problem": "minute"})
    await settle()
    refused = short.result()
    assert isinstance(refused, RateLimitedError)
    assert refused.retry_after == 45.0
    assert not long.done()
    for permit in held:
        permit.release()
    await time.advance(45)
    assert isinstance(long.result(), Permit)


@pytest.mark.parametrize(
    ("header", "value", "field", "expected"),
    [
        ("X-MinLimit-Remaining", "10", "minute_remaining", 10),
        ("X-MinLimit-Remaining", "59", "minute_remaining", 57),  # never loosened
        ("X-DayLimit-Remaining", "100", "day_remaining", 100),
        ("X-DayLimit-Remaining", "4999", "day_remaining", 4997),
        ("X-AppMinLimit-Remaining", "7", "app_minute_remaining", 7),
        ("X-AppMinLimit-Remaining", "lots", "app_minute_remaining", 9997),
    ],
)
async def test_xeros_remaining_counts_tighten_the_governors_and_never_loosen_them(
    header: str, value: str, field: str, expected: int
) -> None:
    time = ManualTime()
    governor = _governor(time)
    for _ in range(3):
        async with governor.slot(TENANT, deadline=START):
            pass
    governor.observe(TENANT, 200, {header: value})
    assert getattr(governor.budget(TENANT), field) == expected


async def test_a_used_up_minute_from_the_headers_makes_callers_wait_for_the_next() -> None:
    time = ManualTime()
    governor = _governor(time)
    async with governor.slot(TENANT, deadline=START):
        pass
    governor.observe(TENANT, 200, {"X-MinLimit-Remaining": "0"})
    waiter = asyncio.create_task(governor.admit(TENANT, deadline=START + 90))
    await time.advance(59)
    assert not waiter.done()
    await time.advance(1)
    assert waiter.result().waited == 60.0


async def test_a_tenants_tier_sets_its_daily_budget() -> None:
    time = ManualTime()
    governor = _governor(time, default_tier="starter", tenant_tiers={OTHER: "standard"})
    assert (governor.budget(TENANT).tier, governor.budget(TENANT).day_remaining) == (
        "starter",
        1000,
    )
    assert governor.budget(OTHER).day_remaining == 5000


async def test_a_spent_daily_budget_refuses_until_the_day_moves_on() -> None:
    time = ManualTime()
    governor = _governor(time)
    governor.observe(TENANT, 200, {"X-DayLimit-Remaining": "0"})
    with pytest.raises(RateLimitedError) as caught:
        await governor.admit(TENANT, deadline=START + 30)
    assert caught.value.retry_after == 24 * 3600


async def test_app_wide_limit_is_shared_by_tenants_in_arrival_order() -> None:
    time = ManualTime()
    governor = _governor(time, limits=Limits(app_per_minute=3))
    order: list[str] = []

    async def call(tenant: str) -> None:
        async with governor.slot(tenant, deadline=START + 300):
            order.append(tenant)

    tasks = [asyncio.create_task(call(t)) for t in [TENANT, OTHER] * 4]
    await settle()
    assert order == [TENANT, OTHER, TENANT]
    await time.advance(60)
    assert order == [TENANT, OTHER, TENANT, OTHER, TENANT, OTHER]
    await time.advance(60)
    assert order == [TENANT, OTHER] * 4
    await asyncio.gather(*tasks)


async def test_closing_refuses_every_waiter() -> None:
    time = ManualTime()
    governor = _governor(time)
    await _fill(governor)
    waiter = _wait(governor, START + 30)
    await settle()
    await governor.close()
    await settle()
    refused = waiter.result()
    assert isinstance(refused, RateLimitedError)
    assert refused.reason == "closed"
    with pytest.raises(RateLimitedError):
        await governor.admit(OTHER, deadline=START + 30)


async def test_the_governor_reports_queues_waits_refusals_and_429s() -> None:
    time = ManualTime()
    metrics = Metrics(xero_tenants=1)
    governor = _governor(time, limits=Limits(in_flight=1), metrics=metrics)
    first = await governor.admit(TENANT, deadline=START)
    waiter = asyncio.create_task(governor.admit(TENANT, deadline=START + 30))
    await settle()
    text = metrics.render().decode()
    assert f'gateway_xero_queue_depth{{tenant="{TENANT}"}} 1.0' in text
    assert f'gateway_xero_in_flight{{tenant="{TENANT}"}} 1.0' in text
    await time.advance(2)
    first.release()
    await settle()
    (await waiter).release()
    governor.observe(OTHER, 429, {"X-Rate-Limit-Problem": "minute"})
    with pytest.raises(RateLimitedError):
        await governor.admit(OTHER, deadline=START)
    text = metrics.render().decode()
    assert f'gateway_xero_queue_depth{{tenant="{TENANT}"}} 0.0' in text
    assert f'gateway_xero_in_flight{{tenant="{TENANT}"}} 0.0' in text
    assert "gateway_xero_wait_seconds_count 2.0" in text
    assert 'gateway_xero_wait_seconds_bucket{le="2.5"} 2.0' in text
    assert 'gateway_xero_wait_seconds_bucket{le="1.0"} 1.0' in text
    # A tenant past the first (xero_tenants=1) is counted under "other".
    assert 'gateway_xero_throttled_total{problem="minute",tenant="other"} 1.0' in text
    assert 'gateway_xero_refusals_total{reason="deadline",tenant="other"} 1.0' in text


def test_settings_come_from_the_config() -> None:
    config = XeroProxyConfig(
        default_tier="starter",
        tenant_tiers=(f"{TENANT}=standard",),
        queue_size=7,
        retry_after_cap=90.0,
        retry_attempts=4,
        retry_backoff=0.25,
    )
    settings = GovernorSettings.from_config(config)
    assert (settings.tier_of(TENANT), settings.tier_of(OTHER)) == ("standard", "starter")
    assert (settings.queue_size, settings.retry_after_cap) == (7, 90.0)
    assert RetryPolicy.from_config(config) == RetryPolicy(attempts=4, backoff=0.25)


def test_settings_refuse_an_unknown_tier() -> None:
    with pytest.raises(ValueError, match="unknown Xero tier"):
        GovernorSettings(tenant_tiers={TENANT: "gold"})


async def test_deadlines_of_admitted_callers_are_not_kept_for_long() -> None:
    time = ManualTime()
    governor = _governor(time, limits=Limits(in_flight=1, per_minute=10_000))
    await governor.admit(OTHER, deadline=START)
    # A waiter whose deadline comes first stays at the top of the heap all along.
    stuck = asyncio.create_task(governor.admit(OTHER, deadline=START + 1000))
    held = await governor.admit(TENANT, deadline=START)
    for _ in range(1000):
        waiter = asyncio.create_task(governor.admit(TENANT, deadline=START + 10**6))
        await asyncio.sleep(0)  # it queues
        held.release()
        held = await waiter
    held.release()
    # Each waiter left a deadline a million seconds off; the heap sheds them as it grows.
    assert len(governor._deadlines) <= 64 + 3
    stuck.cancel()
