"""Reminder claims: one claimant per key, across stores on one SQLite file; retries once each."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gateway import audit
from gateway.store import ClaimKey, Store

KEY = ClaimKey(kind="reminder", recipient_id="usr_1", policy_id="p", point="7d-2026-12-31")


def _failed(attempts: int, retry_at: float | None) -> audit.ReminderFailed:
    return audit.ReminderFailed(
        user_id="usr_1",
        org_id="org_1",
        reminder="reminder",
        policy_id="p",
        point=KEY.point,
        attempts=attempts,
        retry_at=retry_at,
        reason="refused",
    )


async def test_a_key_is_claimed_once(store: Store) -> None:
    assert await store.reminders.claim(KEY, 10.0)
    assert not await store.reminders.claim(KEY, 11.0)
    (claim,) = await store.reminders.all()
    assert (claim.key, claim.status, claim.attempts) == (KEY, "sending", 1)


async def test_two_stores_on_one_file_claim_each_key_once(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite3"
    async with await Store.open(path) as first, await Store.open(path) as second:
        keys = [
            ClaimKey(kind="summary", recipient_id=f"usr_{n}", policy_id="", point="2026-W49")
            for n in range(20)
        ]
        won = await asyncio.gather(
            *(store.reminders.claim(key, 1.0) for key in keys for store in (first, second))
        )
        assert sum(won) == len(keys)
        assert all(a != b for a, b in zip(won[::2], won[1::2], strict=True))


async def test_a_failed_claim_is_taken_back_once_its_retry_time_has_come(store: Store) -> None:
    await store.reminders.claim(KEY, 10.0)
    await store.reminders.settle(KEY, "failed", _failed(1, 70.0), now=10.0, retry_at=70.0)
    assert not await store.reminders.reclaim(KEY, 69.0)
    assert not await store.reminders.claim(KEY, 69.0)
    assert await store.reminders.reclaim(KEY, 70.0)
    assert not await store.reminders.reclaim(KEY, 70.0)
    (claim,) = await store.reminders.all()
    assert (claim.status, claim.attempts, claim.retry_at) == ("sending", 2, None)


async def test_settling_records_the_event_in_the_same_transaction(store: Store) -> None:
    await store.reminders.claim(KEY, 10.0)
    await store.reminders.settle(KEY, "abandoned", _failed(5, None), now=12.0, retry_at=None)
    (claim,) = await store.reminders.all()
    assert claim.status == "abandoned"
    assert not await store.reminders.reclaim(KEY, 1e12)
    (event,) = await store.audit.list(kind="reminder.failed")
    assert (event.subject, event.actor, event.detail["retry_at"]) == ("usr_1", "reminders", None)


async def test_claims_untouched_for_long_are_purged(store: Store) -> None:
    await store.reminders.claim(KEY, 10.0)
    other = ClaimKey(kind="summary", recipient_id="usr_2", policy_id="", point="2026-W50")
    await store.reminders.claim(other, 20.0)
    assert await store.reminders.purge(before=15.0) == 1
    assert [c.key for c in await store.reminders.all()] == [other]
