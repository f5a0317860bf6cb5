"""What every way of sending a code offers: ``send(message)``, or a DeliveryError saying why not.

Senders never write a message's body (the code) to the log; the demo's outbox, which exists
to show codes without a phone, is the one exception and says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from gateway.errors import GatewayError

DEFAULT_TIMEOUT = 10.0  # seconds a send may take before it is given up


class DeliveryError(GatewayError):
    """A message could not be sent; the message says why (never with a credential in it)."""


@dataclass(frozen=True, kw_only=True)
class Message:
    """One message: ``to`` is an E.164 number or an email address; SMS ignores ``subject``."""

    to: str
    subject: str
    body: str


class Sender(Protocol):
    async def send(self, message: Message) -> None:
        """Hand the message over for delivery, or raise DeliveryError."""
        ...
