"""The emulator as a running server: one loopback listener for Xero's identity and API hosts,
routed without regard to case (as Xero does), plus a small control route for other processes."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from aiohttp import web

from gateway.clock import Clock, system_clock
from gateway.runtime.server import start_site
from gateway.sandbox.xero_emulator import api_routes, identity_routes
from gateway.sandbox.xero_emulator.counters import Counters
from gateway.sandbox.xero_emulator.fixtures import (
    DEMO_CLIENT,
    DEMO_TENANTS,
    DEMO_USER,
    EmulatedClient,
    EmulatedTenant,
    EmulatedUser,
)
from gateway.sandbox.xero_emulator.identity_routes import STATE
from gateway.sandbox.xero_emulator.state import EmulatorState
from gateway.sandbox.xero_emulator.switches import TARGETS, Switches

AUTHORIZE_PATH = "/identity/connect/authorize"
TOKEN_PATH = "/connect/token"  # noqa: S105 - a path, not a secret
REVOKE_PATH = "/connect/revocation"
API_BASE = "/api.xro/2.0"
Handler = Callable[..., Awaitable[web.StreamResponse]]
ID = "([0-9A-Za-z-]+)"
SETTINGS = "accounting.settings"
CONTACTS = ("accounting.contacts",)
# Apps made from March 2026 get granular scopes in place of accounting.transactions.
INVOICES = ("accounting.transactions", "accounting.invoices")


@dataclass(frozen=True, kw_only=True)
class _Route:
    methods: frozenset[str]
    pattern: re.Pattern[str]
    handle: Handler


def _route(methods: str, path: str, handle: Handler) -> _Route:
    return _Route(
        methods=frozenset(methods.split()),
        pattern=re.compile(re.escape(path).replace(re.escape(ID), ID) + "/?", re.IGNORECASE),
        handle=handle,
    )


def _tenanted(make: Callable[..., api_routes.Tenanted], *families: str) -> Handler:
    """A tenant's resource, reached with a scope of one of ``families`` (".read" will do for
    GET), as Xero asks for ``accounting.settings`` for Organisation and so on."""

    async def handle(request: web.Request, *ids: str) -> web.Response:
        needs = frozenset(families)
        if request.method == "GET":
            needs |= {f"{family}.read" for family in families}
        return await api_routes.tenanted(request, make(*ids), needs)

    return handle


def _organisation() -> api_routes.Tenanted:
    return api_routes.get_organisation


async def _stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE].counters.snapshot())


async def _set_switches(request: web.Request) -> web.Response:
    """``POST /_emulator/switches`` with any of: latency, fail {n, on, status}, hang {n, on},
    drop_token_responses, release, clear (JSON)."""
    switches = request.app[STATE].switches
    try:
        body: Any = await request.json()
        if not isinstance(body, dict):
            raise TypeError("the body must be a JSON object")
        apply_switches(switches, body)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    return web.json_response({"ok": True})


def apply_switches(switches: Switches, body: dict[str, Any]) -> None:
    """Set switches from the control route's JSON."""
    if body.get("clear"):
        switches.clear()
    if "latency" in body:
        switches.latency = float(body["latency"])
    for key in ("fail", "hang"):
        if key in body:
            spec = body[key]
            on = spec.get("on", "api")
            if on not in TARGETS:
                raise ValueError(f"invalid target {on!r}: one of {', '.join(TARGETS)}")
            if key == "fail":
                switches.fail_next(
                    int(spec["n"]),
                    on=on,
                    status=int(spec.get("status", 503)),
                    retry_after=int(spec["retry_after"]) if "retry_after" in spec else None,
                )
            else:
                switches.hang_next(int(spec["n"]), on=on)
    if "drop_token_responses" in body:
        switches.drop_next_token_responses(int(body["drop_token_responses"]))
    if body.get("release"):
        switches.release()


