"""Authenticator-app codes: RFC 6238's own vectors, drift, replay, the URI, the QR code."""

from __future__ import annotations

import base64
import re
import xml.etree.ElementTree as ET
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.mfa.totp import (
    STANDARD,
    TotpSpec,
    code_at,
    grouped_key,
    is_fresh,
    matched_step,
    new_secret,
    provisioning_uri,
    qr_svg,
    step_at,
)


def _b32(seed: str) -> str:
    return base64.b32encode(seed.encode("ascii")).decode("ascii")


SEEDS = {
    "SHA1": _b32("12345678901234567890"),
    "SHA256": _b32("12345678901234567890123456789012"),
    "SHA512": _b32("1234567890123456789012345678901234567890123456789012345678901234"),
}

# RFC 6238 Appendix B (T0 = 0, X = 30, 8 digits).
RFC_6238 = [
    (59, "94287082", "46119246", "90693936"),
    (1111111109, "07081804", "68084774", "25091201"),
    (1111111111, "14050471", "67062674", "99943326"),
    (1234567890, "89005924", "91819424", "93441116"),
    (2000000000, "69279037", "90698825", "38618901"),
    (20000000000, "65353130", "77737706", "47863826"),
]
VECTORS = [
    pytest.param(algorithm, time, codes[i], id=f"{algorithm}-{time}")
    for time, *codes in RFC_6238
    for i, algorithm in enumerate(("SHA1", "SHA256", "SHA512"))
]
SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
NOW = 1_798_000_015.0  # in the middle of a step


@pytest.mark.parametrize(("algorithm", "time", "code"), VECTORS)
def test_codes_match_rfc_6238_appendix_b(algorithm: str, time: int, code: str) -> None:
    spec = TotpSpec(algorithm=algorithm, digits=8)
    assert code_at(SEEDS[algorithm], time, spec) == code
    assert matched_step(SEEDS[algorithm], code, now=time, spec=spec) == time // 30


def test_the_standard_spec_is_sha1_six_digits_thirty_seconds() -> None:
    assert TotpSpec(algorithm="SHA1", digits=6, step=30) == STANDARD
    assert code_at(SEEDS["SHA1"], 59) == "287082"  # the RFC's SHA1 code, last six digits


@pytest.mark.parametrize(
    "spec",
    [
        {"algorithm": "MD5"},
        {"digits": 5},
        {"digits": 11},
        {"step": 0},
    ],
)
def test_a_bad_spec_is_refused(spec: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="invalid TOTP spec"):
        TotpSpec(**spec)  # type: ignore[arg-type]


def test_new_secrets_are_160_random_bits_in_base32() -> None:
    secrets_made = {new_secret() for _ in range(50)}
    assert len(secrets_made) == 50
    for secret in secrets_made:
        assert re.fullmatch(r"[A-Z2-7]{32}", secret)
        assert len(base64.b32decode(secret)) == 20


@pytest.mark.parametrize("offset", [-1, 0, 1])
def test_a_code_one_step_either_side_is_accepted_with_its_step(offset: int) -> None:
    code = code_at(SECRET, NOW + 30 * offset)
    assert matched_step(SECRET, code, now=NOW) == step_at(NOW) + offset


@pytest.mark.parametrize("offset", [-3, -2, 2, 3])
def test_a_code_two_steps_away_is_refused(offset: int) -> None:
    code = code_at(SECRET, NOW + 30 * offset)
    # A code repeats across steps now and then; this secret and instant have no such clash.
    assert code not in {code_at(SECRET, NOW + 30 * k) for k in (-1, 0, 1)}
    assert matched_step(SECRET, code, now=NOW) is None


@pytest.mark.parametrize(
    "typed",
    [
        "",
        "12345",
        "1234567",
        "abcdef",
        "12345a",
        "\uff11\uff12\uff13\uff14\uff15\uff16",
        "\u00b2\u00b3\u2074\u2075\u2076\u2077",
        "123 45",
    ],
)
def test_typed_text_that_is_no_code_matches_nothing(typed: str) -> None:
    assert matched_step(SECRET, typed, now=NOW) is None


