"""What the front listener needs of aiohttp's private internals, checked before it serves.

The client limits (runtime/limits.py), the quiet Server header (runtime/quiet.py) and the
runner (runtime/server.py) reach into aiohttp where it has no public hook. pyproject.toml
pins aiohttp to the minor release they were written against; this check turns a rename in
an aiohttp that slipped past the pin into a refusal to start that names what is missing,
instead of every connection failing or a cap silently switched off.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import aiohttp
from aiohttp import web, web_protocol
from aiohttp.http_writer import StreamWriter


@dataclass(frozen=True, kw_only=True)
class Need:
    """One private name: where it lives (a key of the owners), what it is, what it is for."""

    owner: str
    name: str
    why: str


NEEDS: tuple[Need, ...] = (
    Need(owner="RequestHandler", name="_messages", why="the head cap replaces a parsed head"),
    Need(owner="RequestHandler", name="_request_count", why="the head cap counts heads"),
    Need(owner="RequestHandler", name="_waiter", why="the head cap wakes the handler"),
    Need(owner="RequestHandler", name="_upgraded", why="WebSocket frames are not a head"),
    Need(owner="RequestHandler", name="_manager", why="a refused connection has no server"),
    Need(owner="aiohttp.web_protocol", name="_ErrInfo", why="the head cap queues a 431"),
    Need(owner="AppRunner", name="_make_server", why="the runner builds the limited server"),
    Need(owner="Server", name="_kwargs", why="the limited server keeps aiohttp's settings"),
    Need(owner="Server", name="request_handler", why="the limited server wraps the handler"),
    Need(owner="Server", name="request_factory", why="responses lose the Server header"),
    Need(owner="Server", name="handler_cancellation", why="the limited server keeps it"),
    Need(owner="StreamWriter", name="_on_headers_sent", why="responses lose the Server header"),
    Need(owner="Request", name="_match_info", why="a one-handler app's requests skip routing"),
)


class AiohttpUnsupported(RuntimeError):
    """The installed aiohttp lacks something the front listener's limits rely on."""


async def _never(_request: web.BaseRequest) -> web.StreamResponse:
    raise AssertionError("a server built only to be inspected never serves")


def aiohttp_owners(loop: asyncio.AbstractEventLoop) -> dict[str, object]:
    """The installed aiohttp's objects the needs name; names set in ``__init__`` are looked
    for on an instance (built, never used), the rest on the class or module."""
    return {
        "RequestHandler": web_protocol.RequestHandler,
        "aiohttp.web_protocol": web_protocol,
        "AppRunner": web.AppRunner,
        "Request": web.Request,
        "Server": web.Server(_never, loop=loop),
        "StreamWriter": StreamWriter(cast(Any, None), loop),
    }


def missing(owners: Mapping[str, object], needs: tuple[Need, ...] = NEEDS) -> list[Need]:
    """The needs ``owners`` do not meet (an owner absent from them meets none)."""
    return [
        need
        for need in needs
        if need.owner not in owners or not hasattr(owners[need.owner], need.name)
    ]


def require_aiohttp_internals(owners: Mapping[str, object] | None = None) -> None:
    """Raise :class:`AiohttpUnsupported` naming each missing name, or return."""
    if owners is None:
        owners = aiohttp_owners(asyncio.get_running_loop())
    gaps = missing(owners)
    if gaps:
        names = "; ".join(f"{need.owner}.{need.name} ({need.why})" for need in gaps)
        raise AiohttpUnsupported(
            f"aiohttp {aiohttp.__version__} lacks what the gateway's client limits need: "
            f"{names}. Install aiohttp>=3.14.3,<3.15, the releases pyproject.toml allows."
        )
