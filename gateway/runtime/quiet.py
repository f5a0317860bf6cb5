"""Responses that name no server software: aiohttp's Server header removed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.http_writer import StreamWriter
from multidict import CIMultiDict


async def _say_no_server(headers: CIMultiDict[str]) -> None:
    # aiohttp names itself and Python in a Server header on every response; the gateway
    # names no software (an attacker learns versions to try from it).
    headers.popall("Server", None)


RequestFactory = Callable[..., web.BaseRequest]


def quiet(factory: RequestFactory) -> RequestFactory:
    """``factory`` whose requests' responses go out without a Server header."""

    def make(*args: Any, **kwargs: Any) -> web.BaseRequest:
        request = factory(*args, **kwargs)
        writer = request.writer
        if isinstance(writer, StreamWriter):
            # aiohttp's hook, awaited with the headers just before they are written.
            writer._on_headers_sent = _say_no_server
        return request

    return make
