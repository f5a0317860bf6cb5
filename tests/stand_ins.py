"""Stand-ins at the process edge, for the tests: the SMS provider's HTTP API and an SMTP
server that keeps what it receives. Both listen on loopback for real."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web
from aiosmtpd.smtp import SMTP, Envelope, Session

from gateway.runtime.server import start_site


@asynccontextmanager
async def serve_http(
    handle: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> AsyncIterator[str]:
    """Serve every path with ``handle`` on a free loopback port; yields the base URL."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner, port = await start_site(app, "127.0.0.1", 0, max_line_size=8190, max_field_size=8190)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@dataclass
class Provider:
    """The SMS API's side: records each request and answers as told."""

    url: str = ""
    status: int = 201
    hold: asyncio.Event | None = None
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        form = await request.post()
        auth = request.headers.get("Authorization", "")
        self.requests.append((request.path, auth, {k: str(v) for k, v in form.items()}))
        self.arrived.set()
        if self.hold is not None:
            await self.hold.wait()
        return web.json_response({"sid": "SM1", "message": "nope"}, status=self.status)


@dataclass
class Mailbox:
    """The SMTP server's side: every message it accepted, as bytes."""

    port: int = 0
    received: list[bytes] = field(default_factory=list)
    refusing: bool = False  # answer every message with a permanent failure, keeping none

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.refusing:
            return "554 Transaction failed"
        assert isinstance(envelope.original_content, bytes)
        self.received.append(envelope.original_content)
        return "250 Message accepted"


@asynccontextmanager
async def running_mailbox() -> AsyncIterator[Mailbox]:
    box = Mailbox()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(box, hostname="mail.test"), "127.0.0.1", 0)
    box.port = server.sockets[0].getsockname()[1]
    try:
        yield box
    finally:
        server.close()
        await server.wait_closed()
