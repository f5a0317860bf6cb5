"""Enrolment and the challenge against a model, in random order with a moving clock
(Hypothesis): steps expire and restart, codes are used once, failures lock and unlock, and
nothing counts as enrolled before the last step."""

from __future__ import annotations

import asyncio
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
from gateway.secondfactor.refusals import (
    AlreadyEnrolled,
    CodeRefused,
    SecondFactorRefused,
    StepExpired,
    StepMissing,
)
from gateway.secondfactor.service import SecondFactors
from gateway.store import Store
from gateway.store.records import AuditEntry, User
from tests.test_secondfactor import RULES, T0, _service

T = TypeVar("T")
MAX_FAILED = RULES.attempts.max_failures
LOCKOUT = RULES.attempts.lockout
STEP_LIFETIME = RULES.step_lifetime


class EnrolmentAndChallenge(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.folder = Path(tempfile.mkdtemp())
        self.clock = ManualClock(T0)
        self.store = self.run(Store.open(self.folder / "gateway.sqlite3"))
        self.service: SecondFactors = _service(self.store, self.clock)
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
        # The model.
        self.pending_key: str | None = None
        self.pending_started = 0.0
        self.pending_step: int | None = None
        self.enrolled_key: str | None = None
        self.last_step: int | None = None
        self.unused: set[str] = set()
        self.used: set[str] = set()
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

    def _refused(
        self, coroutine: Coroutine[Any, Any, object], expected: type[SecondFactorRefused]
    ) -> None:
        with pytest.raises(SecondFactorRefused) as refused:
            self.run(coroutine)
        assert type(refused.value) is expected

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
