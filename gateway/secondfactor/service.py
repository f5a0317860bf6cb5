"""One object the pages and the JSON API share: enrolment, a phone as the primary method,
backup methods, the challenge, remembered devices, resets, a user's own changes."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.clock import Clock
from gateway.crypto.derivation import derive_key
from gateway.secondfactor.backup import Backups, BackupSent
from gateway.secondfactor.challenge import Attempts, Challenges, Sealing
from gateway.secondfactor.changes import Changes
from gateway.secondfactor.devices import RememberedDevices
from gateway.secondfactor.enrolment import Enrolments
from gateway.secondfactor.resets import Resets
from gateway.secondfactor.rules import Rules
from gateway.secondfactor.sms import TextMessages
from gateway.sending.service import CodeSender
from gateway.store import Store
from gateway.store.records import User

# The name an authenticator app shows beside the account, unless [security] totp_issuer says.
ISSUER = "Xero Gateway"


def recovery_keys(secret_key: str, previous_secret_keys: Sequence[str] = ()) -> tuple[bytes, ...]:
    """The keys recovery codes are hashed under, one per configured secret, current first."""
    secrets = dict.fromkeys((secret_key, *previous_secret_keys))
    return tuple(derive_key(secret, "recovery-codes").material for secret in secrets)


class SecondFactors:
    """``recovery_keys``: the keys recovery codes are hashed under, the current one first (a
    code hashed under a key being rotated out still works)."""

    def __init__(
        self,
        store: Store,
        *,
        sealer: Sealing,
        recovery_keys: Sequence[bytes],
        clock: Clock,
        sending: CodeSender,
        issuer: str = ISSUER,
    ) -> None:
        if not recovery_keys:
            raise ValueError("at least one recovery-code key is needed")
        self.attempts = Attempts(store, clock)
        self.enrolments = Enrolments(store, sealer, recovery_keys[0], clock, issuer, self.attempts)
        self.challenges = Challenges(store, sealer, recovery_keys, clock, self.attempts, sending)
        self.devices = RememberedDevices(store)
        self.backups = Backups(store, sealer, clock, self.attempts, sending, self.challenges)
        self.text_messages = TextMessages(
            store, sealer, clock, self.attempts, sending, self.challenges, self.enrolments
        )
        self.resets = Resets(store, clock, sending.email)
        self.changes = Changes(
            store,
            sealer,
            recovery_keys[0],
            clock,
            self.attempts,
            sending,
            self.challenges,
            self.enrolments,
            self.text_messages,
            self.backups,
        )

    async def send_challenge(
        self, user: User, rules: Rules, *, method: str, again: bool, client_addr: str | None
    ) -> BackupSent:
        """Send a sign-in code by ``method``: ``sms`` texts it to the user's phone (a code sent
        before that can still be used is not sent anew unless ``again``), else it goes to the
        backup phone or email. SmsRefused or BackupRefused when it cannot be sent."""
        if method == "sms":
            return await self.text_messages.send_challenge(
                user, rules, again=again, client_addr=client_addr
            )
        return await self.backups.send_challenge(user, rules, client_addr=client_addr)

    def primary_choices(self, rules: Rules) -> tuple[str, ...]:
        """The primary methods a user can set up here: those the policy accepts, text messages
        only where this gateway can send them (the set-up page offers these)."""
        totp = "totp" in rules.primary_methods
        sms = self.text_messages.offered(rules)
        return tuple(method for method, can in (("totp", totp), ("sms", sms)) if can)
