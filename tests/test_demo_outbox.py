"""The demo's outbox page: codes the log drivers "sent", newest first; never in `serve`."""

from __future__ import annotations

import re
import signal
import urllib.request
from pathlib import Path

import aiohttp

from gateway.clock import ManualClock
from gateway.runtime.runner import start_gateway
from gateway.sandbox.demo import demo_config, seed_demo, start_demo_gateway
from gateway.sending.service import Channel, CodeRequest
from tests.conftest import START, fast_passwords
from tests.test_cli import running_demo


async def test_the_outbox_page_lists_the_codes_sent_newest_first(tmp_path: Path) -> None:
    config = demo_config(
        host="127.0.0.1", port=0, upstream_url="http://127.0.0.1:9", workdir=tmp_path
    )
    assert (config.sms.driver, config.email.driver) == ("log", "log")
    gateway = await start_demo_gateway(config, ManualClock(START))
    try:
        store = gateway.services.store
        await seed_demo(store, fast_passwords(), START)
        ava = await store.users.find_by_email("ava@harbour.example")
        assert ava is not None
        [outbox] = [lst for lst in gateway.listeners if lst.name == "demo-outbox"]
        async with aiohttp.ClientSession() as client:
            empty = await client.get(f"{outbox.url}/")
            assert empty.headers["Cache-Control"] == "no-store"
            assert "Nothing sent yet." in await empty.text()
            sending = gateway.services.sending
            for channel, to, purpose in (
                (Channel.SMS, "+61412345678", "challenge"),
                (Channel.EMAIL, "ava@harbour.example", "enrol-backup"),
            ):
                request = CodeRequest(
                    user_id=ava.id, org_id=ava.org_id, purpose=purpose, channel=channel,
                    destination=to, lifetime=600,
                )  # fmt: skip
                assert (await sending.send_code(request)).sent
            page = await (await client.get(f"{outbox.url}/")).text()
        listed = re.findall(r"<strong>(SMS|Email) to ([^<:]+)", page)
        assert listed == [("Email", "ava@harbour.example"), ("SMS", "+61412345678")]
        code = re.search(r"(\d{6}) is your verification code", page)
        assert code is not None
        check = await sending.check_code(user_id=ava.id, purpose="challenge", typed=code[1])
        assert check.accepted
    finally:
        await gateway.stop()


async def test_serve_never_has_the_outbox_page_even_with_log_drivers(tmp_path: Path) -> None:
    config = demo_config(
        host="127.0.0.1", port=0, upstream_url="http://127.0.0.1:9", workdir=tmp_path
    )
    gateway = await start_gateway(config, clock=ManualClock(START))
    try:
        assert [lst.name for lst in gateway.listeners] == ["front"]
        assert gateway.services.sending.outbox is not None  # codes still go to the log
    finally:
        await gateway.stop()


def test_the_demo_prints_where_its_outbox_is(tmp_path: Path) -> None:
    welcome: list[str] = []
    with running_demo(tmp_path, welcome=welcome) as (proc, _):
        line = next(line for line in welcome if "demo outbox" in line)
        url = line.split()[-1]
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback
            assert "Demo outbox" in response.read().decode()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
