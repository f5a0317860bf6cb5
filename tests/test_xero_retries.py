"""The retry rule for calls to Xero as a table, and what Xero's rate headers are read as."""

from __future__ import annotations

import itertools
from email.utils import formatdate

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.xero.rate_headers import (
    Block,
    block_of,
    remaining_counts,
    retry_after_seconds,
    used_of,
)
from gateway.xero.retries import Outcome, RetryPolicy, outcome_of, retry_delay

POLICY = RetryPolicy(attempts=3, backoff=1.0, max_backoff=8.0)
NOW = 1000.0


def _delay(
    method: str,
    key: bool,
    outcome: Outcome,
    *,
    attempt: int = 1,
    retry_after: float | None = None,
    deadline: float = NOW + 100.0,
    random: float = 0.5,
    policy: RetryPolicy = POLICY,
) -> float | None:
    return retry_delay(
        method=method,
        idempotency_key=key,
        outcome=outcome,
        attempt=attempt,
        retry_after=retry_after,
        now=NOW,
        deadline=deadline,
        policy=policy,
        random=lambda: random,
    )


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (None, Outcome.TIMEOUT),
        (200, Outcome.ANSWERED),
        (404, Outcome.ANSWERED),
        (400, Outcome.ANSWERED),
        (429, Outcome.RATE_LIMITED),
        (500, Outcome.SERVER_ERROR),
        (503, Outcome.SERVER_ERROR),
    ],
)
def test_a_status_has_an_outcome(status: int | None, outcome: Outcome) -> None:
    assert outcome_of(status) is outcome


# Whether a first attempt is tried again (with Retry-After 5 s for a 429): method, key and outcome.
RETRIED = {
    ("GET", False): {Outcome.SERVER_ERROR, Outcome.TIMEOUT, Outcome.RATE_LIMITED},
    ("HEAD", False): {Outcome.SERVER_ERROR, Outcome.TIMEOUT, Outcome.RATE_LIMITED},
    ("get", False): {Outcome.SERVER_ERROR, Outcome.TIMEOUT, Outcome.RATE_LIMITED},
    ("POST", False): {Outcome.RATE_LIMITED},
    ("PUT", False): {Outcome.RATE_LIMITED},
    ("DELETE", False): {Outcome.RATE_LIMITED},
    ("PATCH", False): {Outcome.RATE_LIMITED},
    ("POST", True): {Outcome.SERVER_ERROR, Outcome.TIMEOUT, Outcome.RATE_LIMITED},
    ("PUT", True): {Outcome.SERVER_ERROR, Outcome.TIMEOUT, Outcome.RATE_LIMITED},
    ("DELETE", True): {Outcome.SERVER_ERROR, Outcome.TIMEOUT, Outcome.RATE_LIMITED},
    ("GET", True): {Outcome.SERVER_ERROR, Outcome.TIMEOUT, Outcome.RATE_LIMITED},
}


@pytest.mark.parametrize(
    ("method", "key", "outcome"),
    [(m, k, o) for (m, k), o in itertools.product(RETRIED, Outcome)],
)
def test_which_requests_are_tried_again(method: str, key: bool, outcome: Outcome) -> None:
    retry_after = 5.0 if outcome is Outcome.RATE_LIMITED else None
    delay = _delay(method, key, outcome, retry_after=retry_after)
    assert (delay is not None) is (outcome in RETRIED[(method, key)])


@pytest.mark.parametrize(
    ("attempt", "random", "expected"),
    [
        (1, 0.0, 0.5),
        (1, 0.999, 0.9995),
        (2, 0.0, 1.0),
        (2, 0.5, 1.5),
    ],
)
def test_backoff_doubles_and_is_jittered_over_its_upper_half(
    attempt: int, random: float, expected: float
) -> None:
    policy = RetryPolicy(attempts=10, backoff=1.0, max_backoff=8.0)
    delay = _delay(
        "GET", False, Outcome.SERVER_ERROR, attempt=attempt, random=random, policy=policy
    )
    assert delay == pytest.approx(expected)