def test_spaces_and_dashes_in_a_typed_code_are_ignored() -> None:
    code = code_at(SECRET, NOW)
    assert matched_step(SECRET, f" {code[:3]} {code[3:]} ", now=NOW) == step_at(NOW)
    assert matched_step(SECRET, f"{code[:3]}-{code[3:]}", now=NOW) == step_at(NOW)


def test_a_wrong_code_is_refused() -> None:
    code = code_at(SECRET, NOW)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    assert matched_step(SECRET, wrong, now=NOW) is None


def test_the_step_follows_the_time_passed_in_not_the_wall_clock() -> None:
    early = 1_000_000_000.0
    assert matched_step(SECRET, code_at(SECRET, early), now=early) == step_at(early)
    assert matched_step(SECRET, code_at(SECRET, early), now=NOW) is None


def test_a_replayed_step_or_an_earlier_one_is_refused() -> None:
    step = matched_step(SECRET, code_at(SECRET, NOW), now=NOW)
    assert step is not None
    assert is_fresh(step, None)
    assert not is_fresh(step, step)  # the same code again
    assert not is_fresh(step - 1, step)  # an older code still inside the drift window
    assert is_fresh(step + 1, step)


def test_replay_within_the_drift_window_is_refused_after_a_later_step_was_used() -> None:
    # The code of the next step is used first (a fast phone); the current step's code,
    # still inside the window, must not work afterwards.
    last = matched_step(SECRET, code_at(SECRET, NOW + 30), now=NOW)
    earlier = matched_step(SECRET, code_at(SECRET, NOW), now=NOW + 5)
    assert last is not None
    assert earlier is not None
    assert not is_fresh(earlier, last)


@given(st.integers(min_value=30, max_value=2**33), st.integers(min_value=-1, max_value=1))
def test_any_secret_and_time_the_app_code_is_accepted_once(time: int, offset: int) -> None:
    secret = new_secret()
    step = matched_step(secret, code_at(secret, time + 30 * offset), now=time)
    assert step is not None
    assert step >= step_at(time) - 1
    assert step <= step_at(time) + 1
    assert is_fresh(step, None)
    assert not is_fresh(step, step)


def test_no_step_before_the_epoch_is_tried() -> None:
    assert matched_step(SECRET, code_at(SECRET, 0), now=10) == 0


def test_the_provisioning_uri_names_issuer_account_and_secret() -> None:
    uri = provisioning_uri(SECRET, account="ann+x@example.com", issuer="Acme Books")
    parts = urlsplit(uri)
    assert (parts.scheme, parts.netloc) == ("otpauth", "totp")
    assert unquote(parts.path) == "/Acme Books:ann+x@example.com"
    assert parse_qs(parts.query) == {"secret": [SECRET], "issuer": ["Acme Books"]}
    assert uri.startswith("otpauth://totp/Acme%20Books:ann%2Bx%40example.com?secret=")


def test_the_key_is_shown_in_groups_of_four() -> None:
    assert grouped_key(SECRET) == "JBSW Y3DP EHPK 3PXP JBSW Y3DP EHPK 3PXP"
    assert grouped_key(SECRET).replace(" ", "") == SECRET


def test_the_qr_code_is_well_formed_svg_without_scripts() -> None:
    svg = qr_svg(provisioning_uri(SECRET, account="a@example.com", issuer="Acme <Books> & Co"))
    assert not svg.startswith("<?xml")
    root = ET.fromstring(svg)  # noqa: S314 (our own output, checked for shape)
    assert root.tag == "svg"
    tags = {element.tag for element in root.iter()}
    assert tags <= {"svg", "title", "path"}
    for element in root.iter():
        assert not any(name.lower().startswith("on") or "href" in name for name in element.attrib)
    assert "script" not in svg.lower()
    assert root.findtext("title") == "QR code for your authenticator app"


def test_the_qr_code_changes_with_the_uri() -> None:
    first = provisioning_uri(new_secret(), account="a@example.com", issuer="Acme")
    second = provisioning_uri(new_secret(), account="a@example.com", issuer="Acme")
    assert qr_svg(first) != qr_svg(second)
