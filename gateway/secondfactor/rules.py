"""The windows and limits that govern one user's second factor, read from the policy in force."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.mfa.attempts import attempt_rule, policy_attempt_rule
from gateway.policy import EffectivePolicy
from gateway.throttle import ThrottleRule

# For a user no policy applies to who set a factor up anyway: as strict as the shipped policy,
# and a remembered device lasts half a day.
_FALLBACK_STEP = 600.0
_FALLBACK_REMEMBER = 12 * 3600.0
_FALLBACK_ATTEMPTS = attempt_rule(max_failed=5, lockout=900.0)


@dataclass(frozen=True, kw_only=True)
class Rules:
    """How long a started step may take, how long "don't ask again" lasts, the attempt
    limit, the primary and backup methods a user may set up, the roles that must add a
    backup, and how long a sent code lives."""

    step_lifetime: float
    remember_device: float
    attempts: ThrottleRule
    primary_methods: frozenset[str]
    backup_methods: frozenset[str]
    backup_required_for: frozenset[str] = frozenset()
    code_lifetime: float = _FALLBACK_STEP

    def backup_required(self, role: str) -> bool:
        """Whether a user of ``role`` must add a backup method before enrolment finishes."""
        return role in self.backup_required_for

    @classmethod
    def of(cls, effective: EffectivePolicy | None) -> Rules:
        """The rules of the strictest policy that applies, or the fallback when none does."""
        if effective is None:
            return cls(
                step_lifetime=_FALLBACK_STEP,
                remember_device=_FALLBACK_REMEMBER,
                attempts=_FALLBACK_ATTEMPTS,
                primary_methods=frozenset({"totp"}),
                backup_methods=frozenset(),
            )
        return cls(
            step_lifetime=effective.step_lifetime.total_seconds(),
            remember_device=effective.remember_device.total_seconds(),
            attempts=policy_attempt_rule(effective),
            primary_methods=effective.primary_methods,
            backup_methods=effective.backup_methods,
            backup_required_for=effective.backup_required_for,
            code_lifetime=effective.code_lifetime.total_seconds(),
        )


def duration_text(seconds: float) -> str:
    """``30 days``, ``23 hours``, ``1 hour``, ``10 minutes``: a window as a page states it."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = int(seconds // size)
            return f"{count} {unit}{'' if count == 1 else 's'}"
    minutes = max(1, round(seconds / 60))
    return f"{minutes} minute{'' if minutes == 1 else 's'}"
