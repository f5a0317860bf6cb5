"""The proxy benchmark's set-up walks the real pages (sign in, set up an authenticator app,
skip the backup, finish); this keeps that walk in step with the pages, since `make bench` is
not part of the suite."""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import aiohttp
import pytest

from tests.conftest import GatewayFactory

BENCH = Path(__file__).resolve().parent.parent / "bench" / "proxy_bench.py"


def _proxy_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("proxy_bench", BENCH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while being made
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "sending",
    [{}, {"email": {"driver": "log"}, "sms": {"driver": "log"}}],
    ids=["no-backup-offered", "backup-offered-and-skipped"],
)
async def test_the_benchmark_user_signs_in_and_passes_2fa_through_the_pages(
    make_gateway: GatewayFactory, sending: dict[str, dict[str, Any]]
) -> None:
    gateway = await make_gateway(policies=True, **sending)
    # The benchmark reads its authenticator code off the wall clock, as a phone would.
    gateway.clock.set(time.time())
    bench = _proxy_bench()
    cookie = await bench.sign_in(str(gateway.url))
    async with (
        aiohttp.ClientSession() as client,
        client.get(
            gateway.url / "api" / "whoami", headers={"Cookie": cookie}, allow_redirects=False
        ) as response,
    ):
        assert response.status == 200
        seen = (await response.json())["headers"]
    assert seen["X-Gateway-User-Email"] == bench.BENCH_USER
    assert seen["X-Gateway-Mfa"] == "verified"
    assert seen["X-Gateway-Mfa-Method"] == "totp"
