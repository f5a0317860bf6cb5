"""Which of api.xero.com's paths the Xero listener serves, matched without regard to case."""

from __future__ import annotations

from enum import Enum
from functools import lru_cache

from gateway.http.paths import normalise_path

# The API families the listener passes to Xero (prefixes, lower case, after the first "/").
API_ROOTS = ("api.xro/", "payroll.xro/", "assets.xro/", "projects.xro/", "files.xro/")
CONNECTIONS = "/connections"


class Route(Enum):
    CONNECTIONS = "connections"  # answered by the gateway from its own connections
    API = "api"  # passed to Xero for one tenant


@lru_cache(maxsize=4096)  # an app calls the same few paths over and over
def route_of(raw_path: str) -> Route | None:
    """What a request path (without its query) asks for, or None for anything else.

    The path goes to Xero byte for byte, so it must name the same family before and after
    normalising: ``/api.xro/../connections`` and encoded tricks are refused (None).
    """
    normalised = normalise_path(raw_path)
    if normalised is None:
        return None
    lowered, raw_lowered = normalised.lower(), raw_path.lower()
    if lowered.rstrip("/") == CONNECTIONS and raw_lowered.rstrip("/") == CONNECTIONS:
        return Route.CONNECTIONS
    for root in API_ROOTS:
        prefix = "/" + root
        if lowered.startswith(prefix) and raw_lowered.startswith(prefix):
            return Route.API
    return None
