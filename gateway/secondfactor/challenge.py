"""The challenge: a code from the authenticator app or sent to the primary phone, a code sent
to the backup phone or email, or a recovery code, judged once, with every attempt counted per
user across methods in the store (a restart does not reset the count)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from gateway.audit import MfaFailed, MfaLocked, MfaPassed, RecoveryCodeUsed
from gateway.clock import Clock
from gateway.mfa.attempts import after_success, attempt_key
from gateway.mfa.recovery import matching_digest
from gateway.mfa.totp import matched_step
from gateway.secondfactor.refusals import CodeRefused
from gateway.secondfactor.rules import Rules
from gateway.sending.service import CodeSender
from gateway.store import Store, ThrottleState
from gateway.store.factors import Factor, factor_aad
from gateway.store.records import User
from gateway.throttle import ThrottleRule, book_attempt, retry_after

log = logging.getLogger(__name__)

CHALLENGE_METHODS = ("totp", "sms", "backup", "recovery")
# The purpose of the code sent to a user's backup method at sign-in or for a step-up.
BACKUP_CHALLENGE_PURPOSE = "challenge-backup"
# The purpose of the code sent to a user's primary phone at sign-in or for a step-up.
SMS_CHALLENGE_PURPOSE = "challenge-sms"


class Sealing(Protocol):
    """Seals and opens secrets kept in the store (AES-GCM, bound to associated data)."""

    def seal(self, plaintext: bytes, aad: bytes) -> bytes: ...

    def open(self, blob: bytes, aad: bytes) -> bytes: ...


@dataclass(frozen=True, kw_only=True)
class Passed:
    """A challenge passed: how and when; ``recovery_left`` after a recovery code was used."""

    method: str
    at: float
    recovery_left: int | None = None


class _Booking:
    """One attempt's check-and-count, run by the store inside its write transaction."""

    def __init__(self, rule: ThrottleRule, now: float) -> None:
        self.rule, self.now, self.allowed = rule, now, False
        self.state: ThrottleState | None = None

    def __call__(self, state: ThrottleState | None) -> ThrottleState | None:
        new, self.allowed = book_attempt(state, self.rule, self.now)
        self.state = new
        return new


