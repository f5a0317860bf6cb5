"""Where a "next" parameter may send the browser after sign-in: only back into this origin."""

from __future__ import annotations

import re
import string
from urllib.parse import unquote_to_bytes

from gateway.http.paths import in_gateway_namespace, normalise_path

MAX_NEXT_LENGTH = 2048
# The gateway's own pages a flow may return to: pages of a signed-in user, never a sign-in or
# second-factor page (that would be a loop).
GATEWAY_RETURN_PAGES = frozenset({"/_gateway/xero"})

# RFC 3986 characters only: anything else (space, quotes, "<", "\", controls, non-ASCII)
# is either an attack or something a browser would have encoded, so it is refused, not fixed.
_URL_CHARS = frozenset(string.ascii_letters + string.digits + "-._~:/?#[]@!$&'()*+,;=%")
_MALFORMED_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def _unsafe_bytes(decoded: bytes) -> bool:
    # Browsers drop tab/CR/LF inside URLs and treat "\" as "/", so "/\t/evil" or "/\evil"
    # becomes "//evil", a different host. Refuse every control byte, space and backslash.
    return any(b <= 0x20 or b == 0x7F or b == 0x5C for b in decoded)


def safe_next(value: str | None, default: str = "/") -> str:
    """``value`` if it is a same-origin absolute path (query and fragment kept), else ``default``.

    Refused: empty or over-long; not starting with exactly one ``/``; ``//`` or ``/\\``
    before or after percent-decoding; any backslash, whitespace or control character, raw
    or encoded; characters outside RFC 3986; malformed escapes; paths into the gateway's own
    ``/_gateway/`` pages (sending someone back to the login page is a loop, not a target),
    except the few in ``GATEWAY_RETURN_PAGES``.
    """
    if not value or len(value) > MAX_NEXT_LENGTH:
        return default
    if not all(c in _URL_CHARS for c in value) or _MALFORMED_ESCAPE.search(value):
        return default
    decoded = unquote_to_bytes(value)
    if _unsafe_bytes(decoded):
        return default
    if not value.startswith("/") or value.startswith("//"):
        return default
    if decoded.startswith(b"//"):
        return default
    path = normalise_path(value.split("#", 1)[0])
    if path is None:
        return default
    if in_gateway_namespace(path) and path not in GATEWAY_RETURN_PAGES:
        return default
    return value
