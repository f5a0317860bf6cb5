"""Where codes go: mobile numbers read into E.164 (Australian by default), email addresses."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.mfa.destinations import (
    DestinationError,
    display_phone,
    masked_email,
    masked_phone,
    normalise_backup_mobile,
    normalise_email,
    normalise_mobile,
)


@pytest.mark.parametrize(
    "typed",
    [
        "0412 345 678",
        "0412345678",
        "(04) 1234-5678",
        "+61412345678",
        "+61 412 345 678",
        "+61 0412 345 678",
        " 0412.345.678 ",
    ],
)
def test_an_australian_mobile_is_read_as_e164(typed: str) -> None:
    assert normalise_mobile(typed) == "+61412345678"
    assert display_phone(normalise_mobile(typed)) == "+61 412 345 678"


@pytest.mark.parametrize(
    ("typed", "e164"),
    [
        ("+64 21 123 4567", "+64211234567"),
        ("+44 7911 123456", "+447911123456"),
        ("+1 650 253 0000", "+16502530000"),  # North America: mobiles look like landlines
    ],
)
def test_a_mobile_abroad_is_read_with_its_country_code(typed: str, e164: str) -> None:
    assert normalise_mobile(typed) == e164


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("", "Enter a mobile number"),
        ("call me", "Enter a mobile number"),
        ("0412 ABC DEF", "Enter a mobile number"),
        ("+", "Enter a mobile number"),
        ("0412 345 678 ext 9", "Enter a mobile number"),
        ("9" * 40, "Enter a mobile number"),
        ("000", "too short"),
        ("04123", "not a valid phone number"),
        ("0412 345 678 999", "not a valid phone number"),
        ("19001234567", "wrong number of digits"),
        ("0412 345 678 999 1", "too many digits"),
        ("+999 412 345 678", "country code does not exist"),
        ("1900 123 456", "Premium-rate"),
        ("1300 123 456", "shared-cost"),
        ("131111", "shared-cost"),
        ("1800 123 456", "free-call"),
        ("+44 909 879 0000", "Premium-rate"),
        ("02 9374 4000", "not a mobile number"),
        ("+61 2 9374 4000", "not a mobile number"),
    ],
)
def test_numbers_that_cannot_take_a_code_are_refused_with_a_reason(
    typed: str, message: str
) -> None:
    with pytest.raises(DestinationError, match=message):
        normalise_mobile(typed)


def test_the_backup_number_must_differ_from_the_primary() -> None:
    with pytest.raises(DestinationError, match="must differ"):
        normalise_backup_mobile("0412 345 678", primary="+61412345678")
    assert normalise_backup_mobile("0412 345 679", primary="+61412345678") == "+61412345679"
    assert normalise_backup_mobile("0412 345 678", primary=None) == "+61412345678"


@given(st.from_regex(r"04[0-9]{8}", fullmatch=True))
def test_reading_a_number_is_idempotent(typed: str) -> None:
    try:
        e164 = normalise_mobile(typed)
    except DestinationError:
        return  # a range not yet given out
    assert e164 == "+61" + typed[1:]
    assert normalise_mobile(e164) == e164
    assert normalise_mobile(display_phone(e164)) == e164


@given(st.text(max_size=40))
def test_any_text_is_a_number_or_a_clear_refusal(typed: str) -> None:
    try:
        e164 = normalise_mobile(typed)
    except DestinationError as error:
        message = str(error)
        assert message.endswith(".")
    else:
        assert e164.startswith("+")
        assert e164[1:].isdigit()
        assert normalise_mobile(e164) == e164


def test_masked_forms_hide_all_but_the_end() -> None:
    assert masked_phone("+61412345678") == "+61 \u2022\u2022\u2022 \u2022\u2022\u2022 678"
    assert masked_phone("not a number") == "\u2022\u2022\u2022ber"
    assert masked_email("ann@example.com") == "a\u2022\u2022\u2022@example.com"


@pytest.mark.parametrize(
    ("typed", "normal"),
    [
        ("ann@example.com", "ann@example.com"),
        ("  Ann.Lee+2fa@Example.COM ", "Ann.Lee+2fa@example.com"),
        ("a@sub.example.com.au", "a@sub.example.com.au"),
        ("o'brien@example.ie", "o'brien@example.ie"),
        ("a@m\u00fcnchen.de", "a@xn--mnchen-3ya.de"),
    ],
)
def test_an_email_address_is_read_with_its_domain_in_lower_case(typed: str, normal: str) -> None:
    assert normalise_email(typed) == normal


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("", "Enter an email address"),
        ("ann", "Enter an email address"),
        ("@example.com", "Enter an email address"),
        ("ann@", "Enter an email address"),
        ("a..b@example.com", "before the @"),
        (".ann@example.com", "before the @"),
        ("ann lee@example.com", "before the @"),
        ('"ann"@example.com', "before the @"),
        ("a" * 65 + "@example.com", "before the @"),
        ("ann@localhost", "after the @"),
        ("ann@example", "after the @"),
        ("ann@-example.com", "after the @"),
        ("ann@example..com", "after the @"),
        ("ann@10.0.0.1", "after the @"),
        ("ann@exa mple.com", "after the @"),
        ("ann@" + "a" * 250 + ".com", "Enter an email address"),
    ],
)
def test_malformed_email_addresses_are_refused(typed: str, message: str) -> None:
    with pytest.raises(DestinationError, match=message):
        normalise_email(typed)


@given(st.emails())
def test_reading_an_email_address_is_idempotent(typed: str) -> None:
    try:
        normal = normalise_email(typed)
    except DestinationError:
        return  # Hypothesis makes some the checker is stricter about (quoted, IP literal)
    assert normalise_email(normal) == normal
