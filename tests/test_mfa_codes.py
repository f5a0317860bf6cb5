"""One-time codes for SMS and email, and recovery codes: made at random, kept hashed, used once."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.mfa.codes import (
    CodeBinding,
    CodeVerdict,
    StoredCode,
    issue_code,
    judge_code,
    typed_code,
)
from gateway.mfa.digests import bound_digest
from gateway.mfa.recovery import (
    ALPHABET,
    CODE_COUNT,
    candidate_digests,
    issue_recovery_codes,
    matching_digest,
    normalise_recovery_code,
    recovery_digest,
)

KEY = b"k" * 32
OLD_KEY = b"o" * 32
NOW = 1_798_000_000.0
LIFETIME = 600.0  # the shipped policy's windows.code_lifetime
BINDING = CodeBinding(user_id="u1", purpose="enrol-backup", destination="+61412345678")


def _stored(binding: CodeBinding = BINDING) -> tuple[str, StoredCode]:
    issued = issue_code(key=KEY, binding=binding, now=NOW, lifetime=LIFETIME)
    return issued.code, StoredCode(digest=issued.digest, expires_at=issued.expires_at, used=False)


def _judge(
    typed: str, stored: StoredCode, *, now: float = NOW, binding: CodeBinding = BINDING
) -> CodeVerdict:
    return judge_code(key=KEY, binding=binding, stored=stored, typed=typed, now=now)


def test_a_code_is_six_random_digits_kept_only_as_a_keyed_hash() -> None:
    issued = issue_code(key=KEY, binding=BINDING, now=NOW, lifetime=LIFETIME)
    assert re.fullmatch(r"[0-9]{6}", issued.code)
    assert issued.code not in issued.digest
    assert re.fullmatch(r"[0-9a-f]{64}", issued.digest)
    assert issued.expires_at == NOW + LIFETIME
    assert (
        len(
            {
                issue_code(key=KEY, binding=BINDING, now=NOW, lifetime=LIFETIME).code
                for _ in range(200)
            }
        )
        > 150
    )


def test_more_digits_can_be_asked_for_but_never_fewer_than_six() -> None:
    assert len(issue_code(key=KEY, binding=BINDING, now=NOW, lifetime=LIFETIME, digits=8).code) == 8
    with pytest.raises(ValueError, match="at least 6 digits"):
        issue_code(key=KEY, binding=BINDING, now=NOW, lifetime=LIFETIME, digits=5)
    with pytest.raises(ValueError, match="positive lifetime"):
        issue_code(key=KEY, binding=BINDING, now=NOW, lifetime=0)


def test_a_short_key_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        issue_code(key=b"short", binding=BINDING, now=NOW, lifetime=LIFETIME)


def test_the_right_code_in_time_is_consumed() -> None:
    code, stored = _stored()
    assert _judge(code, stored) is CodeVerdict.CONSUMED
    assert _judge(f"{code[:3]} {code[3:]}", stored, now=NOW + LIFETIME - 1) is CodeVerdict.CONSUMED


def test_a_code_is_refused_after_ten_minutes() -> None:
    code, stored = _stored()
    assert _judge(code, stored, now=NOW + LIFETIME) is CodeVerdict.EXPIRED
    assert _judge("000000", stored, now=NOW + LIFETIME + 1) is CodeVerdict.EXPIRED


def test_a_used_code_is_refused() -> None:
    code, stored = _stored()
    spent = StoredCode(digest=stored.digest, expires_at=stored.expires_at, used=True)
    assert _judge(code, spent) is CodeVerdict.USED


@pytest.mark.parametrize("typed", ["", "12345", "1234567", "abcdef", "x" * 10_000])
def test_text_that_is_no_code_is_wrong(typed: str) -> None:
    _code, stored = _stored()
    assert _judge(typed, stored) is CodeVerdict.WRONG


def test_a_wrong_code_is_refused() -> None:
    code, stored = _stored()
    assert _judge(f"{(int(code) + 1) % 10**6:06d}", stored) is CodeVerdict.WRONG


@pytest.mark.parametrize(
    "other",
    [
        CodeBinding(user_id="u2", purpose="enrol-backup", destination="+61412345678"),
        CodeBinding(user_id="u1", purpose="challenge", destination="+61412345678"),
        CodeBinding(user_id="u1", purpose="enrol-backup", destination="+61412345679"),
    ],
    ids=["another-user", "another-step", "another-destination"],
)
def test_a_code_for_another_user_step_or_destination_is_wrong(other: CodeBinding) -> None:
    code, stored = _stored()
    assert _judge(code, stored, binding=other) is CodeVerdict.WRONG


def test_a_code_hashed_under_another_key_does_not_match() -> None:
    code, stored = _stored()
    verdict = judge_code(key=OLD_KEY, binding=BINDING, stored=stored, typed=code, now=NOW)
    assert verdict is CodeVerdict.WRONG


def test_the_binding_parts_cannot_run_into_each_other() -> None:
    assert bound_digest(KEY, "1", "ab", "c") != bound_digest(KEY, "1", "a", "bc")
    assert bound_digest(KEY, "1", "a:b") != bound_digest(KEY, "1", "a", "b")


@given(
    user_id=st.text(min_size=1, max_size=20),
    purpose=st.sampled_from(["enrol-primary", "enrol-backup", "challenge"]),
    destination=st.text(min_size=1, max_size=40),
    elapsed=st.floats(min_value=0, max_value=LIFETIME - 0.001),
)
def test_any_issued_code_is_consumed_once_in_its_lifetime(
    user_id: str, purpose: str, destination: str, elapsed: float
) -> None:
    binding = CodeBinding(user_id=user_id, purpose=purpose, destination=destination)
    issued = issue_code(key=KEY, binding=binding, now=NOW, lifetime=LIFETIME)
    stored = StoredCode(digest=issued.digest, expires_at=issued.expires_at, used=False)
    assert _judge(issued.code, stored, now=NOW + elapsed, binding=binding) is CodeVerdict.CONSUMED
    spent = StoredCode(digest=issued.digest, expires_at=issued.expires_at, used=True)
    assert _judge(issued.code, spent, now=NOW + elapsed, binding=binding) is CodeVerdict.USED


_SEPARATORS = st.sampled_from(["", "", " ", "-", "  ", "\t"])


@given(
    st.text(alphabet="0123456789", min_size=6, max_size=6),
    st.lists(_SEPARATORS, min_size=7, max_size=7),
)
def test_a_code_is_read_whatever_spaces_and_dashes_it_is_typed_with(
    code: str, separators: list[str]
) -> None:
    typed = "".join(sep + digit for sep, digit in zip(separators, code, strict=False))
    typed += separators[-1]
    assert typed_code(typed, 6) == code
    assert typed_code(code, 6) == code


@given(st.text(max_size=30))
def test_anything_read_as_a_code_is_six_ascii_digits(typed: str) -> None:
    code = typed_code(typed, 6)
    assert code is None or (re.fullmatch(r"[0-9]{6}", code) and typed_code(code, 6) == code)


# Recovery codes.


def test_ten_distinct_readable_recovery_codes_of_fifty_bits() -> None:
    issued = issue_recovery_codes(key=KEY, user_id="u1")
    assert len(issued.codes) == CODE_COUNT == 10
    assert len(set(issued.codes)) == 10
    assert len(ALPHABET) == 32  # 5 bits a character, ten characters
    for code in issued.codes:
        assert re.fullmatch(r"[0-9a-hjkmnp-tv-z]{5}-[0-9a-hjkmnp-tv-z]{5}", code)
    assert issued.digests == tuple(
        recovery_digest(key=KEY, user_id="u1", code=c) for c in issued.codes
    )
    assert not any(code in digest for code in issued.codes for digest in issued.digests)


@pytest.mark.parametrize(
    ("typed", "normal"),
    [
        ("abcde-fghjk", "abcde-fghjk"),
        ("ABCDE-FGHJK", "abcde-fghjk"),
        ("  abcde fghjk ", "abcde-fghjk"),
        ("abcdefghjk", "abcde-fghjk"),
        ("a-b-c-d-e-f-g-h-j-k", "abcde-fghjk"),
        ("oil00-11111", "01100-11111"),  # o, i and l read as the digits they look like
        ("abcde-fghj", None),
        ("abcde-fghjkm", None),
        ("abcde-fghju", None),  # u is not in the alphabet
        ("abcde_fghjk", None),
        ("", None),
    ],
)
def test_typed_recovery_codes_are_read_leniently(typed: str, normal: str | None) -> None:
    assert normalise_recovery_code(typed) == normal


@given(
    st.text(alphabet=ALPHABET, min_size=10, max_size=10),
    st.lists(_SEPARATORS, min_size=11, max_size=11),
    st.booleans(),
)
def test_a_recovery_code_is_read_whatever_case_spaces_and_dashes(
    code: str, separators: list[str], upper: bool
) -> None:
    normal = f"{code[:5]}-{code[5:]}"
    typed = "".join(sep + char for sep, char in zip(separators, code, strict=False))
    typed += separators[-1]
    assert normalise_recovery_code(typed.upper() if upper else typed) == normal
    assert normalise_recovery_code(normal) == normal


@given(st.text(max_size=40))
def test_anything_read_as_a_recovery_code_is_in_its_stored_form(typed: str) -> None:
    normal = normalise_recovery_code(typed)
    assert normal is None or normalise_recovery_code(normal) == normal


def test_a_recovery_code_matches_its_own_digest_once_typed_any_way() -> None:
    issued = issue_recovery_codes(key=KEY, user_id="u1")
    unused = set(issued.digests)
    code = issued.codes[3]
    found = matching_digest(
        keys=[KEY], user_id="u1", typed=code.upper().replace("-", " "), unused=unused
    )
    assert found == issued.digests[3]
    unused.discard(found)  # the store spends it
    assert matching_digest(keys=[KEY], user_id="u1", typed=code, unused=unused) is None


def test_a_recovery_code_of_another_user_or_a_made_up_one_matches_nothing() -> None:
    issued = issue_recovery_codes(key=KEY, user_id="u1")
    unused = set(issued.digests)
    assert matching_digest(keys=[KEY], user_id="u2", typed=issued.codes[0], unused=unused) is None
    assert matching_digest(keys=[KEY], user_id="u1", typed="zzzzz-zzzzz", unused=unused) is None
    assert matching_digest(keys=[KEY], user_id="u1", typed="not a code", unused=unused) is None


def test_a_recovery_code_kept_under_a_previous_key_still_matches() -> None:
    issued = issue_recovery_codes(key=OLD_KEY, user_id="u1")
    found = matching_digest(
        keys=[KEY, OLD_KEY], user_id="u1", typed=issued.codes[0], unused=issued.digests
    )
    assert found == issued.digests[0]
    assert candidate_digests(keys=[KEY, OLD_KEY], user_id="u1", typed=issued.codes[0])[1] == found
    assert candidate_digests(keys=[KEY], user_id="u1", typed="nope") == ()
