"""SMS delivery against a local server standing in for a Twilio-compatible API."""

from __future__ import annotations

import asyncio
import base64
import logging
import socket
import traceback
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web

from gateway.config import SmsConfig
from gateway.delivery.sender import DeliveryError, Message
from gateway.delivery.sms import SmsSender
from tests.stand_ins import serve_http

ACCOUNT = "AC0123456789abcdef"
API_KEY = "sk-test-very-secret-api-key-4242"
MESSAGE = Message(to="+61412345678", subject="ignored", body="Your code is 123456")


@dataclass
class FakeProvider:
    """The SMS API's side: records each request and answers as told."""

    url: str = ""
    status: int = 201
    answer: object = field(default_factory=lambda: {"sid": "SM1", "status": "queued"})
    hold: asyncio.Event | None = None  # while set up and not yet set, requests hang
    requests: list[tuple[str, str, str, dict[str, str]]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        form = await request.post()
        self.requests.append(
            (
                request.method,
                request.path,
                request.headers.get("Authorization", ""),
                {k: str(v) for k, v in form.items()},
            )
        )
        if self.hold is not None:
            await self.hold.wait()
        return web.json_response(self.answer, status=self.status)


@pytest.fixture
async def provider() -> AsyncIterator[FakeProvider]:
    fake = FakeProvider()
    async with serve_http(fake.handle) as url:
        fake.url = url
        yield fake
        if fake.hold is not None:
            fake.hold.set()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def _sender(url: str, session: aiohttp.ClientSession, *, timeout: float = 5.0) -> SmsSender:
    config = SmsConfig(provider_url=url, account=ACCOUNT, api_key=API_KEY, sender="+61400000000")
    return SmsSender.from_config(config, session, timeout=timeout)


def _leaks(error: BaseException) -> bool:
    text = "".join(traceback.format_exception(error)) + repr(error.args)
    return API_KEY in text or error.__context__ is not None or error.__cause__ is not None


async def test_the_message_is_posted_to_the_account_with_basic_auth(
    provider: FakeProvider, session: aiohttp.ClientSession
) -> None:
    await _sender(provider.url + "/", session).send(MESSAGE)
    expected_auth = "Basic " + base64.b64encode(f"{ACCOUNT}:{API_KEY}".encode()).decode()
    assert provider.requests == [
        (
            "POST",
            f"/2010-04-01/Accounts/{ACCOUNT}/Messages.json",
            expected_auth,
            {"To": "+61412345678", "From": "+61400000000", "Body": "Your code is 123456"},
        )
    ]


async def test_the_code_and_the_number_stay_out_of_the_log(
    provider: FakeProvider, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="gateway"):
        await _sender(provider.url, session).send(MESSAGE)
    text = caplog.text + "".join(str(vars(r)) for r in caplog.records)
    assert "sms sent" in caplog.text
    assert "123456" not in text
    assert "412345678" not in text
    assert API_KEY not in text


@pytest.mark.parametrize(
    ("status", "answer", "says"),
    [
        (500, {"message": "internal"}, "refused the message (HTTP 500): internal"),
        (503, "<html>down</html>", "refused the message (HTTP 503)."),
        (400, {"code": 21211, "message": "Invalid 'To' Phone Number"}, "Invalid 'To'"),
        (401, {"message": f"bad token {API_KEY}"}, "check [sms] account and api_key"),
        (302, {}, "HTTP 302"),
    ],
)
async def test_a_refusal_becomes_a_delivery_error_without_the_key(
    provider: FakeProvider,
    session: aiohttp.ClientSession,
    status: int,
    answer: object,
    says: str,
) -> None:
    provider.status, provider.answer = status, answer
    with pytest.raises(DeliveryError) as caught:
        await _sender(provider.url, session).send(MESSAGE)
    assert says in str(caught.value)
    assert str(caught.value).endswith("Try again in a moment.")
    assert not _leaks(caught.value)


async def test_a_provider_that_does_not_answer_in_time_becomes_a_delivery_error(
    provider: FakeProvider, session: aiohttp.ClientSession
) -> None:
    provider.hold = asyncio.Event()
    with pytest.raises(DeliveryError, match=r"did not answer within 0\.2 seconds") as caught:
        await _sender(provider.url, session, timeout=0.2).send(MESSAGE)
    assert len(provider.requests) == 1
    assert not _leaks(caught.value)


async def test_a_refused_connection_becomes_a_delivery_error(
    session: aiohttp.ClientSession,
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with pytest.raises(DeliveryError, match="Could not reach the SMS provider") as caught:
        await _sender(dead, session).send(MESSAGE)
    assert not _leaks(caught.value)


def test_a_sender_without_its_settings_is_refused() -> None:
    with pytest.raises(ValueError, match=r"\[sms\] provider_url, account, api_key and sender"):
        SmsSender.from_config(SmsConfig(), session=None)  # type: ignore[arg-type]
