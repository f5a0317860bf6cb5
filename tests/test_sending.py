"""Sending codes through the service: a real SMTP server (aiosmtpd), a local stand-in for the
SMS API, the store on a real SQLite file, and the clock injected."""

from __future__ import annotations

import asyncio
import base64
import logging
import re
from collections.abc import AsyncIterator
from email import message_from_bytes
from email.policy import default
from pathlib import Path

import aiohttp
import pytest

from gateway.clock import ManualClock
from gateway.config import build_config
from gateway.crypto.keys import Keys
from gateway.delivery.sender import Message
from gateway.delivery.sms import SmsSender
from gateway.delivery.smtp import SmtpSender
from gateway.mfa.attempts import attempt_key
from gateway.mfa.codes import CodeVerdict
from gateway.mfa.send_limits import SMS_GLOBAL_KEY, SendRule, user_send_key
from gateway.sending.drivers import Drivers, open_drivers
from gateway.sending.service import (
    NOT_SENT,
    Channel,
    CodeRequest,
    CodeSender,
    SendLimits,
    SendStatus,
    open_code_sender,
)
from gateway.store import Store
from tests.conftest import SECRET
from tests.stand_ins import Mailbox, Provider

ACCOUNT = "AC0123456789abcdef"
API_KEY = "sk-test-very-secret-api-key-4242"
PHONE = "+61412345678"
EMAIL = "ann@example.com"
LIFETIME = 600.0
CODE = re.compile(r"\b(\d{6})\b")


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


LIMITS = SendLimits(
    per_user=SendRule(max_sends=5, window=900.0),
    per_destination=SendRule(max_sends=5, window=3600.0),
    sms_global=SendRule(max_sends=100, window=3600.0),
)


@pytest.fixture
async def sending(
    store: Store,
    clock: ManualClock,
    provider: Provider,
    mailbox: Mailbox,
    client: aiohttp.ClientSession,
) -> AsyncIterator[CodeSender]:
    sms = SmsSender(
        provider_url=provider.url,
        account=ACCOUNT,
        api_key=API_KEY,
        sender="+61400000000",
        session=client,
    )
    email = SmtpSender(host="127.0.0.1", port=mailbox.port, sender="gw@example.com", starttls=False)
    sender = make_sender(store, clock, Drivers(sms=sms, email=email, outbox=None))
    yield sender
    await sender.close()


def make_sender(
    store: Store,
    clock: ManualClock,
    drivers: Drivers,
    *,
    limits: SendLimits = LIMITS,
    timeout: float = 5.0,
) -> CodeSender:
    return CodeSender(
        store=store,
        clock=clock,
        code_key=b"k" * 32,
        sealer=Keys.derive(SECRET).at_rest,
        drivers=drivers,
        limits=limits,
        timeout=timeout,
    )


async def _user(store: Store, email: str = "ann@h.example") -> str:
    org = await store.organisations.find_by_name("Harbour") or await store.organisations.add(
        name="Harbour", now=0
    )
    user = await store.users.add(
        org_id=org.id, email=email, display_name="Ann", role="member", password_hash="x", now=0
    )
    return user.id


def _request(
    user_id: str,
    channel: Channel = Channel.SMS,
    destination: str = PHONE,
    purpose: str = "challenge",
) -> CodeRequest:
    return CodeRequest(
        user_id=user_id,
        org_id=None,
        purpose=purpose,
        channel=channel,
        destination=destination,
        lifetime=LIFETIME,
        client_addr="203.0.113.9",
    )


def _gateway_log(caplog: pytest.LogCaptureFixture) -> str:
    """Everything the gateway's own loggers wrote, extras included (not the SMTP server's)."""
    return "\n".join(
        f"{record.getMessage()} {record.__dict__}"
        for record in caplog.records
        if record.name.startswith("gateway")
    )


async def _kinds(store: Store) -> list[str]:
    return [event.kind for event in await store.audit.list()]


