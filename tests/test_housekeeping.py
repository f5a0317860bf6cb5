"""Housekeeping forgets each kind of counter by its own rule, and keeps second-factor counts;
it purges enrolments under way and one-time codes a day after they ran out (real SQLite file,
injected clock)."""

from __future__ import annotations

from gateway.mfa.attempts import attempt_key
from gateway.mfa.send_limits import user_send_key
from gateway.runtime.background import CODE_KEEP_SECONDS, housekeep
from gateway.store.codes import new_code_id
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


async def _user_id(gateway: RunningGateway, email: str) -> str:
    user = await gateway.services.store.users.find_by_email(email)
    assert user is not None
    return user.id


async def _issue_code(gateway: RunningGateway, user_id: str) -> None:
    """A code for the backup step, living ten minutes from now."""
    now = gateway.clock()
    await gateway.services.store.codes.issue(
        code_id=new_code_id(),
        user_id=user_id,
        purpose="enrol-backup",
        channel="email",
        sealed_destination=b"x",
        digest="d",
        now=now,
        expires_at=now + 600.0,
    )


async def test_housekeeping_purges_enrolments_and_codes_a_day_after_they_ran_out(
    gateway: RunningGateway,
) -> None:
    store, clock = gateway.services.store, gateway.clock
    early, late = (
        await _user_id(gateway, "max@harbour.example"),
        await _user_id(gateway, "ava@harbour.example"),
    )
    start = clock()
    await store.factors.start(early, now=start, expires_at=start + 600.0, totp_sealed=b"a")
    for user_id in (early, late):
        await _issue_code(gateway, user_id)
    clock.advance(3600.0)
    later = clock()
    await store.factors.start(late, now=later, expires_at=later + 600.0, totp_sealed=b"b")
    await _issue_code(gateway, late)

    # Ran out, but within the day: kept, so a late try is told the step ran out.
    await housekeep(gateway.services)
    assert await store.factors.pending(early) is not None
    assert await store.codes.current(early, "enrol-backup") is not None

    clock.set(start + 600.0 + CODE_KEEP_SECONDS)
    await housekeep(gateway.services)
    assert await store.factors.pending(early) is None
    assert await store.codes.current(early, "enrol-backup") is None
    # The later ones ran out under a day ago: still there.
    assert await store.factors.pending(late) is not None
    assert await store.codes.current(late, "enrol-backup") is not None
    rows = await store.db.fetch_all("SELECT user_id FROM mfa_enrolments")
    assert [row["user_id"] for row in rows] == [late]

    clock.advance(3600.0)
    await housekeep(gateway.services)
    assert await store.factors.pending(late) is None
    assert await store.codes.current(late, "enrol-backup") is None
