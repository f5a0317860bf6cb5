"""SMS through a Twilio-compatible HTTP API: one form POST per message, with basic auth.

``POST {provider_url}/2010-04-01/Accounts/{account}/Messages.json`` with the form fields
``To``, ``From`` and ``Body``; any 2xx answer means the provider took the message.
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import quote

import aiohttp

from gateway.config import SmsConfig
from gateway.delivery.sender import DEFAULT_TIMEOUT, DeliveryError, Message
from gateway.mfa.destinations import masked_phone

log = logging.getLogger(__name__)

_DETAIL_LIMIT = 200


class SmsSender:
    def __init__(
        self,
        *,
        provider_url: str,
        account: str,
        api_key: str,
        sender: str,
        session: aiohttp.ClientSession,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        if not provider_url or not account or not api_key or not sender:
            raise ValueError("SMS delivery needs [sms] provider_url, account, api_key and sender")
        self._url = (
            f"{provider_url.rstrip('/')}/2010-04-01/Accounts/{quote(account, safe='')}"
            "/Messages.json"
        )
        self._headers = {"Authorization": aiohttp.encode_basic_auth(account, api_key)}
        self._api_key = api_key
        self._sender = sender
        self._session = session
        self._timeout = timeout

    @classmethod
    def from_config(
        cls, config: SmsConfig, session: aiohttp.ClientSession, *, timeout: float = DEFAULT_TIMEOUT
    ) -> SmsSender:
        return cls(
            provider_url=config.provider_url,
            account=config.account,
            api_key=config.api_key,
            sender=config.sender,
            session=session,
            timeout=timeout,
        )

    async def send(self, message: Message) -> None:
        form = {"To": message.to, "From": self._sender, "Body": message.body}
        failure: str | None = None
        # The error is built outside the except clauses so it carries no chained exception
        # (aiohttp's hold the request, and so the Authorization header).
        try:
            async with asyncio.timeout(self._timeout):
                async with self._session.post(
                    self._url, data=form, headers=self._headers, allow_redirects=False
                ) as response:
                    if not 200 <= response.status < 300:
                        failure = await self._refusal(response)
        except TimeoutError:
            failure = f"The SMS provider did not answer within {self._timeout:g} seconds."
        except aiohttp.ClientError as error:
            failure = f"Could not reach the SMS provider ({type(error).__name__})."
        if failure is not None:
            log.warning("sms not sent", extra={"to": masked_phone(message.to), "why": failure})
            raise DeliveryError(failure + " Try again in a moment.")
        log.info("sms sent", extra={"to": masked_phone(message.to)})

    async def _refusal(self, response: aiohttp.ClientResponse) -> str:
        """What the provider said when it refused, in one line without the key."""
        detail = ""
        try:
            body = await response.json(content_type=None)
        except (ValueError, aiohttp.ClientError):
            body = None
        if isinstance(body, dict) and isinstance(body.get("message"), str):
            detail = ": " + body["message"][:_DETAIL_LIMIT].replace(self._api_key, "[key]")
        if response.status in (401, 403):
            return (
                f"The SMS provider refused the credentials (HTTP {response.status}){detail}; "
                "check [sms] account and api_key."
            )
        return f"The SMS provider refused the message (HTTP {response.status}){detail}."
