"""Sending a one-time code for a user's step, and checking what the user typed back.

``send_code`` books the send against its limits (per user, per destination, and for all SMS
at once), stores the new code as a keyed hash with its destination sealed, and hands the
message to the channel's sender in a task of its own: the request waits for that task, never
past the send timeout, and a request that goes away leaves the task to finish (and be
audited). A send that fails retires its code and hands its bookings back: it spends nothing.
Nothing here writes a code to the log; only the demo's outbox driver does.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
import re
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.audit import CodeSendFailed, CodeSendLimited, CodeSent
from gateway.clock import Clock
from gateway.config import Config
from gateway.crypto.derivation import derive_key
from gateway.crypto.keys import Keys
from gateway.delivery.outbox import OutboxSender
from gateway.delivery.sender import DEFAULT_TIMEOUT, DeliveryError, Message, Sender
from gateway.mfa.codes import CodeBinding, CodeVerdict, StoredCode, issue_code, judge_code
from gateway.mfa.destinations import masked_email, masked_phone
from gateway.mfa.digests import bound_digest
from gateway.mfa.send_limits import (
    SMS_GLOBAL_KEY,
    SendLimit,
    SendRule,
    book_send,
    destination_send_key,
    limited_message,
    refund_send,
    user_send_key,
    wait_before_send,
)
from gateway.sending.drivers import Drivers, open_drivers
from gateway.sending.tasks import TaskSet
from gateway.store import Store, ThrottleState
from gateway.store.codes import destination_aad, new_code_id
from gateway.store.sealed import Resealer

log = logging.getLogger(__name__)

_PURPOSE = re.compile(r"[a-z][a-z0-9-]{0,39}")

NOT_SENT = "We could not send the code just now. Try again in a moment."


class Channel(enum.Enum):
    SMS = "sms"
    EMAIL = "email"


class SendStatus(enum.Enum):
    SENT = "sent"
    LIMITED = "limited"  # a rate limit refused it; ``retry_after`` says for how long
    FAILED = "failed"  # the sender could not deliver it (or not in time); nothing spent
    UNAVAILABLE = "unavailable"  # that channel is not set up on this gateway


@dataclass(frozen=True, kw_only=True)
class CodeRequest:
    """A code to send: for ``user_id``'s step ``purpose`` (``enrol-sms``, ``challenge``…), to a
    normalised destination (E.164 for SMS, as ``normalise_email`` gives for email), valid for
    ``lifetime`` seconds (the policy's ``windows.code_lifetime``)."""

    user_id: str
    org_id: str | None
    purpose: str
    channel: Channel
    destination: str
    lifetime: float
    client_addr: str | None = None


@dataclass(frozen=True, kw_only=True)
class SendOutcome:
    """What to tell the user: ``message`` is written for them, whatever the status."""

    status: SendStatus
    message: str
    retry_after: float = 0.0
    expires_at: float | None = None

    @property
    def sent(self) -> bool:
        return self.status is SendStatus.SENT


@dataclass(frozen=True, kw_only=True)
class CodeCheck:
    """What a typed code was worth. ``verdict`` is None when no code was sent for the step
    (or it was purged): the step starts over. ``destination`` is where the code went, so a
    consumed code proves that number or address."""

    verdict: CodeVerdict | None
    channel: Channel | None = None
    destination: str | None = None

    @property
    def accepted(self) -> bool:
        return self.verdict is CodeVerdict.CONSUMED


@dataclass(frozen=True, kw_only=True)
class LiveCode:
    """A code sent for a step that can still be used: unused, and in time."""

    channel: Channel
    destination: str
    expires_at: float


@dataclass(frozen=True, kw_only=True)
class SendLimits:
    per_user: SendRule
    per_destination: SendRule
    sms_global: SendRule

    @classmethod
    def for_config(cls, config: Config) -> SendLimits:
        """Five codes per user in 15 minutes, five to one destination in an hour, and
        ``[sms] max_per_hour`` text messages in all."""
        return cls(
            per_user=SendRule(max_sends=5, window=15 * 60.0),
            per_destination=SendRule(max_sends=5, window=3600.0),
            sms_global=SendRule(max_sends=config.sms.max_per_hour, window=3600.0),
        )


def masked(channel: Channel, destination: str) -> str:
    """A destination as pages, logs and the audit trail show it."""
    return masked_phone(destination) if channel is Channel.SMS else masked_email(destination)


def _lifetime_words(seconds: float) -> str:
    minutes = max(1, math.ceil(seconds / 60))
    return "1 minute" if minutes == 1 else f"{minutes} minutes"


def sent_message(channel: Channel, destination: str, lifetime: float) -> str:
    """What the page says of a code on its way: where it went, and for how long it works."""
    return (
        f"We sent a code to {masked(channel, destination)}."
        f" It expires in {_lifetime_words(lifetime)}."
    )


def code_message(channel: Channel, destination: str, code: str, lifetime: float) -> Message:
    """The text that carries a code (the only place a code is written)."""
    expires = _lifetime_words(lifetime)
    if channel is Channel.SMS:
        body = f"{code} is your verification code. It expires in {expires}. Never share it."
        return Message(to=destination, subject="", body=body)
    body = (
        f"Your verification code is {code}\n\n"
        f"It expires in {expires}. Type it on the page that asked for it.\n"
        "If you did not ask for it, someone may know your password: change it, and never "
        "share this code.\n"
    )
    return Message(to=destination, subject="Your verification code", body=body)


class CodeSender:
    """Sends codes and checks them; one per gateway process (see ``Services.sending``)."""

    def __init__(
        self,
        *,
        store: Store,
        clock: Clock,
        code_key: bytes,
        sealer: Resealer,
        previous_code_keys: Sequence[bytes] = (),
        drivers: Drivers,
        limits: SendLimits,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self._store = store
        self._clock = clock
        self._key = code_key
        # Codes hashed under a previous secret's key still count (they live minutes).
        self._keys = (code_key, *previous_code_keys)
        self._sealer = sealer
        self._drivers = drivers
        self._senders: dict[Channel, Sender] = {}
        if drivers.sms is not None:
            self._senders[Channel.SMS] = drivers.sms
        if drivers.email is not None:
            self._senders[Channel.EMAIL] = drivers.email
        self._limits = limits
        self._timeout = timeout
        self._tasks = TaskSet()

    def available(self, channel: Channel) -> bool:
        """Whether codes can go out by ``channel`` on this gateway."""
        return channel in self._senders

    @property
    def email(self) -> Sender | None:
        """The email driver, for notices that carry no code; None when email is not set up."""
        return self._drivers.email

    @property
    def outbox(self) -> OutboxSender | None:
        """The demo's outbox, when a ``log`` driver is chosen."""
        return self._drivers.outbox

    @property
    def in_flight(self) -> int:
        """Sends still running (their request may have gone)."""
        return len(self._tasks)

    async def settle(self) -> None:
        """Wait for the sends still running (whose requests went away) to end."""
        await self._tasks.wait()

    async def close(self) -> None:
        """Cancel the sends still running and close the drivers; after this, no sends."""
        await self._tasks.cancel_all()
        await self._drivers.close()

    def _rules(self, request: CodeRequest) -> list[tuple[SendLimit, str, SendRule]]:
        tag = bound_digest(self._key, request.destination, "send-limit", request.channel.value)
        rules = [
            (SendLimit.USER, user_send_key(request.user_id), self._limits.per_user),
            (
                SendLimit.DESTINATION,
                destination_send_key(tag[:32]),
                self._limits.per_destination,
            ),
        ]
        if request.channel is Channel.SMS:
            rules.append((SendLimit.SMS_GLOBAL, SMS_GLOBAL_KEY, self._limits.sms_global))
        return rules

    async def _book(self, key: str, rule: SendRule, now: float) -> float:
        """Book one send under ``key``; 0 if booked, else the seconds to wait."""
        wait = 0.0

        def booked(state: ThrottleState | None) -> ThrottleState | None:
            nonlocal wait
            new, allowed = book_send(state, rule, now)
            wait = 0.0 if allowed else wait_before_send(state, rule, now)
            return new

        await self._store.throttle.update(key, booked)
        return wait

    async def _refund(self, keys: list[str]) -> None:
        for key in keys:
            await self._store.throttle.update(key, refund_send)

    async def send_code(self, request: CodeRequest) -> SendOutcome:
        """Send a fresh code for the request's step (the step's earlier code stops working)."""
        if _PURPOSE.fullmatch(request.purpose) is None:
            raise ValueError(
                f"a code's purpose is a short lower-case name, not {request.purpose!r}"
            )
        sender = self._senders.get(request.channel)
        if sender is None:
            what = "text message" if request.channel is Channel.SMS else "email"
            return SendOutcome(
                status=SendStatus.UNAVAILABLE,
                message=f"Codes cannot be sent by {what} here. Choose another method.",
            )
        if self._tasks.closed:
            return SendOutcome(status=SendStatus.FAILED, message=NOT_SENT)
        now = self._clock()
        to = masked(request.channel, request.destination)
        booked: list[str] = []
        for limit, key, rule in self._rules(request):
            wait = await self._book(key, rule, now)
            if wait > 0:
                await self._refund(booked)
                await self._audit(
                    CodeSendLimited(
                        user_id=request.user_id,
                        org_id=request.org_id,
                        purpose=request.purpose,
                        channel=request.channel.value,
                        to=to,
                        limit=limit.value,
                    ),
                    request,
                )
                return SendOutcome(
                    status=SendStatus.LIMITED,
                    message=limited_message(limit, wait),
                    retry_after=wait,
                )
            booked.append(key)
        try:
            code_id, message, expires_at = await self._issue(request, now)
        except BaseException:
            await self._refund(booked)
            raise
        task = self._tasks.spawn(self._deliver(sender, request, code_id, message, booked))
        try:
            # Shielded: a request that goes away leaves the send to finish and be audited.
            sent = await asyncio.shield(task)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if not task.cancelled() or (current is not None and current.cancelling()):
                raise
            sent = False  # the gateway is stopping: the send was cancelled, not the request
        if not sent:
            return SendOutcome(status=SendStatus.FAILED, message=NOT_SENT)
        return SendOutcome(
            status=SendStatus.SENT,
            message=sent_message(request.channel, request.destination, request.lifetime),
            expires_at=expires_at,
        )

    async def _issue(self, request: CodeRequest, now: float) -> tuple[str, Message, float]:
        binding = CodeBinding(
            user_id=request.user_id, purpose=request.purpose, destination=request.destination
        )
        issued = issue_code(key=self._key, binding=binding, now=now, lifetime=request.lifetime)
        code_id = new_code_id()
        sealed = self._sealer.seal(
            request.destination.encode("utf-8"), destination_aad(code_id, request.user_id)
        )
        await self._store.codes.issue(
            code_id=code_id,
            user_id=request.user_id,
            purpose=request.purpose,
            channel=request.channel.value,
            sealed_destination=sealed,
            digest=issued.digest,
            now=now,
            expires_at=issued.expires_at,
        )
        message = code_message(request.channel, request.destination, issued.code, request.lifetime)
        return code_id, message, issued.expires_at

    async def _deliver(
        self,
        sender: Sender,
        request: CodeRequest,
        code_id: str,
        message: Message,
        booked: list[str],
    ) -> bool:
        """Hand the message over within the timeout; on failure, spend nothing. Audited."""
        failure = await self._hand_over(sender, message, request.channel)
        to = masked(request.channel, request.destination)
        if failure is None:
            log.info("code sent", extra={"channel": request.channel.value, "to": to})
            sent = CodeSent(
                user_id=request.user_id,
                org_id=request.org_id,
                purpose=request.purpose,
                channel=request.channel.value,
                to=to,
            )
            await self._audit(sent, request)
            return True
        log.warning(
            "code not sent", extra={"channel": request.channel.value, "to": to, "why": failure}
        )
        await self._store.codes.retire(code_id)
        await self._refund(booked)
        failed = CodeSendFailed(
            user_id=request.user_id,
            org_id=request.org_id,
            purpose=request.purpose,
            channel=request.channel.value,
            to=to,
            reason=failure,
        )
        await self._audit(failed, request)
        return False

    async def _audit(
        self, event: CodeSent | CodeSendFailed | CodeSendLimited, request: CodeRequest
    ) -> None:
        await self._store.audit.record(
            event, at=self._clock(), actor=request.user_id, client_addr=request.client_addr
        )

    async def send_email(self, message: Message) -> str | None:
        """Send a message that is not a code (a link, a notice) by email within the timeout:
        nothing is stored or limited here. None once the mail server has taken it, else why
        not (for the log and the audit trail)."""
        sender = self._senders.get(Channel.EMAIL)
        if sender is None:
            return "Email is not set up on this gateway."
        return await self._hand_over(sender, message, Channel.EMAIL)

    async def _hand_over(self, sender: Sender, message: Message, channel: Channel) -> str | None:
        """Send within the timeout; None once sent, else why not."""
        try:
            async with asyncio.timeout(self._timeout):
                await sender.send(message)
        except DeliveryError as error:
            return str(error)
        except TimeoutError:
            return f"The send took longer than {self._timeout:g} seconds and was given up."
        except Exception as error:  # a sender's bug must not become the user's 500
            log.exception("the %s sender failed unexpectedly", channel.value)
            return f"The sender failed unexpectedly ({type(error).__name__})."
        return None

    def in_background(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` (which sends) after the request is answered: ``settle`` waits for it
        and ``close`` cancels it, as for every send. Once closed, ``work`` is dropped."""
        if self._tasks.closed:
            work.close()
            return
        self._tasks.spawn(work)

    async def live_code(self, *, user_id: str, purpose: str) -> LiveCode | None:
        """The code last sent for (user, purpose) if it is unused and in time: a page opened
        again need not send another."""
        record = await self._store.codes.current(user_id, purpose)
        if record is None or record.used_at is not None or record.expires_at <= self._clock():
            return None
        destination = self._sealer.open(
            record.sealed_destination, destination_aad(record.id, user_id)
        ).decode("utf-8")
        return LiveCode(
            channel=Channel(record.channel), destination=destination, expires_at=record.expires_at
        )

    async def check_code(self, *, user_id: str, purpose: str, typed: str) -> CodeCheck:
        """Judge ``typed`` against the code last sent for (user, purpose) and, if it is right,
        in time and unused, mark it used: of two racing checks of the right code, one wins
        and the other is told it was used. The caller counts the attempt (``mfa.attempts``)."""
        now = self._clock()
        record = await self._store.codes.current(user_id, purpose)
        if record is None:
            return CodeCheck(verdict=None)
        destination = self._sealer.open(
            record.sealed_destination, destination_aad(record.id, user_id)
        ).decode("utf-8")
        binding = CodeBinding(user_id=user_id, purpose=purpose, destination=destination)
        stored = StoredCode(
            digest=record.digest, expires_at=record.expires_at, used=record.used_at is not None
        )
        verdicts = [
            judge_code(key=key, binding=binding, stored=stored, typed=typed, now=now)
            for key in self._keys  # every key is tried, so the time says nothing of which
        ]
        verdict = next((v for v in verdicts if v is not CodeVerdict.WRONG), CodeVerdict.WRONG)
        if verdict is CodeVerdict.CONSUMED and not await self._store.codes.consume(
            record.id, now=now
        ):
            verdict = CodeVerdict.USED
        return CodeCheck(verdict=verdict, channel=Channel(record.channel), destination=destination)


CODE_KEY_PURPOSE = "one-time-codes"


def open_code_sender(
    config: Config, *, store: Store, clock: Clock, keys: Keys, timeout: float = DEFAULT_TIMEOUT
) -> CodeSender:
    """The code sender ``config`` asks for; codes are hashed under a key of their own derived
    from ``[security] secret_key``, destinations sealed with ``keys.at_rest``. The caller
    closes it (``close``), which also cancels the sends still running."""
    return CodeSender(
        store=store,
        clock=clock,
        code_key=derive_key(config.security.secret_key, CODE_KEY_PURPOSE).material,
        sealer=keys.at_rest,
        previous_code_keys=[
            derive_key(secret, CODE_KEY_PURPOSE).material
            for secret in config.security.previous_secret_keys
        ],
        drivers=open_drivers(config, timeout=timeout),
        limits=SendLimits.for_config(config),
        timeout=timeout,
    )
