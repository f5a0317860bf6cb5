"""The demo's sender: messages go to the log, codes and all, and into a short in-memory list.

DEMO ONLY: it exists so a newcomer can finish SMS and email steps without a phone or a mail
server. It must never be the sender of a real deployment, because it writes codes to the log.
"""

from __future__ import annotations

import logging
from collections import deque

from gateway.delivery.sender import Message

log = logging.getLogger(__name__)

KEPT = 50


class OutboxSender:
    """Delivers nothing: logs each message (with its body) and keeps the last ``kept``."""

    def __init__(self, *, kept: int = KEPT) -> None:
        self._messages: deque[Message] = deque(maxlen=kept)

    @property
    def messages(self) -> tuple[Message, ...]:
        """The messages kept, newest first."""
        return tuple(reversed(self._messages))

    async def send(self, message: Message) -> None:
        self._messages.append(message)
        log.warning(
            "DEMO ONLY, not delivered: message to %s: %s: %s",
            message.to,
            message.subject,
            message.body,
        )
