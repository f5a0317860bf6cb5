"""2FA policy: who must use two-factor authentication, how, and by when (ATO / Xero rules).

The package is pure: no files, no store. gateway.enforcement.policy_files reads policy files.
"""

from __future__ import annotations

from gateway.policy.countries import COUNTRY_CODES
from gateway.policy.decision import (
    Decision,
    EffectivePolicy,
    Enrolment,
    Facts,
    MfaHeader,
    Outcome,
    SessionState,
    Subject,
    TenantFact,
    applicable,
    combine,
    decide,
)
from gateway.policy.document import (
    PolicyError,
    format_duration,
    parse_duration,
    parse_policy,
    parse_policy_text,
    policy_to_document,
)
from gateway.policy.lint import LintWarning, lint
from gateway.policy.model import BACKUP_METHODS, PRIMARY_METHODS, PROFILES, ROLES, Policy

__all__ = [
    "BACKUP_METHODS",
    "COUNTRY_CODES",
    "PRIMARY_METHODS",
    "PROFILES",
    "ROLES",
    "Decision",
    "EffectivePolicy",
    "Enrolment",
    "Facts",
    "LintWarning",
    "MfaHeader",
    "Outcome",
    "Policy",
    "PolicyError",
    "SessionState",
    "Subject",
    "TenantFact",
    "applicable",
    "combine",
    "decide",
    "format_duration",
    "lint",
    "parse_duration",
    "parse_policy",
    "parse_policy_text",
    "policy_to_document",
]