class Attempts:
    """The per-user count of second-factor attempts, over the store's throttle table."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    async def locked_for(self, user_id: str) -> float:
        return retry_after(await self._store.throttle.get(attempt_key(user_id)), self._clock())

    async def book(self, user: User, rule: ThrottleRule, *, method: str, stage: str) -> None:
        """Count an attempt as failed before it is judged; CodeRefused when the user is locked
        out. The attempt that reaches the limit is judged, and the lockout audited."""
        now = self._clock()
        booking = _Booking(rule, now)
        await self._store.throttle.update(attempt_key(user.id), booking)
        if not booking.allowed:
            await self.failed(user, method=method, reason="locked", stage=stage)
            raise CodeRefused("locked")
        state = booking.state
        if state is not None and state.locked_until > now:
            await self._store.audit.record(
                MfaLocked(
                    user_id=user.id,
                    org_id=user.org_id,
                    failures=state.failures,
                    until=state.locked_until,
                ),
                at=now,
                actor=user.id,
            )

    async def succeeded(self, user_id: str) -> None:
        await self._store.throttle.update(attempt_key(user_id), after_success)

    async def failed(self, user: User, *, method: str, reason: str, stage: str) -> None:
        log.info("second factor refused", extra={"reason": reason, "stage": stage})
        await self._store.audit.record(
            MfaFailed(
                user_id=user.id, org_id=user.org_id, method=method, reason=reason, stage=stage
            ),
            at=self._clock(),
            actor=user.id,
        )


class Challenges:
    """Judges a code typed at sign-in or for a step-up."""

    def __init__(
        self,
        store: Store,
        sealer: Sealing,
        recovery_keys: Sequence[bytes],
        clock: Clock,
        attempts: Attempts,
        sending: CodeSender,
    ) -> None:
        self._store = store
        self._sealer = sealer
        self._recovery_keys = tuple(recovery_keys)
        self._clock = clock
        self._attempts = attempts
        self._sending = sending

    async def backup_factor(self, user: User) -> tuple[Factor, str] | None:
        """The user's backup factor and its destination (E.164 or an email address)."""
        return await self._opened(user, role="backup", kinds=("sms", "email"))

    async def primary_phone(self, user: User) -> str | None:
        """The user's primary phone (E.164), if their primary method is a text message."""
        found = await self._opened(user, role="primary", kinds=("sms",))
        return None if found is None else found[1]

    async def _opened(
        self, user: User, *, role: str, kinds: tuple[str, ...]
    ) -> tuple[Factor, str] | None:
        for factor in await self._store.factors.factors(user.id):
            if factor.role == role and factor.kind in kinds:
                opened = self._sealer.open(factor.sealed, factor_aad(user.id, factor.id))
                return factor, opened.decode("utf-8")
        return None

    async def verify(
        self, user: User, *, method: str, code: str, rules: Rules, client_addr: str | None = None
    ) -> Passed:
        """Check ``code`` by ``method`` (``totp``, ``sms``, ``backup`` or ``recovery``) for
        ``user``; the
        Passed check (a backup's method is its kind, ``sms`` or ``email``),
        or CodeRefused (always with the same message) when it is wrong, reused, malformed, of
        a method the user lacks, or the user is locked out."""
        if method not in CHALLENGE_METHODS:
            raise CodeRefused("unknown-method")
        await self._attempts.book(user, rules.attempts, method=method, stage="challenge")
        now = self._clock()
        passed_method, left = method, None
        if method == "totp":
            reason = await self._totp(user, code, now)
        elif method == "sms":
            reason = await self._sms(user, code)
        elif method == "backup":
            reason, passed_method = await self._backup(user, code)
        else:
            reason, left = await self._recovery(user, code, now)
        if reason is not None:
            await self._attempts.failed(user, method=method, reason=reason, stage="challenge")
            raise CodeRefused(reason)
        await self._attempts.succeeded(user.id)
        if method == "recovery":
            await self._store.audit.record(
                RecoveryCodeUsed(user_id=user.id, org_id=user.org_id, remaining=left or 0),
                at=now,
                actor=user.id,
                client_addr=client_addr,
            )
        await self._store.audit.record(
            MfaPassed(user_id=user.id, org_id=user.org_id, method=passed_method),
            at=now,
            actor=user.id,
            client_addr=client_addr,
        )
        return Passed(method=passed_method, at=now, recovery_left=left)

    async def _backup(self, user: User, code: str) -> tuple[str | None, str]:
        """(None when accepted, else why not; the backup's kind)."""
        backup = await self.backup_factor(user)
        if backup is None:
            return "no-backup-factor", "backup"
        factor, destination = backup
        reason = await self._sent_code(user, BACKUP_CHALLENGE_PURPOSE, destination, code)
        return reason, factor.kind

    async def _sms(self, user: User, code: str) -> str | None:
        """None when the code sent to the primary phone is accepted, else why not."""
        phone = await self.primary_phone(user)
        if phone is None:
            return "no-sms-factor"
        return await self._sent_code(user, SMS_CHALLENGE_PURPOSE, phone, code)

    async def _sent_code(self, user: User, purpose: str, destination: str, code: str) -> str | None:
        """None when ``code`` is the one last sent for ``purpose`` to ``destination``."""
        check = await self._sending.check_code(user_id=user.id, purpose=purpose, typed=code)
        if check.verdict is None:
            return "no-code"
        if not check.accepted:
            return check.verdict.value
        # A code sent before the factor changed proves the old destination, not this one.
        return None if check.destination == destination else "other-destination"

    async def _totp(self, user: User, code: str, now: float) -> str | None:
        """None when accepted, else why not."""
        factors = [f for f in await self._store.factors.factors(user.id) if f.kind == "totp"]
        if not factors:
            return "no-totp-factor"
        for factor in factors:
            secret = self._sealer.open(factor.sealed, factor_aad(user.id, factor.id)).decode()
            step = matched_step(secret, code, now=now)
            if step is None:
                continue
            # The conditional UPDATE refuses a step at or before the last accepted one,
            # including one accepted an instant ago by a racing submission.
            return None if await self._store.factors.accept_step(factor.id, step) else "replayed"
        return "wrong-code"

    async def _recovery(self, user: User, code: str, now: float) -> tuple[str | None, int]:
        unused = await self._store.factors.unused_recovery_digests(user.id)
        digest = matching_digest(
            keys=self._recovery_keys, user_id=user.id, typed=code, unused=unused
        )
        if digest is None:
            return "wrong-recovery-code", len(unused)
        if not await self._store.factors.spend_recovery(user.id, digest, now):
            return "replayed", len(unused)
        return None, len(unused) - 1
