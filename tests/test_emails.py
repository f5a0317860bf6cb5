"""Which addresses can name an account, for `user add` and `user import` alike."""

from __future__ import annotations

import pytest

from gateway.accounts.emails import email_problem, normalise_email


@pytest.mark.parametrize(
    "email",
    ["ava@harbour.example", "a.b+tag@mail.example.com.au", "josé@bücher.example", "x@a-b.co"],
)
def test_these_are_email_addresses(email: str) -> None:
    assert email_problem(email) is None


@pytest.mark.parametrize(
    "email",
    [
        "not-an-email",
        "",
        "@harbour.example",
        "ava@",
        "ava@harbour",  # no dot: not a domain a mail could reach
        "ava@@harbour.example",
        "a b@harbour.example",
        "ava@harbour..example",
        "ava@-harbour.example",
        "ava@harbour_co.example",
        "ava@harbour.example\n",
        f"{'a' * 65}@harbour.example",
        f"ava@{'b' * 250}.example",
    ],
)
def test_these_are_not(email: str) -> None:
    assert email_problem(email) == f"{email!r} is not an email address"


def test_addresses_are_stored_trimmed_and_in_lower_case() -> None:
    assert normalise_email("  Ava@Harbour.Example ") == "ava@harbour.example"
