"""How a setting is declared (its default, documentation, check and environment variable),
and the checks the sections use."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import field
from typing import Any
from urllib.parse import urlsplit

Check = Callable[[Any], str | None]


def setting(default: Any, *, doc: str, check: Check | None = None, env: str | None = None) -> Any:
    """Declare one setting: its default, the line that documents it, and how to check it.

    A setting with ``env`` is a secret: it may also come from ``<key>_file`` (a path whose
    contents are the value) or from the named environment variable, and is left out of the
    config's repr, so a config printed or logged never shows it.
    """
    metadata = {"doc": doc, "check": check, "env": env}
    return field(default=default, repr=env is None, metadata=metadata)


def check_port(value: int) -> str | None:
    return None if 0 <= value <= 65535 else "must be a port number from 0 to 65535"


def check_positive(value: float) -> str | None:
    return None if value > 0 else "must be greater than zero"


def check_http_url(value: str) -> str | None:
    if value == "":
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return "must be an http:// or https:// URL"
    return None


def check_required_http_url(value: str) -> str | None:
    return "is required" if value == "" else check_http_url(value)


def check_networks(value: tuple[str, ...]) -> str | None:
    for item in value:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            return f"{item!r} is not an IP address or network"
    return None


def check_hosts(value: tuple[str, ...]) -> str | None:
    for item in value:
        if not item or item != item.strip().lower() or any(c in item for c in "/@ \t"):
            return f"{item!r} must be a lower-case host or host:port, e.g. 'app.example.com'"
    return None


def check_origins(value: tuple[str, ...]) -> str | None:
    for item in value:
        parts = urlsplit(item)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path:
            return f"{item!r} must be an origin: scheme and host, e.g. 'https://app.example.com'"
    return None


def check_paths(value: tuple[str, ...]) -> str | None:
    for item in value:
        if not item.startswith("/") or item.startswith("/_gateway/"):
            return f"{item!r} must start with '/' and lie outside /_gateway/"
    return None


def check_secret_key(value: str) -> str | None:
    if value == "":
        return "is required (set it, or secret_key_file, or env XERO_GATEWAY_SECRET_KEY)"
    if len(value) < 32:
        return (
            "must be at least 32 characters"
            " (e.g. `python3 -c 'import secrets; print(secrets.token_urlsafe(48))'`)"
        )
    return None


def check_previous_secret_keys(value: tuple[str, ...]) -> str | None:
    for number, key in enumerate(value, start=1):
        if len(key) < 32:
            return f"key {number} must be at least 32 characters, as secret_key had to be"
    return None


def check_issuer(value: str) -> str | None:
    if not value.strip() or len(value) > 64 or ":" in value:
        return "must be 1 to 64 characters, without a colon (apps split the label at it)"
    if any(not c.isprintable() for c in value):
        return "must be printable text"
    return None


def check_one_of(*choices: str) -> Check:
    def check(value: str) -> str | None:
        return None if value in choices else f"must be one of {', '.join(choices)}"

    return check


XERO_TIERS = ("starter", "standard")  # Xero pricing tiers, by daily call budget


def check_tenant_tiers(value: tuple[str, ...]) -> str | None:
    seen: set[str] = set()
    for item in value:
        tenant, sep, tier = item.partition("=")
        tenant, tier = tenant.strip(), tier.strip()
        if not sep or not tenant or tier not in XERO_TIERS:
            return f"{item!r} must be 'tenant-id=starter' or 'tenant-id=standard'"
        if tenant in seen:
            return f"tenant {tenant!r} is named twice"
        seen.add(tenant)
    return None
