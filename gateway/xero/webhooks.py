"""Xero webhooks, the pure parts: checking ``x-xero-signature``, reading a delivery's events,
signing what the gateway forwards to the app, and when a failed forward is tried again.

Xero signs each POST with base64(HMAC-SHA256(webhook key, raw body)) in ``x-xero-signature``
and wants 200 with an empty body for a good signature, 401 for a bad one, within 5 seconds.
Its first post (intent to receive) has no events; later ones carry ``events[]``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gateway.store.xero_webhooks import NewWebhookEvent

MAX_BODY_BYTES = 256 * 1024  # larger posts are refused before they are read
SIGNATURE_HEADER = "x-xero-signature"
# What the app receives with each forwarded event.
FORWARD_SIGNATURE_HEADER = "X-Gateway-Signature"
FORWARD_ID_HEADER = "X-Gateway-Webhook-Id"
FORWARD_ATTEMPT_HEADER = "X-Gateway-Webhook-Attempt"
FORWARD_TOLERANCE = 300  # seconds either side of its timestamp a forward is accepted by the app
# The event fields Xero documents; each must be a string.
EVENT_FIELDS = (
    "resourceUrl",
    "resourceId",
    "eventDateUtc",
    "eventType",
    "eventCategory",
    "tenantId",
    "tenantType",
)


class WebhookPayloadError(ValueError):
    """A signed post whose body is not a webhook delivery; the message says what is wrong."""


def xero_signature(key: str, body: bytes) -> str:
    """The ``x-xero-signature`` Xero sends for ``body`` under webhook key ``key``."""
    tag = hmac.new(key.encode("utf-8"), body, hashlib.sha256).digest()
    return base64.b64encode(tag).decode("ascii")


def signature_valid(key: str, body: bytes, presented: str | None) -> bool:
    """Whether ``presented`` is Xero's signature of ``body`` under ``key``, compared in constant
    time. No key configured, or no signature presented, is never valid."""
    if not key or not presented:
        return False
    expected = xero_signature(key, body).encode("ascii")
    return hmac.compare_digest(expected, presented.strip().encode("utf-8", "replace"))


@dataclass(frozen=True, kw_only=True)
class WebhookEvent:
    """One event of a delivery; ``document`` is the event object as Xero sent it, as JSON
    (fields Xero may add later included), which is what the app is forwarded."""

    tenant_id: str
    tenant_type: str
    event_category: str
    event_type: str
    resource_id: str
    resource_url: str
    event_date_utc: str
    document: str


@dataclass(frozen=True, kw_only=True)
class Delivery:
    """A webhook post: its events (none for intent to receive) and Xero's sequence numbers."""

    events: tuple[WebhookEvent, ...]
    first_event_sequence: int | None
    last_event_sequence: int | None


def parse_delivery(body: bytes) -> Delivery:
    """The delivery in a (signature-checked) body; WebhookPayloadError if it is not one."""
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise WebhookPayloadError("the body is not JSON") from None
    if not isinstance(document, dict):
        raise WebhookPayloadError("the body is not a JSON object")
    events = document.get("events")
    if not isinstance(events, list):
        raise WebhookPayloadError("the body has no events list")
    return Delivery(
        events=tuple(_event(number, item) for number, item in enumerate(events)),
        first_event_sequence=_sequence(document.get("firstEventSequence")),
        last_event_sequence=_sequence(document.get("lastEventSequence")),
    )


def _sequence(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _event(number: int, item: Any) -> WebhookEvent:
    if not isinstance(item, dict):
        raise WebhookPayloadError(f"event {number} is not a JSON object")
    missing = [name for name in EVENT_FIELDS if not isinstance(item.get(name), str)]
    if missing:
        raise WebhookPayloadError(f"event {number} lacks {', '.join(missing)} (as strings)")
    return WebhookEvent(
        tenant_id=item["tenantId"],
        tenant_type=item["tenantType"],
        event_category=item["eventCategory"],
        event_type=item["eventType"],
        resource_id=item["resourceId"],
        resource_url=item["resourceUrl"],
        event_date_utc=item["eventDateUtc"],
        document=json.dumps(item, separators=(",", ":"), ensure_ascii=False),
    )


def events_to_keep(delivery: Delivery) -> list[NewWebhookEvent]:
    """A delivery's events as the store keeps them until they are forwarded."""
    return [
        NewWebhookEvent(
            tenant_id=event.tenant_id,
            tenant_type=event.tenant_type,
            event_category=event.event_category,
            event_type=event.event_type,
            resource_id=event.resource_id,
            document=event.document,
        )
        for event in delivery.events
    ]


def forward_body(event_document: str) -> bytes:
    """What the app is sent for one event: Xero's own shape, with that one event."""
    return b'{"events":[' + event_document.encode("utf-8") + b"]}"


def forward_signature(keys: Sequence[bytes], body: bytes, *, timestamp: float) -> str:
    """The ``X-Gateway-Signature`` of a forwarded body: ``t=<unix seconds>`` and one
    ``v1=<hex HMAC-SHA256 of "<t>." + body>`` per key, the current key first (after a rotation
    the app verifies with either key until the previous one leaves the config)."""
    if not keys:
        raise ValueError("a forward is signed with at least one key")
    t = int(timestamp)
    message = f"{t}.".encode("ascii") + body
    tags = (hmac.new(key, message, hashlib.sha256).hexdigest() for key in keys)
    return ",".join([f"t={t}", *(f"v1={tag}" for tag in tags)])


def forward_signature_valid(
    key: bytes, header: str | None, body: bytes, *, now: float, tolerance: float = FORWARD_TOLERANCE
) -> bool:
    """The app's side of :func:`forward_signature`: whether ``header`` holds a ``v1`` tag of
    ``body`` under ``key`` and a timestamp within ``tolerance`` seconds of ``now``."""
    if not header:
        return False
    t: int | None = None
    tags: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isdigit():
            t = int(value)
        elif name == "v1":
            tags.append(value)
    if t is None or abs(now - t) > tolerance:
        return False
    expected = hmac.new(key, f"{t}.".encode("ascii") + body, hashlib.sha256).hexdigest()
    matched = False
    for tag in tags:
        matched |= hmac.compare_digest(expected.encode(), tag.encode("utf-8", "replace"))
    return matched


@dataclass(frozen=True, kw_only=True)
class RetryRule:
    """When a forward that failed is tried again: ``base`` seconds doubled per attempt up to
    ``cap``, each wait jittered down to half; given up after ``max_attempts`` attempts or
    once the event is ``max_age`` seconds old (Xero itself retries for 24 hours)."""

    base: float = 5.0
    cap: float = 3600.0
    max_attempts: int = 25
    max_age: float = 24 * 3600.0

    def delay(self, attempts: int, jitter: float) -> float:
        """Seconds to wait after the ``attempts``-th failed attempt; ``jitter`` in [0, 1)
        picks where in [half, all] of the backoff the wait falls."""
        exponent = min(max(attempts - 1, 0), 62)
        backoff = min(self.cap, self.base * math.pow(2.0, exponent))
        return backoff * (0.5 + 0.5 * min(max(jitter, 0.0), 1.0))

    def gives_up(self, *, attempts: int, received_at: float, next_at: float) -> bool:
        """Whether an event tried ``attempts`` times is abandoned rather than tried at
        ``next_at``."""
        return attempts >= self.max_attempts or next_at - received_at > self.max_age
