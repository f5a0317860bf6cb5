"""The custody rule as a table and as properties: who may use, and who may refresh, a token set."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.xero.custody import (
    Authority,
    ServiceKeyAuthority,
    UnverifiedSession,
    Verdict,
    VerifiedSession,
    verdict,
)

NOW = 1_800_000_000.0
HOUR = timedelta(hours=1)
VERIFIED = VerifiedSession(user_id="usr_1", org_id="org_1", session_ref="a")
UNVERIFIED = UnverifiedSession(user_id="usr_1", org_id="org_1", session_ref="b")
SERVICE = ServiceKeyAuthority(key_id="svk_1", org_id="org_1")

authorities = st.sampled_from([VERIFIED, UNVERIFIED, SERVICE])
instants = st.floats(min_value=NOW - 86400 * 2, max_value=NOW + 86400, allow_nan=False)
windows = st.one_of(st.none(), st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=1)))


@pytest.mark.parametrize(
    ("authority", "needs_refresh", "verified_use_at", "window", "expected"),
    [
        (VERIFIED, False, None, None, Verdict.USE),
        (UNVERIFIED, False, None, None, Verdict.USE),
        (SERVICE, False, None, None, Verdict.USE),
        (VERIFIED, True, None, None, Verdict.REFRESH),
        (UNVERIFIED, True, NOW - 1, HOUR, Verdict.MFA_REQUIRED),
        (SERVICE, True, None, HOUR, Verdict.MFA_REQUIRED),
        (SERVICE, True, NOW - 3599, HOUR, Verdict.REFRESH),
        (SERVICE, True, NOW - 3600, HOUR, Verdict.MFA_REQUIRED),
        (SERVICE, True, NOW - 1, None, Verdict.MFA_REQUIRED),
        (SERVICE, True, NOW + 5, HOUR, Verdict.MFA_REQUIRED),  # a use "in the future" is no use
    ],
)
def test_the_custody_table(
    authority: Authority,
    needs_refresh: bool,
    verified_use_at: float | None,
    window: timedelta | None,
    expected: Verdict,
) -> None:
    got = verdict(
        authority,
        needs_refresh=needs_refresh,
        verified_use_at=verified_use_at,
        service_refresh_window=window,
        now=NOW,
    )
    assert got is expected


@given(authority=authorities, used=st.one_of(st.none(), instants), window=windows)
def test_a_valid_token_is_always_handed_out(
    authority: Authority, used: float | None, window: timedelta | None
) -> None:
    got = verdict(
        authority, needs_refresh=False, verified_use_at=used, service_refresh_window=window, now=NOW
    )
    assert got is Verdict.USE


@given(authority=authorities, used=st.one_of(st.none(), instants), window=windows)
def test_only_a_verified_session_or_a_service_key_in_its_window_refreshes(
    authority: Authority, used: float | None, window: timedelta | None
) -> None:
    got = verdict(
        authority, needs_refresh=True, verified_use_at=used, service_refresh_window=window, now=NOW
    )
    in_window = window is not None and used is not None and 0 <= NOW - used < window.total_seconds()
    allowed = authority is VERIFIED or (authority is SERVICE and in_window)
    assert got is (Verdict.REFRESH if allowed else Verdict.MFA_REQUIRED)


@given(used=instants, window=windows)
def test_a_longer_window_never_takes_a_refresh_away(used: float, window: timedelta | None) -> None:
    def allows(w: timedelta | None) -> bool:
        got = verdict(
            SERVICE, needs_refresh=True, verified_use_at=used, service_refresh_window=w, now=NOW
        )
        return got is Verdict.REFRESH

    longer = (window or timedelta(0)) + HOUR
    assert not allows(window) or allows(longer)
