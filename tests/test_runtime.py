"""The running gateway: shared parts owned by the runtime, listeners started and stopped as
objects, and the order of shutdown; the `serve` process on a stop signal."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from gateway.errors import StoreError
from gateway.runtime.listeners import HttpListener, Listener
from gateway.runtime.runner import Gateway
from gateway.sandbox.demo import DEMO_ORGS, seed_demo
from tests.conftest import SECRET, fast_passwords, gateway_config


class Probe:
    """A second listener over the gateway's shared parts: GET /orgs waits until ``release``
    is set, then answers from the shared store."""

    def __init__(self, gateway: Gateway, port: int = 0) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.gateway = gateway
        app = web.Application()
        app.router.add_get("/orgs", self.org_names)
        server = gateway.services.config.server
        self.listener = HttpListener(
            "probe",
            app,
            host="127.0.0.1",
            port=port,
            max_line_size=server.max_line_size,
            max_field_size=server.max_field_size,
            idle_timeout=server.idle_timeout,
        )

    async def org_names(self, _request: web.Request) -> web.Response:
        self.entered.set()
        await self.release.wait()
        orgs = await self.gateway.services.store.organisations.list()
        return web.json_response(sorted(o.name for o in orgs))


class ReleasedAtStop:
    """A listener that lets ``release`` go when the gateway stops it, so a request held in
    flight resumes only once shutdown has begun."""

    def __init__(self, inner: HttpListener, release: asyncio.Event) -> None:
        self.inner = inner
        self.release = release

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def url(self) -> str:
        return self.inner.url

    @property
    def addresses(self) -> tuple[tuple[str, int], ...]:
        return self.inner.addresses

    async def start(self) -> None:
        await self.inner.start()

    async def stop(self) -> None:
        self.release.set()
        await self.inner.stop()


async def open_gateway(tmp_path: Path, upstream_url: str) -> Gateway:
    config = gateway_config(tmp_path, upstream_url)
    gateway = await Gateway.open(config, passwords=fast_passwords())
    await seed_demo(gateway.services.store, gateway.services.passwords, 0.0)
    return gateway


async def test_listeners_drain_before_the_shared_store_closes(
    tmp_path: Path, upstream_url: str
) -> None:
    gateway = await open_gateway(tmp_path, upstream_url)
    probe = Probe(gateway)
    # The protocol is all the runtime needs of a listener.
    watched: Listener = ReleasedAtStop(probe.listener, probe.release)
    gateway.add_listener(watched)
    await gateway.start()
    assert [listener.name for listener in gateway.listeners] == ["front", "probe"]
    async with aiohttp.ClientSession() as client:
        in_flight = asyncio.create_task(client.get(probe.listener.url + "/orgs"))
        await probe.entered.wait()
        await gateway.stop()  # lets the request go, waits for it, then closes the store
        response = await in_flight
        assert response.status == 200
        assert await response.json() == sorted(DEMO_ORGS)
    assert gateway.services.store.db.closed
    with pytest.raises(StoreError):
        await gateway.services.store.organisations.list()


async def test_every_listener_serves_until_the_gateway_stops(
    tmp_path: Path, upstream_url: str
) -> None:
    gateway = await open_gateway(tmp_path, upstream_url)
    probe = Probe(gateway)
    gateway.add_listener(probe.listener)
    probe.release.set()
    await gateway.start()
    front_port, probe_port = gateway.front.port, probe.listener.port
    assert list(gateway.front.addresses) == [("127.0.0.1", front_port)]
    assert gateway.front.url == f"http://127.0.0.1:{front_port}"
    try:
        async with aiohttp.ClientSession() as client:
            async with client.get(gateway.front.url + "/_gateway/health") as health:
                assert health.status == 200
            async with client.get(probe.listener.url + "/orgs") as orgs:
                assert await orgs.json() == sorted(DEMO_ORGS)
    finally:
        await gateway.stop()
    assert not gateway.front.addresses
    assert not probe.listener.addresses
    for port in (front_port, probe_port):
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
    await gateway.stop()  # a second stop does nothing


async def test_listeners_are_added_before_the_start(tmp_path: Path, upstream_url: str) -> None:
    gateway = await open_gateway(tmp_path, upstream_url)
    await gateway.start()
    try:
        with pytest.raises(RuntimeError, match="before the gateway starts"):
            gateway.add_listener(Probe(gateway).listener)
        with pytest.raises(RuntimeError, match="started already"):
            await gateway.start()
    finally:
        await gateway.stop()


async def test_a_listener_that_cannot_bind_stops_everything(
    tmp_path: Path, upstream_url: str
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        gateway = await open_gateway(tmp_path, upstream_url)
        gateway.add_listener(Probe(gateway, port=taken.getsockname()[1]).listener)
        with pytest.raises(OSError, match="in use"):
            await gateway.start()
    assert gateway.front.addresses == ()  # started first, stopped again
    assert gateway.services.store.db.closed


def test_serve_listens_until_sigterm_and_stops_cleanly(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(
        '[server]\nhost = "127.0.0.1"\nport = 0\n'
        '[upstream]\nurl = "http://127.0.0.1:9"\n[store]\npath = "gw.sqlite3"\n'
        f'[security]\nsecret_key = "{SECRET}"\ncookie_secure = false\n'
        '[logging]\nlevel = "INFO"\nformat = "json"\n'
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config)],
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        assert proc.stderr is not None
        listening = None
        for line in proc.stderr:
            record = json.loads(line)
            if record.get("message") == "gateway listening":
                listening = record
                break
        assert listening is not None, "serve logged no address"
        assert listening["listener"] == "front"
        url = listening["url"]
        with urllib.request.urlopen(f"{url}/_gateway/health", timeout=10) as response:  # noqa: S310
            assert json.load(response)["status"] == "ok"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        rest = [json.loads(line) for line in proc.stderr]
        assert "gateway stopping" in [r.get("message") for r in rest]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
