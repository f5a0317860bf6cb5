"""The front listener refuses to start on an aiohttp that lacks the private names its client
limits rely on, and names what is missing."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from gateway.runtime.internals import (
    NEEDS,
    AiohttpUnsupported,
    aiohttp_owners,
    missing,
    require_aiohttp_internals,
)
from gateway.runtime.server import start_site


async def test_the_installed_aiohttp_has_everything_the_limits_need() -> None:
    assert missing(aiohttp_owners(asyncio.get_running_loop())) == []
    require_aiohttp_internals()


class HandlerWithoutWaiter:
    """A stand-in for an aiohttp whose RequestHandler renamed ``_waiter``."""

    _messages = _request_count = _upgraded = _manager = None


async def test_a_missing_name_stops_the_start_and_is_named() -> None:
    owners = aiohttp_owners(asyncio.get_running_loop())
    owners["RequestHandler"] = HandlerWithoutWaiter
    with pytest.raises(AiohttpUnsupported, match=r"RequestHandler\._waiter \(") as raised:
        require_aiohttp_internals(owners)
    message = str(raised.value)
    assert "_messages" not in message  # only what is missing
    assert "aiohttp>=3.14.3,<3.15" in message


async def test_every_need_is_checked_against_its_owner() -> None:
    owners = aiohttp_owners(asyncio.get_running_loop())
    for need in NEEDS:
        without = dict(owners)
        without[need.owner] = object()
        assert need in missing(without)
    assert missing({}) == list(NEEDS)


async def test_start_site_refuses_before_binding_on_an_unsupported_aiohttp(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(
        "gateway.runtime.internals.aiohttp_owners",
        lambda loop: {"RequestHandler": HandlerWithoutWaiter},
    )
    with pytest.raises(AiohttpUnsupported, match=r"_waiter"):
        await start_site(web.Application(), "127.0.0.1", 0, max_line_size=8190, max_field_size=8190)
