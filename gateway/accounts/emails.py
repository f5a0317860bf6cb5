"""Email addresses as account names: written one way, and checked before an account is made."""

from __future__ import annotations

import re

MAX_EMAIL = 254  # RFC 5321's limit on a path, less the angle brackets
MAX_LOCAL = 64
# A DNS label: letters (any script), digits and inner hyphens, 1 to 63 of them.
_LABEL = re.compile(r"(?!-)[^\W_](?:[^\W_]|-){0,62}(?<!-)")


def normalise_email(text: str) -> str:
    """The one spelling an address is stored and looked up in: trimmed, lower case."""
    return text.strip().lower()


def email_problem(email: str) -> str | None:
    """Why ``email`` cannot name an account, or None: one ``@``, a local part, a dotted domain."""
    local, at, domain = email.rpartition("@")
    labels = domain.split(".")
    if (
        not at
        or not local
        or len(local) > MAX_LOCAL
        or len(email) > MAX_EMAIL
        or "@" in local
        or any(c.isspace() or not c.isprintable() for c in local)
        or len(labels) < 2
        or not all(_LABEL.fullmatch(label) for label in labels)
    ):
        return f"{email!r} is not an email address"
    return None
