"""CSRF tokens are bound to their secret and purpose, and checked in constant time."""

from __future__ import annotations

from gateway.http.csrf import csrf_token, csrf_valid, new_nonce

KEY = b"k" * 32


def test_token_is_accepted_for_its_own_binding_only() -> None:
    a, b = new_nonce(), new_nonce()
    token = csrf_token(KEY, a)
    assert csrf_valid(KEY, a, token)
    assert not csrf_valid(KEY, b, token)
    assert not csrf_valid(b"x" * 32, a, token)
    assert not csrf_valid(KEY, a, token, purpose="login")


def test_missing_parts_are_refused() -> None:
    assert not csrf_valid(KEY, None, "x")
    assert not csrf_valid(KEY, "a", None)
    assert not csrf_valid(KEY, "a", "")
    assert not csrf_valid(KEY, "a", "é")
