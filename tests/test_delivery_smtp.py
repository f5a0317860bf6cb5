"""Email delivery to a real SMTP server (aiosmtpd) on loopback, and the demo's outbox."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import subprocess
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message as EmailMessage
from email.policy import default
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from gateway.config import EmailConfig
from gateway.delivery.outbox import OutboxSender
from gateway.delivery.sender import DeliveryError, Message, Sender
from gateway.delivery.smtp import SmtpSender

PASSWORD = "smtp-password-that-must-not-leak"
MESSAGE = Message(
    to="ann@example.com", subject="Your Acme sign-in code", body="Your code is 123456.\n"
)


@dataclass
class Mailbox:
    """The SMTP server's side: what it received, and how it answers."""

    port: int = 0
    received: list[Envelope] = field(default_factory=list)
    logins: list[tuple[bytes, bytes]] = field(default_factory=list)
    refuse_rcpt: bool = False

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.refuse_rcpt:
            return "550 5.1.1 No such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.received.append(envelope)
        return "250 Message accepted"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        self.logins.append((data.login, data.password))
        return AuthResult(success=data.password == PASSWORD.encode(), handled=False)

    def only(self) -> EmailMessage:
        assert len(self.received) == 1
        content = self.received[0].original_content
        assert isinstance(content, bytes)
        return message_from_bytes(content, policy=default)


MailboxFactory = Callable[..., Awaitable[Mailbox]]


@pytest.fixture
async def mailbox_factory() -> AsyncIterator[MailboxFactory]:
    servers: list[asyncio.Server] = []

    async def start(*, tls: ssl.SSLContext | None = None, **smtp_options: Any) -> Mailbox:
        box = Mailbox()
        options: dict[str, Any] = {
            "hostname": "mail.test",
            "authenticator": box.authenticate,
            "auth_require_tls": False,
        }
        options.update(smtp_options)
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: SMTP(box, loop=loop, **options), "127.0.0.1", 0, ssl=tls
        )
        servers.append(server)
        box.port = server.sockets[0].getsockname()[1]
        return box

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made with the openssl command."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@dataclass(frozen=True)
class Tls:
    server: ssl.SSLContext  # presents the self-signed certificate
    client: ssl.SSLContext  # trusts it


@pytest.fixture
def tls(tls_files: tuple[Path, Path]) -> Tls:
    cert, key = tls_files
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    return Tls(server=server, client=ssl.create_default_context(cafile=str(cert)))


def _sender(port: int, **options: Any) -> SmtpSender:
    settings: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "starttls": False,
        "sender": "Acme sign-in <no-reply@acme.example>",
    }
    settings.update(options)
    timeout = settings.pop("timeout", 5.0)
    return SmtpSender.from_config(EmailConfig(**settings), timeout=timeout)


def _leaks(error: BaseException) -> bool:
    text = "".join(traceback.format_exception(error)) + repr(error.args)
    return PASSWORD in text or error.__context__ is not None


async def test_the_mail_server_receives_the_message_with_its_headers(
    mailbox_factory: MailboxFactory,
) -> None:
    box = await mailbox_factory()
    await _sender(box.port).send(MESSAGE)
    envelope = box.received[0]
    assert envelope.mail_from == "no-reply@acme.example"
    assert envelope.rcpt_tos == ["ann@example.com"]
    mail = box.only()
    assert mail["From"] == "Acme sign-in <no-reply@acme.example>"
    assert mail["To"] == "ann@example.com"
    assert mail["Subject"] == "Your Acme sign-in code"
    assert mail["Auto-Submitted"] == "auto-generated"
    assert mail["Date"] is not None
    assert str(mail["Message-ID"]).endswith("@acme.example>")
    assert mail.get_content_type() == "text/plain"
    body = mail.get_content()  # type: ignore[attr-defined]
    assert body.splitlines() == ["Your code is 123456."]
    assert box.logins == []


async def test_the_sender_logs_in_when_given_a_user_name(mailbox_factory: MailboxFactory) -> None:
    box = await mailbox_factory()
    await _sender(box.port, username="gateway", password=PASSWORD).send(MESSAGE)
    assert box.logins == [(b"gateway", PASSWORD.encode())]
    assert len(box.received) == 1


