"""The demo's --at moves only the time policies are decided at: a gateway started as the demo
starts it, with its policy clock after the deadline, shows the blocked state, yet accepts an
authenticator code made at real time, and codes and sessions keep real time."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import pyotp

from gateway.admin.tokens import create_admin_token
from gateway.clock import ManualClock
from gateway.enforcement.policy_files import load_policy_file
from gateway.policy import policy_to_document
from gateway.sandbox.demo import (
    DEMO_PASSWORD,
    DEMO_ZONE,
    demo_config,
    seed_demo,
    seed_demo_xero,
    start_demo_gateway,
)
from tests.conftest import SHIPPED_POLICY, START, fast_passwords

API = "/_gateway/api"
# Past the shipped policy's deadline (31 December 2026, Sydney); START is before it.
AFTER_DEADLINE = dt.datetime(2027, 1, 5, tzinfo=ZoneInfo(DEMO_ZONE)).timestamp()


async def test_a_demo_after_the_deadline_blocks_yet_takes_codes_made_at_real_time(
    tmp_path: Path, upstream_url: str
) -> None:
    real = ManualClock(START)  # the system clock, held still
    policy = ManualClock(AFTER_DEADLINE)  # what --at 2027-01-05 moves
    config = demo_config(host="127.0.0.1", port=0, upstream_url=upstream_url, workdir=tmp_path)
    gateway = await start_demo_gateway(config, real, policy_clock=policy)
    try:
        services = gateway.services
        await seed_demo(services.store, fast_passwords(), policy())
        await seed_demo_xero(services.store, policy())
        await services.decider.book.refresh()
        async with aiohttp.ClientSession(
            base_url=gateway.front.url, cookie_jar=aiohttp.CookieJar(unsafe=True)
        ) as client:
            signed_in = await client.post(
                f"{API}/session", json={"email": "max@harbour.example", "password": DEMO_PASSWORD}
            )
            assert signed_in.status == 200
            csrf = {"X-CSRF-Token": (await signed_in.json())["csrf_token"]}
            me = await (await client.get(f"{API}/me")).json()
            assert me["mfa"]["outcome"] == "enrol"
            assert dt.datetime.fromisoformat(me["mfa"]["deadline"]).timestamp() < policy()
            page = await client.get("/", headers={"Accept": "text/html"}, allow_redirects=False)
            assert page.headers["Location"] == "/_gateway/mfa/blocked?next=/"

            started = await client.post(f"{API}/mfa/enrol/totp", headers=csrf)
            assert started.status == 201
            setup = await started.json()
            # The step lives step_lifetime of real time, not of the demo's date.
            expires = dt.datetime.fromisoformat(setup["expires_at"]).timestamp()
            assert expires == real() + 600
            totp = pyotp.TOTP(setup["key"].replace(" ", ""))
            confirm = f"{API}/mfa/enrol/totp/confirm"
            # A code made at the demo's date is not what the phone shows: refused.
            wrong = await client.post(confirm, json={"code": totp.at(policy())}, headers=csrf)
            assert wrong.status == 400
            right = await client.post(confirm, json={"code": totp.at(real())}, headers=csrf)
            assert right.status == 200, await right.text()
            finished = await client.post(f"{API}/mfa/enrol/finish", headers=csrf)
            assert finished.status == 201, await finished.text()
            assert (await finished.json())["next"] == "none"
            assert (await client.get("/api/whoami")).status == 200
            me = await (await client.get(f"{API}/me")).json()
            # The check is recorded at real time (X-Gateway-Mfa-At), the decision at the date.
            assert dt.datetime.fromisoformat(me["mfa"]["verified_at"]).timestamp() == real()

            # An admin's lint judges at the date too: the deadline has passed, as enforced.
            raw, _ = await create_admin_token(
                services.store,
                name="lint",
                scopes=["policies:read"],
                ttl_seconds=600,
                now=real(),
                by="test",
            )
            document = policy_to_document(load_policy_file(SHIPPED_POLICY))
            linted = await client.post(
                f"/_gateway/admin/api/policies/{document['id']}/lint",
                json=document,
                headers={"Authorization": f"Bearer {raw}"},
            )
            assert linted.status == 200, await linted.text()
            [warning] = (await linted.json())["warnings"]
            assert warning["field"] == "schedule.deadline"
            assert "has passed" in warning["message"]
    finally:
        await gateway.stop()
