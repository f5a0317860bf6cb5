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
from gateway.policy.document import PolicyError, parse_policy, parse_policy_text, policy_to_document
from gateway.policy.fields import (
    BACKUP_METHODS,
    FIELDS,
    PRIMARY_METHODS,
    PROFILES,
    ROLES,
    PolicyField,
    format_duration,
    parse_duration,
)
from gateway.policy.lint import LintWarning, lint
from gateway.policy.model import Policy

__all__ = [
    "BACKUP_METHODS",
    "COUNTRY_CODES",
    "FIELDS",
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
    "PolicyField",
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
