"""What a User-Agent says of a browser, in a few words ("Chrome on Android"), for the lists of
sign-ins and remembered devices. Pure, and only a summary: a User-Agent is whatever the client
chose to send."""

from __future__ import annotations

# The first match wins: the order matters (Edge and Opera also say Chrome, Chrome says Safari).
_BROWSERS = (
    ("Edg/", "Edge"),
    ("OPR/", "Opera"),
    ("Firefox/", "Firefox"),
    ("FxiOS/", "Firefox"),
    ("CriOS/", "Chrome"),
    ("Chrome/", "Chrome"),
    ("Chromium/", "Chromium"),
    ("Safari/", "Safari"),
    ("curl/", "curl"),
    ("python-requests/", "Python"),
    ("aiohttp/", "Python"),
)
_SYSTEMS = (
    ("iPhone", "iPhone"),
    ("iPad", "iPad"),
    ("Android", "Android"),
    ("Windows", "Windows"),
    ("Mac OS X", "macOS"),
    ("Macintosh", "macOS"),
    ("CrOS", "ChromeOS"),
    ("Linux", "Linux"),
)
UNKNOWN = "Unknown browser"


def browser_summary(user_agent: str) -> str:
    """``Chrome on Windows``, ``Safari on iPhone``, ``Firefox``; ``Unknown browser`` when the
    User-Agent names nothing known."""
    browser = next((name for mark, name in _BROWSERS if mark in user_agent), None)
    system = next((name for mark, name in _SYSTEMS if mark in user_agent), None)
    if browser is None:
        return UNKNOWN if system is None else f"A browser on {system}"
    return browser if system is None else f"{browser} on {system}"
