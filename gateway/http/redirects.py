"""Where a "next" parameter may send the browser after sign-in: only back into this origin."""

from __future__ import annotations

import re
import string
from urllib.parse import unquote_to_bytes

from gateway.http.paths import in_gateway_namespace, normalise_path

MAX_NEXT_LENGTH = 2048
# The gateway's own pages a step-up (the verify page) may send the browser back to, as
# written here: each is a page a signed-in user asked for, never the sign-in page.
RETURN_PAGES = frozenset(
    {"/_gateway/mfa/team", "/_gateway/mfa/settings", "/_gateway/password/change", "/_gateway/xero"}
)

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
    except the RETURN_PAGES, spelt exactly.
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
    if in_gateway_namespace(path) and not (
        path in RETURN_PAGES and value.split("?", 1)[0].split("#", 1)[0] == path
    ):
        return default
    return value
