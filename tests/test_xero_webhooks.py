"""Xero webhooks: the signature check as a table, a real gateway on loopback taking signed
posts, and the forwarder delivering stored events to a real little app that fails at first."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gateway.clock import ManualClock
from gateway.crypto.keys import Keys
from gateway.store import Store
from gateway.xero.forwarding import WebhookForwarder
from gateway.xero.webhooks import (
    FORWARD_ATTEMPT_HEADER,
    FORWARD_ID_HEADER,
    FORWARD_SIGNATURE_HEADER,
    MAX_BODY_BYTES,
    RetryRule,
    WebhookPayloadError,
    events_to_keep,
    forward_signature,
    forward_signature_valid,
    parse_delivery,
    signature_valid,
    xero_signature,
)
from tests.conftest import SECRET, START, GatewayFactory
from tests.stand_ins import serve_http
from tests.test_cli import run

KEY = "xero-webhook-key-0123456789abcdefABCDEF+/=="
OLD_SECRET = "the-previous-secret-key-long-enough-9876543210"
TENANT = "3b8e6c1a-6f2f-4b8e-9d3c-1f2e3d4c5b6a"


def _event(resource_id: str = "r-1", tenant_id: str = TENANT, **extra: Any) -> dict[str, Any]:
    return {
        "resourceUrl": f"https://api.xero.com/api.xro/2.0/Invoices/{resource_id}",
        "resourceId": resource_id,
        "eventDateUtc": "2026-12-06T20:00:00.000",
        "eventType": "UPDATE",
        "eventCategory": "INVOICE",
        "tenantId": tenant_id,
        "tenantType": "ORGANISATION",
        **extra,
    }


def _delivery(*events: dict[str, Any]) -> bytes:
    return json.dumps(
        {
            "events": list(events),
            "firstEventSequence": 1 if events else 0,
            "lastEventSequence": len(events),
            "entropy": "S0m3r4Nd0mt3xt",
        }
    ).encode()


INTENT = (
    b'{"events":[],"firstEventSequence":0,"lastEventSequence":0,"entropy":"YSXDAFBKUHQFNRUIHFXG"}'
)


def _independent_signature(key: str, body: bytes) -> str:
    return base64.b64encode(hmac.digest(key.encode(), body, "sha256")).decode()


# A vector computed outside Python once (printf body | openssl dgst -sha256 -hmac key -binary
# | base64), and others by the
# test's own reading of Xero's rule.
KNOWN = "UVquEztDXUAAlWcx9orlz164XU8NxqVG0r/NNZXsGuE="


@pytest.mark.parametrize(
    ("key", "body", "presented", "valid"),
    [
        ("key", b"body", KNOWN, True),
        ("key", b"body", KNOWN.rstrip("="), False),  # padding is part of the value
        ("key", b"body ", KNOWN, False),  # one byte more of body
        ("key2", b"body", KNOWN, False),  # another key
        (KEY, INTENT, _independent_signature(KEY, INTENT), True),
        (KEY, INTENT, _independent_signature(KEY, INTENT + b"\n"), False),
        (KEY, INTENT, _independent_signature(KEY, INTENT).lower(), False),
        (KEY, INTENT, None, False),  # no header
        (KEY, INTENT, "", False),
        (KEY, INTENT, "not base64 at all ✓", False),
        ("", INTENT, _independent_signature("", INTENT), False),  # no key configured
    ],
)  # fmt: skip
def test_signature_check(key: str, body: bytes, presented: str | None, valid: bool) -> None:
    assert signature_valid(key, body, presented) is valid


def test_the_known_vector_is_what_hmac_makes() -> None:
    expected = base64.b64encode(hmac.new(b"key", b"body", hashlib.sha256).digest()).decode()
    assert expected == KNOWN == xero_signature("key", b"body")


def test_deliveries_are_read_with_every_event_kept_whole() -> None:
    intent = parse_delivery(INTENT)
    assert intent.events == ()
    assert (intent.first_event_sequence, intent.last_event_sequence) == (0, 0)
    delivery = parse_delivery(_delivery(_event("r-1"), _event("r-2", newField=[1, 2])))
    assert [e.resource_id for e in delivery.events] == ["r-1", "r-2"]
    assert delivery.events[0].tenant_id == TENANT
    assert json.loads(delivery.events[1].document)["newField"] == [1, 2]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[]", "not a JSON object"),
        (b'{"entropy":"x"}', "no events list"),
        (b'{"events":[1]}', "event 0 is not a JSON object"),
        (json.dumps({"events": [_event(), {**_event(), "tenantId": 7}]}).encode(),
         "event 1 lacks tenantId"),
    ],
)  # fmt: skip
def test_bodies_that_are_not_deliveries_say_why(body: bytes, message: str) -> None:
    with pytest.raises(WebhookPayloadError, match=message):
        parse_delivery(body)


def test_retry_waits_grow_jittered_to_a_cap_and_stop_at_the_limits() -> None:
    rule = RetryRule(base=5.0, cap=3600.0, max_attempts=25, max_age=86400.0)
    assert [rule.delay(n, 0.999999) for n in (1, 2, 3)] == pytest.approx([5.0, 10.0, 20.0])
    assert [rule.delay(n, 0.0) for n in (1, 2, 3)] == [2.5, 5.0, 10.0]
    assert rule.delay(30, 0.999999) == pytest.approx(3600.0)
    assert rule.delay(10_000, 0.0) == 1800.0
    assert not rule.gives_up(attempts=24, received_at=0.0, next_at=86400.0)
    assert rule.gives_up(attempts=25, received_at=0.0, next_at=10.0)
    assert rule.gives_up(attempts=1, received_at=0.0, next_at=86400.5)


def test_forward_signatures_verify_with_either_key_during_a_rotation() -> None:
    old, new = Keys.derive(OLD_SECRET), Keys.derive(SECRET, [OLD_SECRET])
    keys = [k.material for k in new.webhook_forward.keys]
    body = b'{"events":[{}]}'
    header = forward_signature(keys, body, timestamp=START)
    assert header.startswith(f"t={int(START)},v1=")
    for key in (new.webhook_forward.current.material, old.webhook_forward.current.material):
        assert forward_signature_valid(key, header, body, now=START + 299)
    key = new.webhook_forward.current.material
    assert not forward_signature_valid(key, header, body, now=START + 301)  # stale
    assert not forward_signature_valid(key, header, body + b" ", now=START)
    assert not forward_signature_valid(key, header.replace("t=", "t=1"), body, now=START)
    assert not forward_signature_valid(key, None, body, now=START)
    assert not forward_signature_valid(Keys.derive("x" * 40).webhook_forward.current.material,
                                       header, body, now=START)  # fmt: skip


# The app behind the gateway, as a forward target.


@dataclass
class Target:
    """An app endpoint that fails its first ``fail_first`` posts, then takes them, and keeps
    what arrived."""

    key: bytes
    clock: ManualClock
    fail_first: int = 0
    url: str = ""
    posts: list[tuple[str, int, bytes, bool]] = field(default_factory=list)
    taken: list[str] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        signed = forward_signature_valid(
            self.key, request.headers.get(FORWARD_SIGNATURE_HEADER), body, now=self.clock()
        )
        event_id = request.headers[FORWARD_ID_HEADER]
        self.posts.append((event_id, int(request.headers[FORWARD_ATTEMPT_HEADER]), body, signed))
        if len(self.posts) <= self.fail_first:
            return web.Response(status=503)
        self.taken.append(event_id)
        self.arrived.set()
        return web.Response(status=204)


@pytest.fixture
async def target(clock: ManualClock) -> AsyncIterator[Target]:
    running = Target(key=Keys.derive(SECRET).webhook_forward.current.material, clock=clock)
    async with serve_http(running.handle) as url:
        running.url = url + "/hooks/xero"
        yield running


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def _forwarder(
    store: Store, http: aiohttp.ClientSession, target: Target, clock: ManualClock, **kw: Any
) -> WebhookForwarder:
    return WebhookForwarder(
        store.xero_webhooks,
        store.audit,
        client=http,
        url=target.url,
        signer=Keys.derive(SECRET).webhook_forward,
        clock=clock,
        jitter=lambda: 0.0,
        **kw,
    )


async def _store_events(store: Store, count: int, now: float) -> list[str]:
    delivery = parse_delivery(_delivery(*(_event(f"r-{n}") for n in range(count))))
    return await store.xero_webhooks.add(events_to_keep(delivery), now=now)


async def test_a_failing_app_gets_each_event_once_after_backoff(
    store: Store, http: aiohttp.ClientSession, target: Target, clock: ManualClock
) -> None:
    target.fail_first = 3
    forwarder = _forwarder(store, http, target, clock, rule=RetryRule(base=5.0))
    ids = await _store_events(store, 2, clock())

    first = await forwarder.deliver_due()
    assert (first.delivered, first.retried) == (0, 2)
    assert await forwarder.deliver_due() == type(first)()  # nothing due before the backoff
    clock.advance(2.5)  # jitter 0: half of base
    second = await forwarder.deliver_due()
    assert (second.delivered, second.retried) == (1, 1)
    clock.advance(4.9)  # the second failure of one event waits half of 2 * base
    assert (await forwarder.deliver_due()).delivered == 0
    clock.advance(0.1)
    assert (await forwarder.deliver_due()).delivered == 1

    assert sorted(target.taken) == sorted(ids)  # each once
    assert all(signed for *_, signed in target.posts)
    attempts = {event_id: attempt for event_id, attempt, *_ in target.posts}
    assert sorted(attempts.values()) == [2, 3]
    body = json.loads(target.posts[-1][2])
    assert body["events"][0]["tenantId"] == TENANT
    assert await store.xero_webhooks.pending_count() == 0
    stored = await store.xero_webhooks.get(ids[0])
    assert stored is not None
    assert stored.delivered_at is not None
    assert stored.last_error is None
    clock.advance(3600)
    assert await forwarder.deliver_due() == type(first)()
    assert len(target.posts) == 5  # 3 failures, 2 deliveries: nothing sent twice


async def test_an_app_that_never_takes_an_event_has_it_abandoned_and_audited(
    store: Store, http: aiohttp.ClientSession, target: Target, clock: ManualClock
) -> None:
    target.fail_first = 100
    forwarder = _forwarder(store, http, target, clock, rule=RetryRule(base=1.0, max_attempts=3))
    [event_id] = await _store_events(store, 1, clock())
    outcomes = []
    for _ in range(4):
        outcomes.append(await forwarder.deliver_due())
        clock.advance(10)
    assert [(o.retried, o.abandoned) for o in outcomes] == [(1, 0), (1, 0), (0, 1), (0, 0)]
    stored = await store.xero_webhooks.get(event_id)
    assert stored is not None
    assert stored.abandoned_at is not None
    assert stored.last_error == "the app answered 503"
    [audited] = await store.audit.list(kind="xero.webhook_abandoned")
    assert audited.subject == event_id
    assert audited.detail["attempts"] == 3


async def test_an_unreachable_app_is_retried(
    store: Store, http: aiohttp.ClientSession, target: Target, clock: ManualClock
) -> None:
    forwarder = _forwarder(store, http, target, clock)
    forwarder.url = "http://127.0.0.1:9/nothing-listens-here"
    [event_id] = await _store_events(store, 1, clock())
    assert (await forwarder.deliver_due()).retried == 1
    stored = await store.xero_webhooks.get(event_id)
    assert stored is not None
    assert (stored.last_error or "").startswith("could not reach the app")


async def test_two_gateways_on_one_database_deliver_each_event_once(
    tmp_path: Path, http: aiohttp.ClientSession, target: Target, clock: ManualClock
) -> None:
    path = tmp_path / "shared.sqlite3"
    async with await Store.open(path) as one, await Store.open(path) as two:
        ids = await _store_events(one, 12, clock())
        a, b = _forwarder(one, http, target, clock), _forwarder(two, http, target, clock)
        rounds = await asyncio.gather(a.deliver_due(), b.deliver_due(), a.deliver_due())
        assert sum(r.delivered for r in rounds) == 12
        assert sum(r.lost for r in rounds) == 0
    assert sorted(target.taken) == sorted(ids)
    assert len(target.posts) == 12


async def test_a_claim_left_by_a_dead_forwarder_is_taken_again_after_its_lease(
    store: Store, http: aiohttp.ClientSession, target: Target, clock: ManualClock
) -> None:
    [event_id] = await _store_events(store, 1, clock())
    claim = await store.xero_webhooks.claim(event_id, now=clock(), lease_until=clock() + 60)
    assert claim is not None  # a forwarder took it, then died
    forwarder = _forwarder(store, http, target, clock)
    assert (await forwarder.deliver_due()).delivered == 0
    clock.advance(60)
    assert (await forwarder.deliver_due()).delivered == 1
    assert target.posts[0][1] == 2  # its second attempt
    assert not await store.xero_webhooks.mark_delivered(event_id, claim, now=clock())


# The endpoint on a real gateway.


async def _post(
    http: aiohttp.ClientSession, url: str, body: bytes, signature: str | None
) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["x-xero-signature"] = signature
    async with http.post(url + "/_gateway/xero/webhooks", data=body, headers=headers) as response:
        return response.status, await response.read()


async def test_the_gateway_answers_xero_and_forwards_what_it_verified(
    make_gateway: GatewayFactory, http: aiohttp.ClientSession, target: Target
) -> None:
    gateway = await make_gateway(xero={"webhook_key": KEY, "webhook_forward_url": target.url})
    url = str(gateway.url)
    events = gateway.services.store.xero_webhooks

    # Intent to receive: Xero sends a good and a bad signature and expects 200, then 401.
    assert await _post(http, url, INTENT, _independent_signature(KEY, INTENT)) == (200, b"")
    assert await _post(http, url, INTENT, _independent_signature("wrong", INTENT)) == (401, b"")
    assert await _post(http, url, INTENT, None) == (401, b"")
    assert await events.pending_count() == 0  # an empty delivery is never forwarded

    body = _delivery(_event("r-1"), _event("r-2", tenant_id="unknown-tenant"))
    assert await _post(http, url, body, _independent_signature("wrong", body)) == (401, b"")
    assert await events.pending_count() == 0
    assert await _post(http, url, body, _independent_signature(KEY, body)) == (200, b"")

    while len(target.taken) < 2:  # the background forwarder was nudged
        target.arrived.clear()
        await target.arrived.wait()
    forwarded = [json.loads(b)["events"][0] for *_, b, _s in target.posts]
    assert sorted(e["resourceId"] for e in forwarded) == ["r-1", "r-2"]  # unknown tenant too
    assert all(signed for *_, signed in target.posts)
    metrics = gateway.services.metrics.render().decode()
    assert 'gateway_xero_webhook_posts_total{answer="bad_signature"} 3.0' in metrics
    assert 'gateway_xero_webhook_posts_total{answer="intent"} 1.0' in metrics
    assert 'gateway_xero_webhook_events_total{result="received"} 2.0' in metrics


async def test_the_endpoint_refuses_big_and_malformed_posts_and_is_off_without_a_key(
    make_gateway: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    gateway = await make_gateway(xero={"webhook_key": KEY})
    url = str(gateway.url)
    big = b'{"events":[],"pad":"' + b"x" * MAX_BODY_BYTES + b'"}'
    status, _ = await _post(http, url, big, _independent_signature(KEY, big))
    assert status == 413

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(MAX_BODY_BYTES // 4096 + 2):
            yield b"x" * 4096

    async with http.post(
        url + "/_gateway/xero/webhooks", data=chunks(), headers={"x-xero-signature": "x"}
    ) as response:
        assert response.status == 413

    junk = b'{"events":"nope"}'
    async with http.post(
        url + "/_gateway/xero/webhooks",
        data=junk,
        headers={"x-xero-signature": _independent_signature(KEY, junk)},
    ) as response:
        assert response.status == 400
        assert "no events list" in (await response.json())["detail"]

    # Without a forward URL, events are acknowledged and not kept.
    body = _delivery(_event())
    assert await _post(http, url, body, _independent_signature(KEY, body)) == (200, b"")
    assert await gateway.services.store.xero_webhooks.pending_count() == 0

    async with http.get(url + "/_gateway/xero/webhooks") as response:
        assert response.status in (404, 405)


async def test_without_a_webhook_key_the_endpoint_is_not_there(
    gateway: Any, http: aiohttp.ClientSession
) -> None:
    status, _ = await _post(http, str(gateway.url), INTENT, _independent_signature("", INTENT))
    assert status == 404


def test_the_cli_prints_the_key_that_checks_forwards(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(
        '[upstream]\nurl = "http://127.0.0.1:9"\n[store]\npath = "gw.sqlite3"\n'
        f'[security]\nsecret_key = "{SECRET}"\nprevious_secret_keys = ["{OLD_SECRET}"]\n'
    )
    result = run(config, "xero", "webhook-signing-key")
    assert result.returncode == 0, result.stderr
    key = bytes.fromhex(result.stdout.strip())
    assert "previous_secret_keys" in result.stderr
    signer = Keys.derive(SECRET, [OLD_SECRET]).webhook_forward
    header = forward_signature([k.material for k in signer.keys], b"{}", timestamp=START)
    assert forward_signature_valid(key, header, b"{}", now=START)
    assert key != Keys.derive(SECRET).at_rest.current.material  # a key of its own


async def test_settled_events_are_purged_and_pending_ones_kept(
    store: Store, clock: ManualClock
) -> None:
    delivered, pending = await _store_events(store, 2, clock())
    claim = await store.xero_webhooks.claim(delivered, now=clock(), lease_until=clock() + 60)
    assert claim is not None
    assert await store.xero_webhooks.mark_delivered(delivered, claim, now=clock())
    assert await store.xero_webhooks.purge(before=clock()) == 0
    assert await store.xero_webhooks.purge(before=clock() + 1) == 1
    assert await store.xero_webhooks.get(delivered) is None
    assert await store.xero_webhooks.get(pending) is not None
    assert await store.xero_webhooks.pending_count() == 1
