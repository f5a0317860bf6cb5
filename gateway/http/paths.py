"""One safe reading of a request path, and the public-path rules matched against it."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

# Everything under /_gateway/ is the gateway's own: never relayed, never a redirect target.
GATEWAY_ROOT = "/_gateway"
# Answered for any host name: load balancers probe it by address.
HEALTH_PATH = GATEWAY_ROOT + "/health"

_PERCENT = re.compile(rb"%([0-9A-Fa-f]{2})")


def in_gateway_namespace(path: str) -> bool:
    """Whether a normalised path names the gateway's namespace, as the gateway or an app
    could read its first segment: ``/_gateway`` itself, any case, and with the trailing dots
    and spaces that some servers (IIS, Windows file systems) drop (``/_gateway./x``)."""
    first = path[1:].split("/", 1)[0]
    return first.rstrip(". ").lower() == GATEWAY_ROOT[1:]


# Characters that, once decoded, mean different things to different upstreams: "/" and
# "\" as separators (Tomcat, IIS, Go and Node disagree), "%" as a second round of decoding,
# "?" and "#" re-parsed as query or fragment, ";" as a matrix parameter, NUL as a string
# end. A path carrying any of them encoded cannot be given one meaning, so it is refused;
# Traefik v3 rejects the same set by default.
_REFUSED_DECODED = frozenset("/\\%?#;\0")


def _decode_once(raw: str) -> str | None:
    """Percent-decode ``raw`` exactly once into text; None when malformed or ambiguous."""
    try:
        data = raw.encode("ascii")
    except UnicodeEncodeError:
        return None  # a request target is ASCII on the wire; anything else was not sent so
    if b"%" in _PERCENT.sub(b"", data):
        return None  # a stray "%" that is not an escape
    for match in _PERCENT.finditer(data):
        if chr(int(match.group(1), 16)) in _REFUSED_DECODED:
            return None
    try:
        return _PERCENT.sub(lambda m: bytes([int(m.group(1), 16)]), data).decode("utf-8")
    except UnicodeDecodeError:
        return None


# A path that every step of normalise_path would leave exactly as it is: segments of
# printable ASCII other than "%" (no escapes to decode), ";" (no params), "#", "\\", "/"
# and "?", none of them empty (no "//") or starting with "." (no "." or ".."), and at most
# a trailing slash. Most requests look like this, and need no decoding at all.
_PRINTABLE = "".join(map(chr, range(0x21, 0x7F)))  # ASCII without space, DEL, controls
_SEGMENT_CHAR = re.escape("".join(c for c in _PRINTABLE if c not in "%;#\\/?"))
_SEGMENT_FIRST = re.escape("".join(c for c in _PRINTABLE if c not in "%;#\\/?."))
_PLAIN_PATH = re.compile(f"(?:/[{_SEGMENT_FIRST}][{_SEGMENT_CHAR}]*)*/?")


def normalise_path(raw_path: str) -> str | None:
    """The path part of a request target as the gateway reasons about it, or None.

    Steps: drop the query; percent-decode once; drop ``;params`` from each segment (as
    Tomcat and Jetty do before routing); collapse empty segments; resolve ``.`` and ``..``.
    None when the path cannot be given one safe meaning: not starting with ``/``; a raw
    ``#`` or backslash; whitespace or control characters; a malformed escape; encoded
    ``/ \\ % ? # ;`` or NUL; bytes that are not UTF-8; text that Unicode compatibility
    folding would change (fullwidth solidus and friends); ``..`` climbing above the root.

    The result is for matching only. The proxy forwards the raw bytes untouched, so the
    gateway and the app may disagree about anything this function lets through only in
    ways that do not cross a public-path boundary.
    """
    path = raw_path.split("?", 1)[0]
    if path and _PLAIN_PATH.fullmatch(path) is not None:
        return path
    return _normalise_slowly(path)


def _normalise_slowly(path: str) -> str | None:
    """normalise_path for a path (query already dropped) that is not plain."""
    if not path.startswith("/") or "#" in path or "\\" in path:
        return None
    decoded = _decode_once(path)
    if decoded is None:
        return None
    if any(c.isspace() or unicodedata.category(c) == "Cc" for c in decoded):
        return None
    if not decoded.isascii() and unicodedata.normalize("NFKC", decoded) != decoded:
        return None
    if "\\" in decoded:
        return None

    segments: list[str] = []
    parts = decoded.split("/")[1:]
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        segment = part.split(";", 1)[0]
        if segment == "..":
            if not segments:
                return None
            segments.pop()
            if last:
                segments.append("")  # "/a/b/.." names the directory "/a/"
        elif segment == ".":
            if last:
                segments.append("")
        elif segment == "":
            if last:
                segments.append("")  # keep a trailing slash; drop interior empties
        else:
            segments.append(segment)
    return "/" + "/".join(segments)


class PathRules:
    """Public-path patterns: ``/x/`` is the subtree under /x/, ``/x*`` any path starting with
    ``/x``, anything else one exact path. Matching is case-sensitive, on the normalised
    path only, never on the query."""

    def __init__(self, patterns: Iterable[str]) -> None:
        exact: set[str] = set()
        prefixes: list[str] = []
        for pattern in patterns:
            body = pattern[:-1] if pattern.endswith("*") else pattern
            if "*" in body:
                raise ValueError(f"public path {pattern!r}: '*' is allowed only at the end")
            if normalise_path(body) != body:
                raise ValueError(
                    f"public path {pattern!r} must be a plain normalised path "
                    "(starting with '/', no '..', '//', ';', '%' or query)"
                )
            if pattern.endswith("*") or pattern.endswith("/"):
                prefixes.append(body)
            else:
                exact.add(body)
        self._exact = frozenset(exact)
        self._prefixes = tuple(prefixes)

    def is_public(self, raw_path: str, normalised: str | None) -> bool:
        """Whether a request for ``raw_path`` (the path as sent, without the query) may skip
        sign-in; ``normalised`` is :func:`normalise_path` of it, which the caller has already.

        The app receives the raw path, and apps differ in how they read ``..``, ``;`` and
        escapes: only a path already in normal form can be public, so what is judged public
        is exactly what the app is sent.
        """
        if normalised is None or normalised != raw_path:
            return False
        return normalised in self._exact or normalised.startswith(self._prefixes)
