"""Forwarding stored Xero webhook events to the app: claim a due event, POST it signed, then
mark it delivered, or due again after a jittered backoff, or abandoned past the retry cap.

Several forwarders (in one process or many, on one database) may run at once: each event is
claimed by a conditional UPDATE with a lease longer than an attempt may take, so one
forwarder at a time holds it. Delivery is at least once: a forwarder that dies after the app
took an event but before marking it leaves it to be sent again once the lease runs out, with
the same ``X-Gateway-Webhook-Id``, by which the app can tell.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

from gateway.audit import WebhookAbandoned
from gateway.clock import Clock
from gateway.crypto.signing import Signer
from gateway.errors import StoreError
from gateway.store.audit import AuditRepository
from gateway.store.xero_webhooks import StoredWebhookEvent, WebhookEventRepository
from gateway.xero.webhooks import (
    FORWARD_ATTEMPT_HEADER,
    FORWARD_ID_HEADER,
    FORWARD_SIGNATURE_HEADER,
    RetryRule,
    forward_body,
    forward_signature,
)

ATTEMPT_TIMEOUT = 10.0  # seconds the app has to answer one forwarded event
LEASE = 60.0  # seconds a claim holds: well over an attempt, so no two attempts overlap
BATCH = 20  # events claimed per round
POLL_SECONDS = 5.0  # how often a forwarder looks for due events when not nudged

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class RoundCount:
    """What one round of forwarding did."""

    delivered: int = 0
    retried: int = 0
    abandoned: int = 0
    lost: int = 0  # claims taken over by another forwarder meanwhile (lease ran out)

    @property
    def tried(self) -> int:
        return self.delivered + self.retried + self.abandoned + self.lost


class WebhookForwarder:
    """Sends due events to ``url``; ``count`` is told each outcome (for metrics)."""

    def __init__(
        self,
        events: WebhookEventRepository,
        audit: AuditRepository,
        *,
        client: aiohttp.ClientSession,
        url: str,
        signer: Signer,
        clock: Clock,
        count: Callable[[str], None] = lambda _result: None,
        rule: RetryRule = RetryRule(),  # noqa: B008 - a frozen value
        jitter: Callable[[], float] = random.random,
        timeout: float = ATTEMPT_TIMEOUT,
        lease: float = LEASE,
    ) -> None:
        self._events = events
        self._audit = audit
        self._client = client
        self.url = url
        self._signer = signer
        self._clock = clock
        self._count = count
        self.rule = rule
        self._jitter = jitter
        self._timeout = timeout
        self._lease = lease
        self._wake = asyncio.Event()

    def nudge(self) -> None:
        """Look for due events now rather than at the next poll (new ones were stored)."""
        self._wake.set()

    async def deliver_due(self, *, batch: int = BATCH) -> RoundCount:
        """One round: try every due event (up to ``batch``) that this forwarder can claim."""
        outcomes: dict[str, int] = {}
        for event in await self._events.due(now=self._clock(), limit=batch):
            outcome = await self._forward(event)
            if outcome is not None:
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
        return RoundCount(**outcomes)

    async def _forward(self, event: StoredWebhookEvent) -> str | None:
        """Claim and try one event: what became of it, or None if another forwarder had it."""
        now = self._clock()
        claim = await self._events.claim(event.id, now=now, lease_until=now + self._lease)
        if claim is None:
            return None
        attempts = event.attempts + 1
        error = await self._attempt(event, attempt=attempts)
        now = self._clock()
        if error is None:
            outcome = "delivered"
            held = await self._events.mark_delivered(event.id, claim, now=now)
        else:
            next_at = now + self.rule.delay(attempts, self._jitter())
            gives_up = self.rule.gives_up(
                attempts=attempts, received_at=event.received_at, next_at=next_at
            )
            retry_at = None if gives_up else next_at
            outcome = "retried" if retry_at is not None else "abandoned"
            held = await self._events.mark_failed(
                event.id, claim, now=now, error=error, retry_at=retry_at
            )
        if not held:
            return "lost"
        self._count(outcome)
        if outcome == "retried":
            log.warning(
                "xero webhook forward failed; will retry",
                extra={"event_id": event.id, "attempts": attempts, "error": error},
            )
        elif outcome == "abandoned":
            log.error("xero webhook event abandoned", extra={"event_id": event.id})
            await self._audit.record(
                WebhookAbandoned(
                    event_id=event.id,
                    tenant_id=event.tenant_id,
                    event_category=event.event_category,
                    event_type=event.event_type,
                    resource_id=event.resource_id,
                    attempts=attempts,
                    error=error or "",
                ),
                at=now,
                actor="gateway",
            )
        return outcome

    async def _attempt(self, event: StoredWebhookEvent, *, attempt: int) -> str | None:
        """POST one event to the app: None if it took it (any 2xx), else what went wrong."""
        body = forward_body(event.document)
        keys = [key.material for key in self._signer.keys]
        headers = {
            "Content-Type": "application/json",
            FORWARD_SIGNATURE_HEADER: forward_signature(keys, body, timestamp=self._clock()),
            FORWARD_ID_HEADER: event.id,
            FORWARD_ATTEMPT_HEADER: str(attempt),
        }
        try:
            async with self._client.post(
                self.url,
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                allow_redirects=False,
            ) as response:
                await response.read()
                if 200 <= response.status < 300:
                    return None
                return f"the app answered {response.status}"
        except TimeoutError:
            return f"the app did not answer within {self._timeout:g} s"
        except aiohttp.ClientError as exc:
            return f"could not reach the app: {type(exc).__name__}: {exc}"

    async def run(self, *, poll: float = POLL_SECONDS) -> None:
        """Forward until cancelled: a round whenever nudged, or every ``poll`` seconds."""
        while True:
            self._wake.clear()
            try:
                done = await self.deliver_due()
            except StoreError:
                log.exception("could not forward xero webhook events; will retry")
            else:
                if done.tried >= BATCH:
                    continue  # a full round: more may be due already
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(poll):
                    await self._wake.wait()
