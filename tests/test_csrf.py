"""CSRF tokens are bound to their secret and purpose, and checked in constant time."""

from __future__ import annotations

from gateway.crypto.keys import Keys
from gateway.http.csrf import csrf_token, csrf_valid, new_nonce

KEYS = Keys.derive("k" * 32)
OTHER = Keys.derive("x" * 32)


def test_token_is_accepted_for_its_own_binding_only() -> None:
    a, b = new_nonce(), new_nonce()
    token = csrf_token(KEYS.csrf, a)
    assert csrf_valid(KEYS.csrf, a, token)
    assert not csrf_valid(KEYS.csrf, b, token)
    assert not csrf_valid(OTHER.csrf, a, token)
    assert not csrf_valid(KEYS.csrf, a, token, purpose="login")


def test_missing_parts_are_refused() -> None:
    assert not csrf_valid(KEYS.csrf, None, "x")
    assert not csrf_valid(KEYS.csrf, "a", None)
    assert not csrf_valid(KEYS.csrf, "a", "")
    assert not csrf_valid(KEYS.csrf, "a", "é")


def test_a_token_made_before_the_secret_key_was_rotated_still_verifies() -> None:
    old, new = "o" * 32, "n" * 32
    before = csrf_token(Keys.derive(old).csrf, "binding")
    rotated = Keys.derive(new, [old])
    assert csrf_valid(rotated.csrf, "binding", before)
    assert csrf_token(rotated.csrf, "binding") == csrf_token(Keys.derive(new).csrf, "binding")
    assert csrf_token(rotated.csrf, "binding") != before
    # Once the old key leaves the config, what it made is refused.
    assert not csrf_valid(Keys.derive(new).csrf, "binding", before)
