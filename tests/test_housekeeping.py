"""Housekeeping forgets each kind of counter by its own rule, and keeps second-factor counts."""

from __future__ import annotations

from gateway.mfa.attempts import attempt_key
from gateway.mfa.send_limits import user_send_key
from gateway.runtime.background import housekeep
from gateway.store.records import ThrottleState
from tests.conftest import RunningGateway


async def test_housekeeping_keeps_second_factor_counts_however_old(
    gateway: RunningGateway,
) -> None:
    store, clock = gateway.services.store, gateway.clock
    start = clock()
    quiet = ThrottleState(failures=3, window_started_at=start, locked_until=0.0)
    await store.throttle.update(attempt_key("u1"), lambda _: quiet)
    await store.throttle.update("login:account:abc", lambda _: quiet)
    sent = ThrottleState(failures=2, window_started_at=start, locked_until=start + 3600.0)
    await store.throttle.update(user_send_key("u1"), lambda _: sent)

    clock.advance(1800.0)  # past the sign-in window, inside the send window
    await housekeep(gateway.services)
    assert await store.throttle.get("login:account:abc") is None
    assert await store.throttle.get(user_send_key("u1")) == sent
    assert await store.throttle.get(attempt_key("u1")) == quiet

    clock.advance(30 * 24 * 3600.0)
    await housekeep(gateway.services)
    assert await store.throttle.get(user_send_key("u1")) is None
    assert await store.throttle.get(attempt_key("u1")) == quiet  # only a success clears it
