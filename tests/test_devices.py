"""Known-device cookies: signed for one account, not forgeable, not movable."""

from __future__ import annotations

import pytest

from gateway.signin.devices import device_cookie, known_device, new_device_id

KEY = b"k" * 32


def test_a_device_cookie_is_known_for_its_own_account() -> None:
    device = new_device_id()
    assert known_device(KEY, "acct-a", device_cookie(KEY, "acct-a", device)) == device


@pytest.mark.parametrize(
    ("key", "account"),
    [(KEY, "acct-b"), (b"other-key" * 4, "acct-a")],
    ids=["another-account", "another-key"],
)
def test_a_device_cookie_is_unknown_anywhere_else(key: bytes, account: str) -> None:
    cookie = device_cookie(KEY, "acct-a", new_device_id())
    assert known_device(key, account, cookie) is None


@pytest.mark.parametrize(
    "cookie",
    [None, "", "x", "a" * 22 + "." + "0" * 64, "a" * 22 + "." + "0" * 63, "." * 87],
)
def test_anything_but_an_issued_cookie_is_unknown(cookie: str | None) -> None:
    assert known_device(KEY, "acct-a", cookie) is None
