"""Policy lint: valid policies that are still unwise or fall short of their compliance profile."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from gateway.policy.fields import FIELDS, format_duration
from gateway.policy.model import Policy
from gateway.policy.reminder_points import point_time

ATO_PROFILE = "ato-dsp-osf"
# The ATO's Operational Security Framework lets a device be remembered for under 24 hours.
ATO_REMEMBER_LIMIT = timedelta(hours=24)
LONGEST_CODE_LIFETIME = timedelta(minutes=10)
# Warnings name a field by its document path, as parse errors do.
_PATH = {f.name: f.path for f in FIELDS}


@dataclass(frozen=True, kw_only=True)
class LintWarning:
    """One thing to reconsider: ``field`` is the document path, e.g. ``windows.remember_device``."""

    field: str
    message: str


def lint(policy: Policy, *, now: datetime) -> list[LintWarning]:
    """Warnings about ``policy`` as seen at ``now`` (an aware datetime), in a stable order."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("lint needs an aware datetime for now")
    warnings: list[LintWarning] = []

    def warn(name: str, message: str) -> None:
        warnings.append(LintWarning(field=_PATH[name], message=message))

    if policy.compliance_profile != ATO_PROFILE and "AU" in policy.countries:
        warn(
            "compliance_profile",
            f"the policy applies to AU but its profile is {policy.compliance_profile!r};"
            f" use {ATO_PROFILE!r} so it is held to the ATO's framework",
        )
    if policy.deadline < now.astimezone(UTC):  # in UTC, so instants compare, not wall times
        warn(
            "deadline",
            f"the deadline {policy.deadline.isoformat()} has passed: in-scope users who have"
            " not enrolled are already blocked",
        )
    if policy.primary_methods == frozenset({"sms"}):
        warn(
            "primary_methods",
            "SMS is the only primary method; SMS is a restricted authenticator and must never"
            " be the only option, so add totp",
        )
    if policy.backup_required_for and not policy.backup_methods:
        roles = ", ".join(sorted(policy.backup_required_for))
        warn(
            "backup_methods",
            f"a backup method is required for {roles} but no backup method is allowed,"
            " so those users can never comply",
        )
    if policy.code_lifetime > LONGEST_CODE_LIFETIME:
        warn(
            "code_lifetime",
            f"codes live for {format_duration(policy.code_lifetime)}; keep it at 10m or less",
        )
    if policy.compliance_profile == ATO_PROFILE and policy.remember_device >= ATO_REMEMBER_LIMIT:
        warn(
            "remember_device",
            f"devices are remembered for {format_duration(policy.remember_device)}; the ATO"
            " framework allows under 24 hours (e.g. 23h)",
        )
    early = [d for d in policy.reminder_days if point_time(policy, d) < policy.announce]
    if early and len(early) == len(policy.reminder_days):
        warn(
            "reminder_days",
            "every reminder point comes before the policy is announced"
            f" ({policy.announce.isoformat()}), so no reminder is ever sent",
        )
    return warnings