async def test_a_refused_login_is_a_delivery_error_without_the_password(
    mailbox_factory: MailboxFactory,
) -> None:
    box = await mailbox_factory()
    with pytest.raises(DeliveryError, match="refused the login") as caught:
        await _sender(box.port, username="gateway", password=PASSWORD + "x").send(MESSAGE)
    assert not _leaks(caught.value)
    assert box.received == []


async def test_starttls_upgrades_the_connection_before_the_message(
    mailbox_factory: MailboxFactory, tls: Tls
) -> None:
    box = await mailbox_factory(tls_context=tls.server, require_starttls=True)
    sender = SmtpSender(
        host="127.0.0.1",
        port=box.port,
        sender="no-reply@acme.example",
        starttls=True,
        tls_context=tls.client,
    )
    await sender.send(MESSAGE)
    assert box.only()["Subject"] == "Your Acme sign-in code"


async def test_tls_from_the_start_carries_the_message(
    mailbox_factory: MailboxFactory, tls: Tls
) -> None:
    box = await mailbox_factory(tls=tls.server)
    sender = SmtpSender(
        host="127.0.0.1",
        port=box.port,
        sender="no-reply@acme.example",
        starttls=True,  # moot under TLS from the start
        tls=True,
        tls_context=tls.client,
    )
    await sender.send(MESSAGE)
    assert box.only()["To"] == "ann@example.com"


async def test_an_untrusted_certificate_is_refused(
    mailbox_factory: MailboxFactory, tls: Tls
) -> None:
    box = await mailbox_factory(tls=tls.server)
    with pytest.raises(DeliveryError, match=r"Could not reach the mail server.*CERTIFICATE_VERIFY"):
        await _sender(box.port, tls=True).send(MESSAGE)
    assert box.received == []


async def test_starttls_asked_for_but_not_offered_is_refused_not_skipped(
    mailbox_factory: MailboxFactory,
) -> None:
    box = await mailbox_factory()
    with pytest.raises(DeliveryError, match="STARTTLS extension not supported"):
        await _sender(box.port, starttls=True).send(MESSAGE)
    assert box.received == []


async def test_a_refused_recipient_is_a_delivery_error(mailbox_factory: MailboxFactory) -> None:
    box = await mailbox_factory()
    box.refuse_rcpt = True
    with pytest.raises(DeliveryError, match="refused the address"):
        await _sender(box.port).send(MESSAGE)


async def test_a_refused_connection_is_a_delivery_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(DeliveryError, match="Could not reach the mail server") as caught:
        await _sender(port, username="u", password=PASSWORD).send(MESSAGE)
    assert not _leaks(caught.value)


async def test_a_server_that_never_greets_is_given_up_after_the_timeout() -> None:
    release = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await release.wait()
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(DeliveryError, match=r"did not answer within 0\.2 seconds"):
            await _sender(port, timeout=0.2).send(MESSAGE)
    finally:
        release.set()
        server.close()
        await server.wait_closed()


async def test_the_code_and_the_address_stay_out_of_the_log(
    mailbox_factory: MailboxFactory, caplog: pytest.LogCaptureFixture
) -> None:
    box = await mailbox_factory()
    with caplog.at_level(logging.DEBUG, logger="gateway"):
        await _sender(box.port).send(MESSAGE)
    text = caplog.text + "".join(str(vars(r)) for r in caplog.records)
    assert "email sent" in caplog.text
    assert "123456" not in text
    assert "ann@example.com" not in text


def test_a_sender_without_its_settings_is_refused() -> None:
    with pytest.raises(ValueError, match=r"\[email\] host and sender"):
        SmtpSender.from_config(EmailConfig())


async def test_the_demo_outbox_logs_the_message_as_demo_only_and_keeps_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outbox = OutboxSender(kept=2)
    sender: Sender = outbox
    with caplog.at_level(logging.INFO, logger="gateway"):
        for n in range(3):
            await sender.send(Message(to=f"+6141234567{n}", subject="Code", body=f"code {n}"))
    assert [m.body for m in outbox.messages] == ["code 2", "code 1"]
    assert all("DEMO ONLY" in r.getMessage() for r in caplog.records)
    assert "code 2" in caplog.text
