"""Listeners: each a place the gateway answers on, started and stopped by the runtime, serving
with shared parts it never closes."""

from __future__ import annotations

from typing import Protocol

from aiohttp import web

from gateway.runtime.limits import ClientLimits
from gateway.runtime.server import start_site


class Listener(Protocol):
    """One listening endpoint. ``start`` binds it and serves; ``stop`` stops accepting,
    lets requests in flight finish (for a while), and closes what only it holds."""

    @property
    def name(self) -> str: ...

    @property
    def url(self) -> str:
        """Where it is reached, for logs and the console: the configured host, bound port."""
        ...

    @property
    def addresses(self) -> tuple[tuple[str, int], ...]:
        """The (host, port) of every socket it is bound to; empty unless started."""
        ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class HttpListener:
    """An aiohttp application served over HTTP/1.1 on one host and port (0: any free one).

    The application must not close shared parts in its cleanup: other listeners still use
    them, and the runtime closes them once every listener has stopped.
    """

    def __init__(
        self,
        name: str,
        app: web.Application,
        *,
        host: str,
        port: int,
        max_line_size: int,
        max_field_size: int,
        idle_timeout: float,
        shutdown_timeout: float = 10.0,
        limits: ClientLimits | None = None,
    ) -> None:
        self._name = name
        self._app = app
        self._host = host
        self._port = port
        self._max_line_size = max_line_size
        self._max_field_size = max_field_size
        self._idle_timeout = idle_timeout
        self._shutdown_timeout = shutdown_timeout
        self._limits = limits
        self._runner: web.AppRunner | None = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def addresses(self) -> tuple[tuple[str, int], ...]:
        if self._runner is None:
            return ()
        return tuple((str(a[0]), int(a[1])) for a in self._runner.addresses)

    @property
    def port(self) -> int:
        """The bound port (of the first socket, when the host named several)."""
        addresses = self.addresses
        if not addresses:
            raise RuntimeError(f"the {self._name} listener is not running")
        return addresses[0][1]

    @property
    def url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError(f"the {self._name} listener is running already")
        self._runner, _ = await start_site(
            self._app,
            self._host,
            self._port,
            max_line_size=self._max_line_size,
            max_field_size=self._max_field_size,
            idle_timeout=self._idle_timeout,
            shutdown_timeout=self._shutdown_timeout,
            limits=self._limits,
        )

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
