"""Choosing how codes go out, from ``[sms] driver`` and ``[email] driver``."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import aiohttp

from gateway.config import Config
from gateway.delivery.outbox import OutboxSender
from gateway.delivery.sender import DEFAULT_TIMEOUT, Sender
from gateway.delivery.sms import SmsSender
from gateway.delivery.smtp import SmtpSender
from gateway.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class Drivers:
    """The senders for each channel (None: that channel is not set up), the outbox the ``log``
    drivers share (None unless one is chosen), and the HTTP client the SMS driver owns."""

    sms: Sender | None
    email: Sender | None
    outbox: OutboxSender | None
    client: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()


def open_drivers(config: Config, *, timeout: float = DEFAULT_TIMEOUT) -> Drivers:
    """The senders ``config`` asks for; the caller closes them (``Drivers.close``)."""
    outbox = OutboxSender() if "log" in (config.sms.driver, config.email.driver) else None
    if outbox is not None:
        log.warning(
            "a log driver is chosen: codes are written to the log (demo and development only)"
        )
    sms: Sender | None = None
    client: aiohttp.ClientSession | None = None
    if config.sms.driver == "log":
        sms = outbox
    elif config.sms.provider_url:
        if not (config.sms.account and config.sms.api_key and config.sms.sender):
            raise ConfigError(["sms: the http driver needs account, api_key and sender"])
        client = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout))
        sms = SmsSender.from_config(config.sms, client, timeout=timeout)
    email: Sender | None = None
    if config.email.driver == "log":
        email = outbox
    elif config.email.host:
        if not config.email.sender:
            raise ConfigError(["email: the smtp driver needs sender (the From address)"])
        email = SmtpSender.from_config(config.email, timeout=timeout)
    return Drivers(sms=sms, email=email, outbox=outbox, client=client)
