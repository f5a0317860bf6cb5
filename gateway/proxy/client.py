"""The client session the proxy sends requests upstream through: pooled, cookie-less, verbatim."""

from __future__ import annotations

from collections.abc import Iterable

import aiohttp
from aiohttp.typedefs import LooseHeaders
from multidict import CIMultiDict

# aiohttp adds these to every request unless told not to. An Accept-Encoding the client never
# sent would get it a compressed body it cannot read (bodies are relayed undecoded), and a
# made-up Content-Type or User-Agent would misreport what the client sent.
_SKIP_AUTO_HEADERS = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")
_SKIPPED: CIMultiDict[None] = CIMultiDict((name, None) for name in _SKIP_AUTO_HEADERS)

# Upstream response heads can be larger than a client's (long CSP, many cookies); the app is
# trusted not to abuse that, so allow more than aiohttp's 8 KiB before calling it broken.
_UPSTREAM_MAX_LINE = 64 * 1024
_UPSTREAM_MAX_FIELD = 64 * 1024


class _VerbatimRequest(aiohttp.ClientRequest):
    """A client request that adds none of aiohttp's automatic headers.

    With ``skip_auto_headers`` aiohttp copies every header of every request into a scratch
    dict to check which defaults to leave out; here every default is left out, so there is
    nothing to check. ``_skip_auto_headers`` is still set, as aiohttp reads it to leave
    out a made-up Content-Type for a body.
    """

    def update_auto_headers(self, skip_auto_headers: Iterable[str] | None) -> None:
        self._skip_auto_headers = _SKIPPED

    def update_headers(self, headers: LooseHeaders | None) -> None:
        # The session hands over its own fresh copy of the headers; aiohttp would copy it
        # again header by header in Python, only to put Host first. One C call does that.
        if not isinstance(headers, CIMultiDict) or "Host" in headers:
            super().update_headers(headers)
            return
        host = self.url.host_port_subcomponent
        assert host is not None  # the upstream URL is absolute
        self.headers = CIMultiDict(Host=host)
        self.headers.extend(headers)


def open_upstream_session(
    *,
    connect_timeout: float,
    read_timeout: float,
    pool_size: int = 1024,
    dns_cache_seconds: int = 10,
) -> aiohttp.ClientSession:
    """A client session for relaying requests upstream; call inside the running event loop.

    The runtime opens one per kind of upstream and closes it after the listeners that use
    it have stopped. ``read_timeout`` bounds each wait for upstream bytes once the upload is
    done (an :class:`~gateway.proxy.forwarder.UpstreamProxy` also applies it between
    request-body chunks); ``connect_timeout`` bounds connecting and the wait for a free
    pooled connection.
    """
    connector = aiohttp.TCPConnector(limit=pool_size, ttl_dns_cache=dns_cache_seconds)
    return aiohttp.ClientSession(
        connector=connector,
        # Cookies belong to the browser and the app: a jar here would mix users' cookies.
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        # sock_read counts from the end of the upload, so slow uploads are not cut short.
        timeout=aiohttp.ClientTimeout(
            total=None,
            connect=connect_timeout,
            sock_connect=connect_timeout,
            sock_read=read_timeout,
        ),
        # Never route upstream traffic through a proxy named in the environment.
        trust_env=False,
        skip_auto_headers=_SKIP_AUTO_HEADERS,
        request_class=_VerbatimRequest,
        max_line_size=_UPSTREAM_MAX_LINE,
        max_field_size=_UPSTREAM_MAX_FIELD,
    )
