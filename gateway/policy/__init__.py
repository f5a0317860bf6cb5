"""2FA policy: who must use two-factor authentication, how, and by when (ATO / Xero rules).

The package is pure: no files, no store. gateway.policy_store reads policy files.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    from pathlib import Path

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
    "load_policy_file",
    "parse_duration",
    "parse_policy",
    "parse_policy_text",
    "policy_to_document",
]


def load_policy_file(path: str | Path) -> Policy:
    """Transitional: use ``gateway.policy_store.load_policy_file``, which reads the file.

    Kept only so that older imports from here still work; it does no I/O itself.
    """
    from gateway.policy_store import load_policy_file as load  # deferred: it imports this

    return load(path)
