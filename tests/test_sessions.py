"""When a session is over: a pure judgement over its record, last use and the limits."""

from __future__ import annotations

import pytest

from gateway.sessions import SessionLimits, end_reason, hash_session_id
from gateway.store.records import SessionRecord

LIMITS = SessionLimits(idle=1800.0, absolute=43200.0)


def record(ended_at: float | None = None) -> SessionRecord:
    return SessionRecord(
        id_hash="h",
        user_id="u",
        created_at=0.0,
        last_seen_at=0.0,
        expires_at=43200.0,
        csrf_secret="c",
        client_addr=None,
        ended_at=ended_at,
    )


@pytest.mark.parametrize(
    ("ended_at", "last_seen", "now", "reason"),
    [
        (None, 0.0, 0.0, None),
        (None, 0.0, 1799.0, None),
        (None, 0.0, 1800.0, "idle"),
        (None, 43000.0, 43199.0, None),
        (None, 43000.0, 43200.0, "expired"),
        (5.0, 0.0, 6.0, "ended"),
    ],
)
def test_end_reason(
    ended_at: float | None, last_seen: float, now: float, reason: str | None
) -> None:
    assert end_reason(record(ended_at), last_seen, LIMITS, now) == reason


def test_session_hash_is_stable_and_not_the_id() -> None:
    assert hash_session_id("abc") == hash_session_id("abc")
    assert hash_session_id("abc") != "abc"
    assert len(hash_session_id("abc")) == 64
