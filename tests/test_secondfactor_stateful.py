"""Enrolment and the challenge against a model, in random order with a moving clock
(Hypothesis): steps expire and restart, codes are used once, failures lock and unlock, and
nothing counts as enrolled before the last step."""

from __future__ import annotations

import asyncio
import re
import shutil
import tempfile
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pyotp
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from gateway.clock import ManualClock
from gateway.secondfactor.challenge import SMS_CHALLENGE_PURPOSE
from gateway.secondfactor.refusals import (
    AlreadyEnrolled,
    CodeRefused,
    SecondFactorRefused,
    SmsRefused,
    StepExpired,
    StepMissing,
)
from gateway.secondfactor.service import SecondFactors
from gateway.secondfactor.sms import ENROL_SMS_PURPOSE
from gateway.store import Store
from gateway.store.records import AuditEntry, User
from tests.test_secondfactor import RULES, T0, _sending, _service

T = TypeVar("T")
MAX_FAILED = RULES.attempts.max_failures
LOCKOUT = RULES.attempts.lockout
STEP_LIFETIME = RULES.step_lifetime


class _Machine(RuleBasedStateMachine):
    """What both machines share: a real store on a file, a moving clock, a member, and the
    model of the per-user attempt count."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.folder = Path(tempfile.mkdtemp())
        self.clock = ManualClock(T0)
        self.store = self.run(Store.open(self.folder / "gateway.sqlite3"))
        self.sending = _sending(self.store, self.clock)
        self.service: SecondFactors = _service(self.store, self.clock, sending=self.sending)
        org = self.run(self.store.organisations.add(name="Harbour", now=T0))
        self.user: User = self.run(
            self.store.users.add(
                org_id=org.id,
                email="max@harbour.example",
                display_name="Max",
                role="member",
                password_hash="x",
                now=T0,
            )
        )
        self.failures = 0
        self.locked_until = 0.0

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coroutine)

    def teardown(self) -> None:
        self.run(self.store.close())
        self.loop.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    # The model of the attempt count (gateway.mfa.attempts).

    def _book(self) -> bool:
        now = self.clock()
        if self.locked_until > now:
            return False
        if self.locked_until and self.locked_until <= now:
            self.failures = 1
        else:
            self.failures += 1
        self.locked_until = now + LOCKOUT if self.failures >= MAX_FAILED else 0.0
        return True

    def _succeeded(self) -> None:
        self.failures, self.locked_until = 0, 0.0

    def _refused(
        self, coroutine: Coroutine[Any, Any, object], expected: type[SecondFactorRefused]
    ) -> None:
        with pytest.raises(SecondFactorRefused) as refused:
            self.run(coroutine)
        assert type(refused.value) is expected


class EnrolmentAndChallenge(_Machine):
    def __init__(self) -> None:
        super().__init__()
        # The model.
        self.pending_key: str | None = None
        self.pending_started = 0.0
        self.pending_step: int | None = None
        self.enrolled_key: str | None = None
        self.last_step: int | None = None
        self.unused: set[str] = set()
        self.used: set[str] = set()

    def _expired(self) -> bool:
        return self.clock() >= self.pending_started + STEP_LIFETIME

    def _now_step(self) -> int:
        return int(self.clock() // 30)

    # Rules

    @rule(seconds=st.sampled_from([1, 15, 30, 61, 300, 599, 601, 900]))
    def time_passes(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @rule()
    def start(self) -> None:
        if self.enrolled_key is not None:
            self._refused(self.service.enrolments.start_totp(self.user, RULES), AlreadyEnrolled)
            return
        setup = self.run(self.service.enrolments.start_totp(self.user, RULES))
        self.pending_key = setup.key.replace(" ", "")
        self.pending_started, self.pending_step = self.clock(), None

    @rule()
    def view_setup(self) -> None:
        setup_of = self.service.enrolments.totp_setup(self.user, RULES)
        if self.enrolled_key is not None:
            self._refused(setup_of, AlreadyEnrolled)
        elif self.pending_key is None:
            self._refused(setup_of, StepMissing)
        else:
            setup = self.run(setup_of)
            if self._expired():  # starts over, with a new key
                assert setup.notice is not None
                self.pending_key = setup.key.replace(" ", "")
                self.pending_started, self.pending_step = self.clock(), None
            assert setup.key.replace(" ", "") == self.pending_key

    @rule(right=st.booleans())
    def confirm(self, right: bool) -> None:
        key = self.pending_key or "A" * 32
        code = pyotp.TOTP(key).at(self.clock()) if right else "000000"
        confirming = self.service.enrolments.confirm_totp(self.user, code, RULES)
        if self.enrolled_key is not None:
            self._refused(confirming, AlreadyEnrolled)
        elif self.pending_key is None:
            self._refused(confirming, StepMissing)
        elif self._expired():
            self._refused(confirming, StepExpired)
        elif self.pending_step is not None:
            self.run(confirming)  # already confirmed: nothing to do
        elif not self._book() or not right:
            self._refused(confirming, CodeRefused)
        else:
            self.run(confirming)
            self._succeeded()
            self.pending_step = self._now_step()

    @rule()
    def finish(self) -> None:
        finishing = self.service.enrolments.finish(self.user, RULES, AuditEntry(actor="t"))
        if self.enrolled_key is not None:
            self._refused(finishing, AlreadyEnrolled)
        elif self.pending_key is None or (self.pending_step is None and not self._expired()):
            self._refused(finishing, StepMissing)
        elif self._expired():
            self._refused(finishing, StepExpired)
        else:
            codes = self.run(finishing)
            self.enrolled_key, self.last_step = self.pending_key, self.pending_step
            self.pending_key = None
            self.unused, self.used = set(codes), set()

    @rule()
    def enrol_in_one_go(self) -> None:
        """The usual path, so that most runs spend their steps enrolled."""
        self.start()
        self.confirm(right=True)
        self.finish()

    @rule(offset=st.sampled_from([-2, -1, 0, 0, 1, 2]))
    def totp(self, offset: int) -> None:
        key = self.enrolled_key or "B" * 32
        code = pyotp.TOTP(key).at(self.clock() + 30 * offset)
        verifying = self.service.challenges.verify(self.user, method="totp", code=code, rules=RULES)
        if not self._book():
            self._refused(verifying, CodeRefused)
            return
        step = self._now_step() + offset
        fresh = self.last_step is None or step > self.last_step
        if self.enrolled_key is not None and abs(offset) <= 1 and fresh:
            assert self.run(verifying).method == "totp"
            self.last_step = step
            self._succeeded()
        else:
            self._refused(verifying, CodeRefused)

    @rule(which=st.sampled_from(["unused", "used", "garbage"]))
    def recovery(self, which: str) -> None:
        pool = {"unused": self.unused, "used": self.used}.get(which, set())
        code = sorted(pool)[0] if pool else "zzzzz-zzzzz"
        verifying = self.service.challenges.verify(
            self.user, method="recovery", code=code, rules=RULES
        )
        if not self._book():
            self._refused(verifying, CodeRefused)
        elif code in self.unused:
            assert self.run(verifying).recovery_left == len(self.unused) - 1
            self.unused.discard(code)
            self.used.add(code)
            self._succeeded()
        else:
            self._refused(verifying, CodeRefused)

    @invariant()
    def enrolled_only_after_the_last_step(self) -> None:
        enrolment = self.run(self.service.enrolments.enrolment(self.user.id))
        assert enrolment.enrolled == (self.enrolled_key is not None)

    @invariant()
    def the_lock_is_as_modelled(self) -> None:
        locked = self.run(self.service.attempts.locked_for(self.user.id))
        assert locked == max(0.0, self.locked_until - self.clock())


EnrolmentAndChallenge.TestCase.settings = settings(
    max_examples=25,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestEnrolmentAndChallenge = EnrolmentAndChallenge.TestCase


PHONE = "+61412345678"


class PhoneEnrolmentAndChallenge(_Machine):
    """A phone as the primary method against a model: the step runs out and restarts, the
    code sent to the phone proves it once and only in time, finishing needs the proof, and
    the sign-in code texted when the challenge opens is sent once per lifetime unless asked."""

    def __init__(self) -> None:
        super().__init__()
        assert self.sending.outbox is not None
        self.outbox = self.sending.outbox
        # The model: the step under way, the codes last sent for each purpose.
        self.started: float | None = None
        self.proved = False
        self.enrolled = False
        self.codes: dict[str, tuple[str, float, bool]] = {}  # purpose: (code, sent at, used)
        self.sends: list[float] = []

    def _expired(self) -> bool:
        return self.started is not None and self.clock() >= self.started + STEP_LIFETIME

    def _live(self, purpose: str) -> bool:
        if purpose not in self.codes:
            return False
        _, sent_at, used = self.codes[purpose]
        return not used and self.clock() < sent_at + RULES.code_lifetime

    def _sent(self, purpose: str, outcome: Coroutine[Any, Any, object]) -> None:
        """A send: a new code for ``purpose``, or a limit refused it (nothing changes)."""
        limited: SmsRefused | None = None
        try:
            self.run(outcome)
        except SmsRefused as refused:
            limited = refused
        if limited is not None:
            assert (limited.reason, limited.retry_after > 0) == ("send-limited", True)
            return
        match = re.search(r"\b(\d{6})\b", self.outbox.messages[0].body)
        assert match
        self.codes[purpose] = (match.group(1), self.clock(), False)
        self.sends.append(self.clock())

    @rule(seconds=st.sampled_from([1, 30, 61, 300, 599, 601, 900]))
    def time_passes(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @rule()
    def start(self) -> None:
        starting = self.service.text_messages.start(self.user, RULES)
        if self.enrolled:
            self._refused(starting, AlreadyEnrolled)
            return
        self.run(starting)
        self.started, self.proved = self.clock(), False

    def _step_refusal(self) -> type[SecondFactorRefused] | None:
        if self.enrolled:
            return AlreadyEnrolled
        if self.started is None:
            return StepMissing
        if self._expired():
            return StepExpired
        return None

    @rule()
    def send(self) -> None:
        sending = self.service.text_messages.send(self.user, RULES, "0412 345 678")
        refusal = self._step_refusal() or (StepMissing if self.proved else None)
        if refusal is not None:
            self._refused(sending, refusal)
        else:
            self._sent(ENROL_SMS_PURPOSE, sending)

    @rule(right=st.booleans())
    def confirm(self, right: bool) -> None:
        code = self.codes.get(ENROL_SMS_PURPOSE, ("000000", 0.0, False))[0]
        typed = code if right else ("000000" if code != "000000" else "111111")
        confirming = self.service.text_messages.confirm(self.user, RULES, typed)
        refusal = self._step_refusal()
        if refusal is not None:
            self._refused(confirming, refusal)
        elif self.proved:
            assert self.run(confirming) == "+61 ••• ••• 678"
        elif not self._book():
            self._refused(confirming, CodeRefused)
        elif right and self._live(ENROL_SMS_PURPOSE):
            self.run(confirming)
            self.codes[ENROL_SMS_PURPOSE] = (code, self.codes[ENROL_SMS_PURPOSE][1], True)
            self.proved = True
            self._succeeded()
        else:
            self._refused(confirming, SmsRefused)

    @rule()
    def finish(self) -> None:
        finishing = self.service.enrolments.finish(self.user, RULES, AuditEntry(actor="t"))
        refusal = self._step_refusal() or (None if self.proved else StepMissing)
        if refusal is not None:
            self._refused(finishing, refusal)
        else:
            assert len(self.run(finishing)) == 10
            self.enrolled, self.started = True, None

    @rule()
    def enrol_in_one_go(self) -> None:
        """The usual path, so that most runs spend their steps enrolled."""
        self.start()
        self.send()
        self.confirm(right=True)
        self.finish()

    @rule(again=st.booleans())
    def challenge_opens(self, again: bool) -> None:
        texting = self.service.text_messages.send_challenge(self.user, RULES, again=again)
        if not self.enrolled:
            self._refused(texting, SmsRefused)
        elif not again and self._live(SMS_CHALLENGE_PURPOSE):
            sent = len(self.outbox.messages)
            self.run(texting)
            assert len(self.outbox.messages) == sent  # the code on its way still works
        else:
            self._sent(SMS_CHALLENGE_PURPOSE, texting)

    @rule(right=st.booleans())
    def sign_in_code(self, right: bool) -> None:
        code = self.codes.get(SMS_CHALLENGE_PURPOSE, ("000000", 0.0, False))[0]
        typed = code if right else ("000000" if code != "000000" else "111111")
        verifying = self.service.challenges.verify(self.user, method="sms", code=typed, rules=RULES)
        if not self._book():
            self._refused(verifying, CodeRefused)
        elif self.enrolled and right and self._live(SMS_CHALLENGE_PURPOSE):
            assert self.run(verifying).method == "sms"
            self.codes[SMS_CHALLENGE_PURPOSE] = (code, self.codes[SMS_CHALLENGE_PURPOSE][1], True)
            self._succeeded()
        else:
            self._refused(verifying, CodeRefused)

    @invariant()
    def enrolled_only_after_the_last_step(self) -> None:
        enrolment = self.run(self.service.enrolments.enrolment(self.user.id))
        assert enrolment.enrolled == self.enrolled
        assert enrolment.methods == (frozenset({"sms"}) if self.enrolled else frozenset())

    @invariant()
    def no_more_than_five_codes_in_any_quarter_hour(self) -> None:
        for at in self.sends:
            assert sum(at <= other < at + 900 for other in self.sends) <= 5

    @invariant()
    def the_lock_is_as_modelled(self) -> None:
        locked = self.run(self.service.attempts.locked_for(self.user.id))
        assert locked == max(0.0, self.locked_until - self.clock())


PhoneEnrolmentAndChallenge.TestCase.settings = EnrolmentAndChallenge.TestCase.settings
TestPhoneEnrolmentAndChallenge = PhoneEnrolmentAndChallenge.TestCase