async def test_an_email_code_reaches_a_real_smtp_server_and_works_once(
    store: Store, sending: CodeSender, mailbox: Mailbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    user = await _user(store)
    outcome = await sending.send_code(_request(user, Channel.EMAIL, EMAIL, "enrol-backup"))
    assert outcome.status is SendStatus.SENT
    assert outcome.message == "We sent a code to a•••@example.com. It expires in 10 minutes."
    [raw] = mailbox.received
    mail = message_from_bytes(raw, policy=default)
    assert mail["To"] == EMAIL
    assert mail["Subject"] == "Your verification code"
    match = CODE.search(mail.get_body().get_content())  # type: ignore[union-attr]
    assert match is not None
    code = match.group(1)
    assert code not in _gateway_log(caplog)
    assert "code sent" in _gateway_log(caplog)
    check = await sending.check_code(user_id=user, purpose="enrol-backup", typed=code)
    assert check.accepted
    assert check.channel is Channel.EMAIL
    assert check.destination == EMAIL
    again = await sending.check_code(user_id=user, purpose="enrol-backup", typed=code)
    assert again.verdict is CodeVerdict.USED
    [sent] = await store.audit.list()
    assert (sent.kind, sent.subject, sent.actor) == ("mfa.code_sent", user, user)
    assert sent.detail["to"] == "a•••@example.com"
    assert code not in str(sent.detail)


async def test_an_sms_code_is_posted_to_the_provider_as_twilio_expects(
    store: Store,
    sending: CodeSender,
    provider: Provider,
    clock: ManualClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    user = await _user(store)
    assert (await sending.send_code(_request(user))).sent
    [(path, auth, form)] = provider.requests
    assert path == f"/2010-04-01/Accounts/{ACCOUNT}/Messages.json"
    assert auth == "Basic " + base64.b64encode(f"{ACCOUNT}:{API_KEY}".encode()).decode()
    assert (form["To"], form["From"]) == (PHONE, "+61400000000")
    match = CODE.search(form["Body"])
    assert match is not None
    assert "expires in 10 minutes" in form["Body"]
    code = match.group(1)
    log = _gateway_log(caplog)
    assert code not in log
    assert API_KEY not in log
    assert "sms sent" in log
    wrong = "000000" if code != "000000" else "111111"
    assert (await sending.check_code(user_id=user, purpose="challenge", typed=wrong)).verdict is (
        CodeVerdict.WRONG
    )
    # Another step, another user: nothing to match.
    assert (await sending.check_code(user_id=user, purpose="enrol-sms", typed=code)).verdict is None
    other = await _user(store, "bob@h.example")
    assert (
        await sending.check_code(user_id=other, purpose="challenge", typed=code)
    ).verdict is None
    clock.advance(LIFETIME)  # a code lives exactly its lifetime
    late = await sending.check_code(user_id=user, purpose="challenge", typed=code)
    assert late.verdict is CodeVerdict.EXPIRED


async def test_a_new_code_for_the_step_retires_the_old_one(
    store: Store, sending: CodeSender, provider: Provider
) -> None:
    user = await _user(store)
    await sending.send_code(_request(user))
    await sending.send_code(_request(user))
    first, second = (CODE.search(form["Body"]).group(1) for _, _, form in provider.requests)  # type: ignore[union-attr]
    if first != second:
        old = await sending.check_code(user_id=user, purpose="challenge", typed=first)
        assert old.verdict is CodeVerdict.WRONG
    assert (await sending.check_code(user_id=user, purpose="challenge", typed=second)).accepted


async def test_two_racing_checks_of_the_right_code_let_exactly_one_through(
    store: Store, sending: CodeSender, provider: Provider
) -> None:
    user = await _user(store)
    await sending.send_code(_request(user))
    code = CODE.search(provider.requests[0][2]["Body"]).group(1)  # type: ignore[union-attr]
    checks = await asyncio.gather(
        *(sending.check_code(user_id=user, purpose="challenge", typed=code) for _ in range(4))
    )
    assert sorted(c.verdict.value for c in checks if c.verdict) == ["consumed"] + ["used"] * 3


async def test_a_user_asking_too_often_is_refused_clearly_and_audited(
    store: Store, sending: CodeSender, provider: Provider, clock: ManualClock
) -> None:
    user = await _user(store)
    for n in range(5):
        assert (await sending.send_code(_request(user, destination=f"+6141234567{n}"))).sent
    refused = await sending.send_code(_request(user, destination="+61412345679"))
    assert refused.status is SendStatus.LIMITED
    assert refused.message == (
        "You have asked for too many codes. Wait 15 minutes, then send again."
    )
    assert refused.retry_after == 900.0
    assert len(provider.requests) == 5
    assert (await _kinds(store))[-1] == "mfa.code_send_limited"
    clock.advance(900)
    assert (await sending.send_code(_request(user, destination="+61412345679"))).sent


async def test_one_destination_gets_only_so_many_codes_whoever_asks(
    store: Store, sending: CodeSender, provider: Provider
) -> None:
    users = [await _user(store, f"u{n}@h.example") for n in range(6)]
    for user in users[:5]:
        assert (await sending.send_code(_request(user))).sent
    refused = await sending.send_code(_request(users[5]))
    assert refused.status is SendStatus.LIMITED
    assert "sent there recently" in refused.message
    [limited] = [e for e in await store.audit.list() if e.kind == "mfa.code_send_limited"]
    assert limited.detail["limit"] == "destination"
    # The refusal took back the user's own booking: they may still send elsewhere.
    assert await store.throttle.get(user_send_key(users[5])) is None


async def test_all_sms_together_stop_at_the_toll_fraud_guard_while_email_goes_on(
    store: Store,
    clock: ManualClock,
    provider: Provider,
    mailbox: Mailbox,
    client: aiohttp.ClientSession,
) -> None:
    sms = SmsSender(
        provider_url=provider.url, account=ACCOUNT, api_key=API_KEY, sender="X", session=client
    )
    email = SmtpSender(host="127.0.0.1", port=mailbox.port, sender="gw@example.com", starttls=False)
    limits = SendLimits(
        per_user=LIMITS.per_user,
        per_destination=LIMITS.per_destination,
        sms_global=SendRule(max_sends=2, window=3600.0),
    )
    sending = make_sender(store, clock, Drivers(sms=sms, email=email, outbox=None), limits=limits)
    try:
        users = [await _user(store, f"u{n}@h.example") for n in range(3)]
        for n, user in enumerate(users[:2]):
            assert (await sending.send_code(_request(user, destination=f"+6141234567{n}"))).sent
        refused = await sending.send_code(_request(users[2], destination="+61412345672"))
        assert refused.status is SendStatus.LIMITED
        assert refused.message.startswith("Text messages cannot be sent just now.")
        assert (await sending.send_code(_request(users[2], Channel.EMAIL, EMAIL))).sent
        state = await store.throttle.get(SMS_GLOBAL_KEY)
        assert state is not None
        assert state.failures == 2
    finally:
        await sending.close()


async def test_a_failed_send_is_audited_and_spends_nothing(
    store: Store, sending: CodeSender, provider: Provider
) -> None:
    user = await _user(store)
    provider.status = 500
    outcome = await sending.send_code(_request(user))
    assert outcome.status is SendStatus.FAILED
    assert outcome.message == NOT_SENT
    [failed] = await store.audit.list()
    assert failed.kind == "mfa.code_send_failed"
    assert "HTTP 500" in failed.detail["reason"]
    assert failed.detail["to"] == "+61 ••• ••• 678"
    # No send booked against any limit, no attempt counted, no code left to guess at.
    rows = await store.db.fetch_all("SELECT key FROM throttle")
    assert rows == []
    assert await store.throttle.get(attempt_key(user)) is None
    assert await store.codes.current(user, "challenge") is None
    provider.status = 201
    assert (await sending.send_code(_request(user))).sent


async def test_a_send_that_outlasts_the_timeout_is_answered_and_given_up(
    store: Store, clock: ManualClock, provider: Provider, client: aiohttp.ClientSession
) -> None:
    provider.hold = asyncio.Event()  # the provider never answers
    sms = SmsSender(
        provider_url=provider.url, account=ACCOUNT, api_key=API_KEY, sender="X", session=client
    )
    sending = make_sender(store, clock, Drivers(sms=sms, email=None, outbox=None), timeout=0.05)
    try:
        user = await _user(store)
        outcome = await sending.send_code(_request(user))
        assert outcome.status is SendStatus.FAILED
        [failed] = await store.audit.list()
        assert "longer than 0.05 seconds" in failed.detail["reason"]
        assert sending.in_flight == 0
    finally:
        await sending.close()


async def test_a_request_that_goes_away_leaves_its_send_to_finish(
    store: Store, clock: ManualClock, provider: Provider, client: aiohttp.ClientSession
) -> None:
    provider.hold = asyncio.Event()
    sms = SmsSender(
        provider_url=provider.url, account=ACCOUNT, api_key=API_KEY, sender="X", session=client
    )
    sending = make_sender(store, clock, Drivers(sms=sms, email=None, outbox=None))
    try:
        user = await _user(store)
        request = asyncio.create_task(sending.send_code(_request(user)))
        await provider.arrived.wait()
        request.cancel()
        with pytest.raises(asyncio.CancelledError):
            await request
        assert sending.in_flight == 1
        provider.hold.set()
        await sending.settle()  # the send finishes on its own
        assert sending.in_flight == 0
        assert await _kinds(store) == ["mfa.code_sent"]
    finally:
        await sending.close()


async def test_stopping_cancels_sends_in_flight_and_refuses_new_ones(
    store: Store, clock: ManualClock, provider: Provider, client: aiohttp.ClientSession
) -> None:
    provider.hold = asyncio.Event()
    sms = SmsSender(
        provider_url=provider.url, account=ACCOUNT, api_key=API_KEY, sender="X", session=client
    )
    sending = make_sender(store, clock, Drivers(sms=sms, email=None, outbox=None))
    user = await _user(store)
    request = asyncio.create_task(sending.send_code(_request(user)))
    await provider.arrived.wait()
    await sending.close()
    assert (await request).status is SendStatus.FAILED
    assert sending.in_flight == 0
    later = await sending.send_code(_request(user))
    assert later.status is SendStatus.FAILED
    assert len(provider.requests) == 1


async def test_a_channel_that_is_not_set_up_says_so(store: Store, clock: ManualClock) -> None:
    sending = make_sender(store, clock, Drivers(sms=None, email=None, outbox=None))
    user = await _user(store)
    outcome = await sending.send_code(_request(user))
    assert outcome.status is SendStatus.UNAVAILABLE
    assert outcome.message == "Codes cannot be sent by text message here. Choose another method."
    assert not sending.available(Channel.SMS)
    assert not sending.available(Channel.EMAIL)
    with pytest.raises(ValueError, match="purpose"):
        await sending.send_code(_request(user, purpose="Bad Purpose"))


async def test_the_log_drivers_share_the_demo_outbox(
    store: Store, clock: ManualClock, tmp_path: Path
) -> None:
    config = build_config(
        {
            "upstream": {"url": "http://127.0.0.1:1"},
            "security": {"secret_key": SECRET},
            "sms": {"driver": "log"},
            "email": {"driver": "log"},
        },
        env={},
    )
    drivers = open_drivers(config)
    assert drivers.outbox is not None
    assert drivers.sms is drivers.email is drivers.outbox
    sending = make_sender(store, clock, drivers)
    try:
        user = await _user(store)
        assert (await sending.send_code(_request(user))).sent
        assert (await sending.send_code(_request(user, Channel.EMAIL, EMAIL, "enrol-backup"))).sent
        newest, oldest = drivers.outbox.messages
        assert (newest.to, oldest.to) == (EMAIL, PHONE)
        code = CODE.search(oldest.body).group(1)  # type: ignore[union-attr]
        assert (await sending.check_code(user_id=user, purpose="challenge", typed=code)).accepted
        assert sending.outbox is drivers.outbox
    finally:
        await sending.close()


def test_the_http_drivers_need_their_settings() -> None:
    base = {"upstream": {"url": "http://127.0.0.1:1"}, "security": {"secret_key": SECRET}}
    none = open_drivers(build_config(base, env={}))
    assert (none.sms, none.email, none.outbox) == (None, None, None)
    with pytest.raises(Exception, match="account, api_key and sender"):
        open_drivers(build_config({**base, "sms": {"provider_url": "https://sms.test"}}, env={}))
    with pytest.raises(Exception, match="sender"):
        open_drivers(build_config({**base, "email": {"host": "mail.test"}}, env={}))


def test_the_message_carries_the_code_and_its_lifetime() -> None:
    from gateway.sending.service import code_message

    sms = code_message(Channel.SMS, PHONE, "123456", 61)
    assert sms == Message(
        to=PHONE,
        subject="",
        body="123456 is your verification code. It expires in 2 minutes. Never share it.",
    )
    assert "123456" in code_message(Channel.EMAIL, EMAIL, "123456", 600).body


async def test_a_code_sent_before_the_secret_was_rotated_still_works(
    tmp_path: Path, store: Store, clock: ManualClock
) -> None:
    old_secret, new_secret = SECRET, "a-brand-new-secret-key-long-enough-00000000"
    base = {"upstream": {"url": "http://127.0.0.1:1"}, "sms": {"driver": "log"}}
    before = build_config({**base, "security": {"secret_key": old_secret}}, env={})
    sending = open_code_sender(before, store=store, clock=clock, keys=Keys.derive(old_secret))
    user = await _user(store)
    assert (await sending.send_code(_request(user))).sent
    assert sending.outbox is not None
    code = CODE.search(sending.outbox.messages[0].body)
    assert code is not None
    await sending.close()
    rotated = {"secret_key": new_secret, "previous_secret_keys": [old_secret]}
    after = build_config({**base, "security": rotated}, env={})
    keys = Keys.derive(new_secret, [old_secret])
    sending = open_code_sender(after, store=store, clock=clock, keys=keys)
    try:
        wrong = "000000" if code[1] != "000000" else "111111"
        check = await sending.check_code(user_id=user, purpose="challenge", typed=wrong)
        assert check.verdict is CodeVerdict.WRONG
        assert (await sending.check_code(user_id=user, purpose="challenge", typed=code[1])).accepted
    finally:
        await sending.close()
