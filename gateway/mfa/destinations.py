"""Where codes may be sent: mobile numbers (E.164) and email addresses, checked and shown.

Numbers are read with ``phonenumbers`` (Google's libphonenumber metadata): it knows each
country's lengths and which ranges are mobile, premium-rate, shared-cost or free-call, which
no hand-written pattern keeps up with. A number without a country code is read as
Australian, so ``0412 345 678`` becomes ``+61412345678``, shown as ``+61 412 345 678``.
"""

from __future__ import annotations

import re

import phonenumbers
from phonenumbers import PhoneNumberFormat, PhoneNumberType, ValidationResult

from gateway.errors import GatewayError

DEFAULT_REGION = "AU"

# Ranges where a mobile and a landline look the same (the US and Canada): SMS may reach them.
_MOBILE_TYPES = frozenset({PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE})
_PAID_TYPES = frozenset(
    {
        PhoneNumberType.PREMIUM_RATE,
        PhoneNumberType.SHARED_COST,
        PhoneNumberType.TOLL_FREE,
        PhoneNumberType.UAN,
    }
)
_TYPED_NUMBER = re.compile(r"\+?[0-9 ()./-]+")
_LOCAL_PART = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")

ENTER_MOBILE = "Enter a mobile number, such as 0412 345 678 or +61 412 345 678."
SAME_AS_PRIMARY = (
    "Your backup number must differ from the number you use to sign in: enter another "
    "mobile number, or use an email address as your backup."
)
_NO_COUNTRY = "That country code does not exist. " + ENTER_MOBILE


class DestinationError(GatewayError):
    """A phone number or email address that codes cannot be sent to; the message says why."""


def normalise_mobile(typed: str, *, region: str = DEFAULT_REGION) -> str:
    """The mobile number as E.164 (``+61412345678``), or DestinationError saying what is wrong.

    Without a leading ``+`` the number is read as one of ``region``'s.
    """
    text = typed.strip()
    if not text or len(text) > 32 or _TYPED_NUMBER.fullmatch(text) is None:
        raise DestinationError(ENTER_MOBILE)
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as error:
        if error.error_type == phonenumbers.NumberParseException.INVALID_COUNTRY_CODE:
            raise DestinationError(_NO_COUNTRY) from None
        raise DestinationError(ENTER_MOBILE) from None
    length = phonenumbers.is_possible_number_with_reason(number)
    if length in (ValidationResult.TOO_SHORT, ValidationResult.IS_POSSIBLE_LOCAL_ONLY):
        raise DestinationError(
            "That number is too short for a mobile number: enter all its digits. " + ENTER_MOBILE
        )
    if length == ValidationResult.TOO_LONG:
        raise DestinationError("That number has too many digits. " + ENTER_MOBILE)
    if length == ValidationResult.INVALID_LENGTH:
        raise DestinationError("That number has the wrong number of digits. " + ENTER_MOBILE)
    if length == ValidationResult.INVALID_COUNTRY_CODE:
        raise DestinationError(_NO_COUNTRY)
    if not phonenumbers.is_valid_number(number):
        raise DestinationError(
            "That is not a valid phone number: check the digits, and for a number outside "
            "Australia start with + and the country code."
        )
    kind = phonenumbers.number_type(number)
    if kind in _PAID_TYPES:
        raise DestinationError(
            "Premium-rate, shared-cost and free-call numbers cannot receive codes. " + ENTER_MOBILE
        )
    if kind not in _MOBILE_TYPES:
        raise DestinationError(
            "Codes are sent by SMS, and that is not a mobile number. " + ENTER_MOBILE
        )
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


def normalise_backup_mobile(
    typed: str, *, primary: str | None, region: str = DEFAULT_REGION
) -> str:
    """A backup mobile number as E.164; it must differ from the ``primary`` (E.164) number."""
    number = normalise_mobile(typed, region=region)
    if number == primary:
        raise DestinationError(SAME_AS_PRIMARY)
    return number


def display_phone(e164: str) -> str:
    """An E.164 number as people read it: ``+61 412 345 678``."""
    return phonenumbers.format_number(phonenumbers.parse(e164), PhoneNumberFormat.INTERNATIONAL)


def masked_phone(e164: str) -> str:
    """The number with all but its country code and last three digits hidden (for logs and
    pages); something that is no number is hidden but for its last three characters."""
    try:
        shown = display_phone(e164)
    except phonenumbers.NumberParseException:
        return "•••" + e164[-3:]
    country, _, rest = shown.partition(" ")
    kept = 3
    digits = sum(c.isdigit() for c in rest)
    out: list[str] = []
    seen = 0
    for c in rest:
        if c.isdigit():
            seen += 1
            out.append(c if seen > digits - kept else "•")
        else:
            out.append(c)
    return f"{country} {''.join(out)}"


def normalise_email(typed: str) -> str:
    """An email address in the form codes are sent to (the domain in lower-case ASCII, an
    international one in its ``xn--`` form), or DestinationError. Checks the syntax only;
    the code sent to it proves the rest."""
    text = typed.strip()
    example = "Enter an email address such as name@example.com."
    local, at, domain = text.rpartition("@")
    if not at or not local or not domain or len(text) > 254:
        raise DestinationError(example)
    if len(local) > 64 or _LOCAL_PART.fullmatch(local) is None:
        raise DestinationError("The part before the @ is not valid in an email address. " + example)
    try:
        ascii_domain = domain.lower().encode("idna").decode("ascii")
    except UnicodeError:
        raise DestinationError("The part after the @ is not a domain name. " + example) from None
    labels = ascii_domain.split(".")
    if (
        len(labels) < 2
        or len(ascii_domain) > 253
        or any(_LABEL.fullmatch(label) is None for label in labels)
        or labels[-1].isdigit()
    ):
        raise DestinationError("The part after the @ is not a domain name. " + example)
    return f"{local}@{ascii_domain}"


def masked_email(address: str) -> str:
    """The address with its local part hidden but for the first letter: ``a•••@example.com``."""
    local, _, domain = address.rpartition("@")
    return f"{local[:1]}•••@{domain}"
