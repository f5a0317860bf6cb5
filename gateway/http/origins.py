"""Whether a request's Origin is the gateway's own or one it was told to accept."""

from __future__ import annotations

from collections.abc import Collection
from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin_key(scheme: str, netloc: str) -> tuple[str, str, int] | None:
    """``(scheme, host, port)`` with the default port filled in; None when unreadable."""
    scheme = scheme.lower()
    if scheme not in _DEFAULT_PORTS or not netloc or "@" in netloc:
        return None
    try:
        parts = urlsplit(f"{scheme}://{netloc}")
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname:
        return None
    return scheme, parts.hostname.lower(), port if port is not None else _DEFAULT_PORTS[scheme]


def origin_key(origin: str) -> tuple[str, str, int] | None:
    """An Origin header value (``https://app.example.com``) as ``(scheme, host, port)``;
    None for ``null``, a value with a path, or anything else that is not a plain origin."""
    scheme, sep, rest = origin.strip().partition("://")
    if not sep or any(c in rest for c in "/?#"):
        return None
    return _origin_key(scheme, rest)


def origin_allowed(
    origin: str | None, *, scheme: str, host: str, allowed: Collection[str] = ()
) -> bool:
    """True when a request that came with ``origin`` may be served as same-origin: no Origin
    at all (not sent by a browser page, which always names its own), the origin the client
    reached the gateway by (``scheme`` and ``host``, the Host it asked for), or one of
    ``allowed`` (origins, as in config)."""
    if origin is None:
        return True
    key = origin_key(origin)
    if key is None:
        return False
    if key == _origin_key(scheme, host):
        return True
    return any(key == origin_key(other) for other in allowed)
