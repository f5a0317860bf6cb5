"""Authenticator apps (RFC 6238): secrets, codes checked at a time passed in, replay refused.

The clock is always the caller's: ``for_time`` is passed to pyotp, never ``TOTP.now()``.
A code matches at most one step either side of now; the step it matched is returned so the
store can keep the last accepted step and refuse any step at or before it (``is_fresh``),
with a conditional UPDATE deciding when two submissions race.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyotp
import segno

from gateway.mfa.codes import typed_code

SECRET_BYTES = 20  # 160 bits, as RFC 4226 recommends for HMAC-SHA-1
DRIFT_STEPS = 1  # steps of clock drift accepted each way
APPS = ("Google Authenticator", "Microsoft Authenticator", "Authy", "1Password")

_DIGESTS: dict[str, Callable[..., Any]] = {
    "SHA1": hashlib.sha1,
    "SHA256": hashlib.sha256,
    "SHA512": hashlib.sha512,
}


@dataclass(frozen=True, kw_only=True)
class TotpSpec:
    """How codes are made: the gateway issues the default (SHA-1, 6 digits, 30 s, T0 = 0)."""

    algorithm: str = "SHA1"
    digits: int = 6
    step: int = 30

    def __post_init__(self) -> None:
        if self.algorithm not in _DIGESTS or not 6 <= self.digits <= 10 or self.step <= 0:
            raise ValueError(f"invalid TOTP spec: {self!r}")


STANDARD = TotpSpec()


def new_secret() -> str:
    """A fresh 160-bit secret from ``secrets``, as unpadded upper-case base32 (32 letters)."""
    return base64.b32encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii").rstrip("=")


def _totp(secret: str, spec: TotpSpec) -> pyotp.TOTP:
    return pyotp.TOTP(
        secret, digits=spec.digits, digest=_DIGESTS[spec.algorithm], interval=spec.step
    )


def step_at(now: float, spec: TotpSpec = STANDARD) -> int:
    """The time step (RFC 6238's T) that ``now`` falls in."""
    return int(now // spec.step)


def code_at(secret: str, now: float, spec: TotpSpec = STANDARD) -> str:
    """The code an authenticator app shows at ``now`` (for tests and the demo)."""
    return str(_totp(secret, spec).at(now))


def matched_step(
    secret: str, typed: str, *, now: float, spec: TotpSpec = STANDARD, drift: int = DRIFT_STEPS
) -> int | None:
    """The step whose code was typed, within ``drift`` steps of ``now``; None if none matches.

    Only checks the code; whether the step may still be used is ``is_fresh``'s judgement.
    """
    code = typed_code(typed, spec.digits)
    if code is None:
        return None
    totp = _totp(secret, spec)
    now_step = totp.timecode(now)
    found = None
    # Every step in the window is compared (in constant time), so the time taken says
    # nothing about which one matched; steps before the epoch do not exist.
    for offset in range(-drift, drift + 1):
        if now_step + offset >= 0 and hmac.compare_digest(
            totp.at(now, counter_offset=offset), code
        ):
            found = now_step + offset
    return found


def is_fresh(step: int, last_step: int | None) -> bool:
    """A matched step may be accepted only if it is later than the last accepted one."""
    return last_step is None or step > last_step


def provisioning_uri(secret: str, *, account: str, issuer: str) -> str:
    """``otpauth://totp/Issuer:account?secret=…&issuer=…``: what the QR code and link carry."""
    return str(_totp(secret, STANDARD).provisioning_uri(name=account, issuer_name=issuer))


def grouped_key(secret: str) -> str:
    """The secret in groups of four, for typing into an app by hand: ``ABCD EFGH …``."""
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


def qr_svg(uri: str) -> str:
    """The URI as a QR code in inline SVG (no XML declaration), safe to put in a page."""
    return str(
        segno.make(uri, error="m").svg_inline(
            scale=4, title="QR code for your authenticator app", svgclass="qr", lineclass=None
        )
    )