@given(attempt=st.integers(1, 60), random=st.floats(0, 0.999999))
def test_backoff_never_exceeds_its_ceiling(attempt: int, random: float) -> None:
    policy = RetryPolicy(attempts=100, backoff=0.5, max_backoff=8.0)
    delay = _delay("HEAD", False, Outcome.TIMEOUT, attempt=attempt, random=random, policy=policy)
    assert delay is not None
    ceiling = min(8.0, 0.5 * 2 ** (attempt - 1))
    assert ceiling / 2 <= delay <= ceiling


def test_attempts_are_bounded() -> None:
    assert _delay("GET", False, Outcome.SERVER_ERROR, attempt=2) is not None
    assert _delay("GET", False, Outcome.SERVER_ERROR, attempt=3) is None
    assert _delay("GET", False, Outcome.RATE_LIMITED, attempt=3, retry_after=1.0) is None


def test_a_retry_never_passes_the_deadline() -> None:
    assert _delay("GET", False, Outcome.SERVER_ERROR, deadline=NOW + 0.75) == 0.75
    assert _delay("GET", False, Outcome.SERVER_ERROR, deadline=NOW + 0.74) is None
    assert _delay("GET", False, Outcome.RATE_LIMITED, retry_after=30, deadline=NOW + 30) == 30
    assert _delay("GET", False, Outcome.RATE_LIMITED, retry_after=31, deadline=NOW + 30) is None


def test_a_429_is_retried_only_after_its_retry_after() -> None:
    assert _delay("POST", False, Outcome.RATE_LIMITED, retry_after=None) is None
    assert _delay("POST", False, Outcome.RATE_LIMITED, retry_after=12.0) == 12.0


def test_a_5xx_with_retry_after_waits_at_least_that_long() -> None:
    assert _delay("GET", False, Outcome.SERVER_ERROR, retry_after=20.0) == 20.0


@pytest.mark.parametrize(
    "policy",
    [{"attempts": 0}, {"backoff": 0}, {"backoff": 2.0, "max_backoff": 1.0}],
)
def test_a_retry_policy_must_make_sense(policy: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="invalid retry policy"):
        RetryPolicy(**policy)  # type: ignore[arg-type]


# -- Xero's rate headers ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, None),
        ("30", 30.0),
        (" 2.5 ", 2.5),
        ("-1", None),
        ("nan", None),
        ("soon", None),
        (formatdate(NOW + 90, usegmt=True), 90.0),
        (formatdate(NOW - 90, usegmt=True), 0.0),
    ],
)
def test_retry_after_is_read_as_seconds_or_a_date(value: str | None, seconds: float | None) -> None:
    assert retry_after_seconds(value, NOW) == seconds


@pytest.mark.parametrize(
    ("headers", "block"),
    [
        (
            {"Retry-After": "30", "X-Rate-Limit-Problem": "minute"},
            Block(app_wide=False, until=NOW + 30, problem="minute"),
        ),
        (
            {"retry-after": "50000", "x-rate-limit-problem": "day"},
            Block(app_wide=False, until=NOW + 600, problem="day"),  # capped
        ),
        (
            {"Retry-After": "5", "X-Rate-Limit-Problem": "AppMinute"},
            Block(app_wide=True, until=NOW + 5, problem="app"),
        ),
        ({}, Block(app_wide=False, until=NOW + 60, problem="other")),
        (
            {"X-Rate-Limit-Problem": "concurrent", "Retry-After": "x"},
            Block(app_wide=False, until=NOW + 1, problem="concurrent"),
        ),
        (
            {"X-Rate-Limit-Problem": "<script>"},
            Block(app_wide=False, until=NOW + 60, problem="other"),
        ),
    ],
)
def test_a_429_blocks_the_tenant_or_the_app_for_its_capped_retry_after(
    headers: dict[str, str], block: Block
) -> None:
    assert block_of(429, headers, now=NOW, retry_after_cap=600) == block


def test_remaining_counts_are_read_and_nonsense_is_ignored() -> None:
    headers = {
        "X-DayLimit-Remaining": "4990",
        "X-MinLimit-Remaining": "-3",
        "X-AppMinLimit-Remaining": "9,000",
        "Retry-After": "30",
    }
    assert remaining_counts(headers) == (4990, None, None)
    assert block_of(200, headers, now=NOW, retry_after_cap=600) is None  # only a 429 blocks
    assert used_of(5000, 4990) == 10
    assert used_of(1000, 4990) == 0  # a bigger budget than ours loosens nothing
    assert used_of(60, None) is None
