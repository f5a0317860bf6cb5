"""Email through SMTP with aiosmtplib: STARTTLS or TLS from the start, optional login."""

from __future__ import annotations

import asyncio
import logging
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

import aiosmtplib

from gateway.config import EmailConfig
from gateway.delivery.sender import DEFAULT_TIMEOUT, DeliveryError, Message
from gateway.mfa.destinations import masked_email

log = logging.getLogger(__name__)


class SmtpSender:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        sender: str,
        starttls: bool = True,
        tls: bool = False,
        username: str = "",
        password: str = "",
        timeout: float = DEFAULT_TIMEOUT,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        if not host or not sender:
            raise ValueError("email delivery needs [email] host and sender")
        self._host, self._port, self._sender = host, port, sender
        # TLS from the start makes STARTTLS moot; STARTTLS asked for is required, never skipped.
        self._tls, self._starttls = tls, starttls and not tls
        self._username, self._password = username, password
        self._timeout = timeout
        self._tls_context = tls_context

    @classmethod
    def from_config(cls, config: EmailConfig, *, timeout: float = DEFAULT_TIMEOUT) -> SmtpSender:
        return cls(
            host=config.host,
            port=config.port,
            sender=config.sender,
            starttls=config.starttls,
            tls=config.tls,
            username=config.username,
            password=config.password,
            timeout=timeout,
        )

    def _email(self, message: Message) -> EmailMessage:
        email = EmailMessage()
        email["From"] = self._sender
        email["To"] = message.to
        email["Subject"] = message.subject
        email["Date"] = formatdate(usegmt=True)
        email["Message-ID"] = make_msgid(domain=self._sender.rpartition("@")[2] or None)
        email["Auto-Submitted"] = "auto-generated"  # RFC 3834: no out-of-office replies
        email.set_content(message.body)
        return email

    async def send(self, message: Message) -> None:
        failure: str | None = None
        try:
            async with asyncio.timeout(self._timeout):
                await aiosmtplib.send(
                    self._email(message),
                    hostname=self._host,
                    port=self._port,
                    username=self._username or None,
                    password=self._password or None,
                    use_tls=self._tls,
                    start_tls=self._starttls,
                    tls_context=self._tls_context,
                    timeout=self._timeout,
                )
        except TimeoutError:
            failure = f"The mail server did not answer within {self._timeout:g} seconds."
        except aiosmtplib.SMTPAuthenticationError as error:
            failure = (
                f"The mail server refused the login ({error.code}); "
                "check [email] username and password."
            )
        except aiosmtplib.SMTPResponseException as error:
            failure = f"The mail server refused the message ({error.code} {error.message[:200]})."
        except aiosmtplib.SMTPRecipientsRefused:
            failure = "The mail server refused the address."
        except (aiosmtplib.SMTPConnectError, OSError) as error:
            failure = f"Could not reach the mail server ({type(error).__name__}: {error})."
        except aiosmtplib.SMTPException as error:
            # For instance STARTTLS asked for in [email] but not offered by the server.
            failure = f"The mail server could not take the message ({error})."
        if failure is not None:
            if self._password:
                failure = failure.replace(self._password, "[password]")
            log.warning("email not sent", extra={"to": masked_email(message.to), "why": failure})
            raise DeliveryError(failure + " Try again in a moment.")
        log.info("email sent", extra={"to": masked_email(message.to)})
