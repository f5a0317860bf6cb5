"""Recent sign-ins in the store, on a real SQLite file: the newest 20 a user kept, the method
their session's first second-factor check gives them (through the id rotation that check
makes), older ones purged, and browser summaries."""

from __future__ import annotations

import dataclasses

import pytest

from gateway.signin.browsers import browser_summary
from gateway.store import Store, User
from gateway.store.records import SecondFactor
from gateway.store.sign_ins import KEEP_PER_USER
from tests.test_store_sessions import _colleague, _session, user

__all__ = ["user"]  # the fixture, shared


async def _record(store: Store, user: User, at: float, session_hash: str = "s") -> None:
    await store.sign_ins.record(
        user_id=user.id,
        at=at,
        client_addr="203.0.113.7",
        user_agent="  Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X)\n Safari/605.1  ",
        method=None,
        session_hash=session_hash,
    )


async def test_a_user_keeps_their_newest_sign_ins_only(store: Store, user: User) -> None:
    other = await _colleague(store, user)
    await _record(store, other, 1.0)
    for at in range(KEEP_PER_USER + 5):
        await _record(store, user, 100.0 + at)
    kept = await store.sign_ins.recent(user.id)
    assert [s.at for s in kept] == [100.0 + at for at in reversed(range(5, KEEP_PER_USER + 5))]
    assert (
        kept[0].user_agent == "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) Safari/605.1"
    )
    assert len(await store.sign_ins.recent(other.id)) == 1  # another user's are their own
    assert await store.sign_ins.purge(before=110.0) == 6  # 1.0 and 105.0 to 109.0
    assert [s.at for s in await store.sign_ins.recent(user.id)][-1] == 110.0


async def test_a_sign_in_takes_its_sessions_first_check(store: Store, user: User) -> None:
    first = _session(user, "old")
    await store.sessions.add(first)
    await _record(store, user, 100.0, session_hash="old")
    checked = dataclasses.replace(
        first, id_hash="new", second_factor=SecondFactor(method="sms", at=110.0)
    )
    await store.sessions.rotate_verified("old", checked, 110.0)
    stepped = dataclasses.replace(
        checked, id_hash="newer", second_factor=SecondFactor(method="totp", at=120.0)
    )
    await store.sessions.rotate_verified("new", stepped, 120.0)
    [sign_in] = await store.sign_ins.recent(user.id)
    assert (sign_in.session_hash, sign_in.method) == ("newer", "sms")


@pytest.mark.parametrize(
    ("user_agent", "summary"),
    [
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
            " Chrome/131.0 Safari/537.36 Edg/131.0",
            "Edge on Windows",
        ),
        (
            "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 (KHTML, like Gecko)"
            " Chrome/131.0 Mobile Safari/537.36",
            "Chrome on Android",
        ),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15"
            " (KHTML, like Gecko) Version/18.0 Mobile/15E148 Safari/604.1",
            "Safari on iPhone",
        ),
        (
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.5; rv:133.0) Firefox/133.0",
            "Firefox on macOS",
        ),
        ("curl/8.5.0", "curl"),
        ("Mozilla/5.0 (X11; Linux x86_64)", "A browser on Linux"),
        ("", "Unknown browser"),
    ],
)
def test_a_user_agent_is_summed_up_in_a_few_words(user_agent: str, summary: str) -> None:
    assert browser_summary(user_agent) == summary
