"""One-time codes sent by SMS or email: made from ``secrets``, kept as a keyed hash, judged once.

The store keeps the digest, the expiry and whether the code was used; ``judge_code`` says
what a typed code is worth at a given time, and the store makes "consumed" atomic (mark it
used only where it is still unused).
"""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass

from gateway.mfa.digests import bound_digest, digests_match

CODE_DIGITS = 6


@dataclass(frozen=True, kw_only=True)
class CodeBinding:
    """What a code is for: a user, a step (``enrol-backup``, ``challenge``…), a destination."""

    user_id: str
    purpose: str
    destination: str  # E.164 number or email address the code was sent to


@dataclass(frozen=True, kw_only=True)
class IssuedCode:
    """A fresh code: ``code`` is sent and forgotten; ``digest`` and ``expires_at`` are kept."""

    code: str
    digest: str
    expires_at: float


@dataclass(frozen=True, kw_only=True)
class StoredCode:
    """What the store holds of a sent code."""

    digest: str
    expires_at: float
    used: bool


class CodeVerdict(enum.Enum):
    CONSUMED = "consumed"  # right, in time, unused: the store must now mark it used
    WRONG = "wrong"
    EXPIRED = "expired"  # the step starts over with a new code
    USED = "used"


def typed_code(typed: str, digits: int) -> str | None:
    """The digits of a code as typed (spaces and dashes dropped), or None if not a code."""
    code = "".join(typed.split()).replace("-", "")
    return code if len(code) == digits and code.isascii() and code.isdigit() else None


def _digest(key: bytes, binding: CodeBinding, code: str) -> str:
    return bound_digest(key, code, "code", binding.user_id, binding.purpose, binding.destination)


def issue_code(
    *, key: bytes, binding: CodeBinding, now: float, lifetime: float, digits: int = CODE_DIGITS
) -> IssuedCode:
    """A new ``digits``-digit code from ``secrets``, valid for ``lifetime`` seconds from now."""
    if digits < CODE_DIGITS or lifetime <= 0:
        raise ValueError(f"codes need at least {CODE_DIGITS} digits and a positive lifetime")
    code = f"{secrets.randbelow(10**digits):0{digits}d}"
    return IssuedCode(code=code, digest=_digest(key, binding, code), expires_at=now + lifetime)


def judge_code(
    *,
    key: bytes,
    binding: CodeBinding,
    stored: StoredCode,
    typed: str,
    now: float,
    digits: int = CODE_DIGITS,
) -> CodeVerdict:
    """What ``typed`` is worth against the code sent for ``binding``, at ``now``.

    A code lives until ``expires_at`` (exclusive); the digest comparison takes the same
    time whatever was typed.
    """
    if now >= stored.expires_at:
        return CodeVerdict.EXPIRED
    if stored.used:
        return CodeVerdict.USED
    code = typed_code(typed, digits)
    # Something shaped like no code is still hashed, so every refusal costs the same.
    candidate = _digest(key, binding, code if code is not None else typed[:64])
    if code is None or not digests_match(candidate, stored.digest):
        return CodeVerdict.WRONG
    return CodeVerdict.CONSUMED
