"""Who may reset whose 2FA, how fresh the asker's check must be, what support must record, and
what the user is told: pure rules, with time passed in."""

from __future__ import annotations

import dataclasses

import pytest

from gateway.secondfactor.resets import (
    STEP_UP_SECONDS,
    ResetHow,
    fresh_enough,
    member_refusal,
    reset_notice,
    support_problems,
    team_refusal,
)
from gateway.store.records import SecondFactor, User

NOW = 1_798_000_000.0
PRINCIPAL = User(
    id="usr_p",
    org_id="org_1",
    email="ava@harbour.example",
    display_name="Ava",
    role="principal",
    password_hash="x",
    disabled=False,
    created_at=0.0,
)
MEMBER = dataclasses.replace(PRINCIPAL, id="usr_m", email="max@harbour.example", role="member")


def _slug(refusal: object) -> str | None:
    return getattr(refusal, "slug", None)


def test_only_a_principal_with_their_own_2fa_may_reset() -> None:
    assert team_refusal(PRINCIPAL, True) is None
    assert _slug(team_refusal(PRINCIPAL, False)) == "own-mfa-required"
    assert _slug(team_refusal(MEMBER, True)) == "not-a-principal"
    assert _slug(team_refusal(MEMBER, False)) == "not-a-principal"


@pytest.mark.parametrize(
    ("target", "slug"),
    [
        (MEMBER, None),
        (None, "member-not-found"),
        (dataclasses.replace(MEMBER, org_id="org_2"), "member-not-found"),
        (dataclasses.replace(MEMBER, role="principal"), "principal-reset-by-support"),
        (PRINCIPAL, "principal-reset-by-support"),
        (dataclasses.replace(MEMBER, disabled=True), "member-disabled"),
    ],
)
def test_which_members_a_principal_may_reset(target: User | None, slug: str | None) -> None:
    assert _slug(member_refusal(PRINCIPAL, target, "usr_m")) == slug


def test_the_askers_check_must_be_five_minutes_old_at_most() -> None:
    assert not fresh_enough(None, NOW)
    assert fresh_enough(SecondFactor(method="totp", at=NOW - STEP_UP_SECONDS), NOW)
    assert not fresh_enough(SecondFactor(method="totp", at=NOW - STEP_UP_SECONDS - 1), NOW)
    # A remembered device let the session in without a code: never a fresh factor.
    assert not fresh_enough(SecondFactor(method="device", at=NOW), NOW)


def test_support_must_say_who_checked_the_identity_and_why() -> None:
    assert support_problems("Sam, video call", "lost phone") == []
    assert support_problems("", "lost phone") == [
        "verified_by: required (say who checked the identity, and how / why)"
    ]
    assert len(support_problems("  ", "\t")) == 2
    assert support_problems("x" * 501, "r") == ["verified_by: at most 500 printable characters"]
    assert support_problems("Sam\x00", "r") == ["verified_by: at most 500 printable characters"]


def test_the_notice_says_who_and_what_next_and_carries_no_secret() -> None:
    how = ResetHow(via="support-cli", by="cli (sam)", actor="cli", verified_by="Sam, ID checked")
    notice = reset_notice(MEMBER, how, NOW)
    assert notice.to == MEMBER.email
    assert "our support team" in notice.body
    assert "set up two-factor authentication again" in notice.body
    assert "Sam" not in notice.body  # who checked the identity stays in the audit trail
    assert "http" not in notice.body  # no link to follow
    team = reset_notice(MEMBER, dataclasses.replace(how, via="team"), NOW)
    assert "your organisation's principal" in team.body