ROUTES = (
    _route("GET", AUTHORIZE_PATH, identity_routes.authorize),
    _route("POST", TOKEN_PATH, identity_routes.token),
    _route("POST", REVOKE_PATH, identity_routes.revocation),
    _route("GET", "/connections", api_routes.list_connections),
    _route("DELETE", f"/connections/{ID}", api_routes.delete_connection),
    _route("GET", f"{API_BASE}/Organisation", _tenanted(_organisation, SETTINGS)),
    _route("GET", f"{API_BASE}/Contacts", _tenanted(api_routes.contacts, *CONTACTS)),
    _route("GET", f"{API_BASE}/Contacts/{ID}", _tenanted(api_routes.contacts, *CONTACTS)),
    _route("GET PUT POST", f"{API_BASE}/Invoices", _tenanted(api_routes.invoices, *INVOICES)),
    _route("GET", f"{API_BASE}/Invoices/{ID}", _tenanted(api_routes.invoices, *INVOICES)),
    _route("GET", "/_emulator/stats", _stats),
    _route("POST", "/_emulator/switches", _set_switches),
)


async def _dispatch(request: web.Request) -> web.StreamResponse:
    allowed = False
    for route in ROUTES:
        match = route.pattern.fullmatch(request.path)
        if match is None:
            continue
        if request.method in route.methods:
            return await route.handle(request, *match.groups())
        allowed = True
    return web.Response(status=405 if allowed else 404)


def create_emulator_app(state: EmulatorState) -> web.Application:
    app = web.Application()
    app[STATE] = state
    app.router.add_route("*", "/{tail:.*}", _dispatch)
    return app


class XeroEmulator:
    """Xero's identity and API hosts on one loopback port, for tests, the demo and benches.

    ``async with XeroEmulator(clock=clock) as xero:`` starts it on a free port; ``xero.url``,
    ``xero.authorize_url``, ``token_url``, ``revoke_url`` and ``api_url`` are what ``[xero]``
    takes (see :meth:`xero_settings`). ``xero.switches`` sets faults, ``xero.counters`` reads
    what it saw, ``xero.state`` holds everything else (grants, limits, consent_tenants).
    """

    def __init__(
        self,
        *,
        clock: Clock = system_clock,
        tenants: Iterable[EmulatedTenant] = DEMO_TENANTS,
        clients: Iterable[EmulatedClient] = (DEMO_CLIENT,),
        user: EmulatedUser = DEMO_USER,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.state = EmulatorState.build(clock=clock, tenants=tenants, clients=clients, user=user)
        self._host, self._port = host, port
        self._runner: web.AppRunner | None = None

    @property
    def switches(self) -> Switches:
        return self.state.switches

    @property
    def counters(self) -> Counters:
        return self.state.counters

    async def start(self) -> None:
        self._runner, self._port = await start_site(
            create_emulator_app(self.state),
            self._host,
            self._port,
            max_line_size=8190,
            max_field_size=8190,
            shutdown_timeout=1.0,
        )

    async def stop(self) -> None:
        self.state.switches.release()  # held calls answer, so the server can close
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> XeroEmulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self._port}"

    @property
    def authorize_url(self) -> str:
        return self.url + AUTHORIZE_PATH

    @property
    def token_url(self) -> str:
        return self.url + TOKEN_PATH

    @property
    def revoke_url(self) -> str:
        return self.url + REVOKE_PATH

    @property
    def api_url(self) -> str:
        return self.url

    def allow_redirect_uri(
        self, uri: str, client_id: str = DEMO_CLIENT.client_id
    ) -> EmulatedClient:
        """Let an app registered here send consents back to ``uri`` too (a gateway's callback on
        the port it got); returns the app as it now is."""
        client = self.state.clients[client_id]
        if uri not in client.redirect_uris:
            client = replace(client, redirect_uris=(uri, *client.redirect_uris))
            self.state.add_client(client)
        return client

    def xero_settings(self, client: EmulatedClient = DEMO_CLIENT) -> dict[str, Any]:
        """The ``[xero]`` section that points a gateway at this emulator as ``client``."""
        return {
            "client_id": client.client_id,
            "client_secret": client.client_secret or "",
            "redirect_uri": client.redirect_uris[0],
            "authorize_url": self.authorize_url,
            "token_url": self.token_url,
            "revoke_url": self.revoke_url,
            "api_url": self.api_url,
        }
