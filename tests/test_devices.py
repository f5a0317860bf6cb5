"""Known-device cookies: for one account, not forgeable, not movable, kept over a rotation."""

from __future__ import annotations

import pytest

from gateway.crypto.keys import Keys
from gateway.crypto.signing import Signer
from gateway.signin.devices import device_cookie, known_device, new_device_id

SECRET = "s" * 32
SIGNER = Keys.derive(SECRET).devices


def test_a_device_cookie_is_known_for_its_own_account() -> None:
    device = new_device_id()
    assert known_device(SIGNER, "acct-a", device_cookie(SIGNER, "acct-a", device)) == device


@pytest.mark.parametrize(
    ("signer", "account"),
    [
        (SIGNER, "acct-b"),
        (Keys.derive("o" * 32).devices, "acct-a"),
        (Keys.derive(SECRET).csrf, "acct-a"),
    ],
    ids=["another-account", "another-secret", "another-purpose"],
)
def test_a_device_cookie_is_unknown_anywhere_else(signer: Signer, account: str) -> None:
    cookie = device_cookie(SIGNER, "acct-a", new_device_id())
    assert known_device(signer, account, cookie) is None


def test_a_device_cookie_made_before_a_key_rotation_is_still_known() -> None:
    device = new_device_id()
    cookie = device_cookie(SIGNER, "acct-a", device)
    rotated = Keys.derive("n" * 32, previous_secret_keys=[SECRET]).devices
    assert known_device(rotated, "acct-a", cookie) == device


@pytest.mark.parametrize(
    "cookie",
    [None, "", "x", "a" * 22 + "." + "0" * 64, "a" * 22 + "." + "0" * 63, "." * 87],
)
def test_anything_but_an_issued_cookie_is_unknown(cookie: str | None) -> None:
    assert known_device(SIGNER, "acct-a", cookie) is None
