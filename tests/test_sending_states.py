"""Hypothesis stateful test of one user's codes through the service, on a real SQLite file:
codes expire at exactly their lifetime, a new code retires the step's old one, a code works
once and only for its own step."""

from __future__ import annotations

import asyncio
import re
import shutil
import tempfile
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule

from gateway.clock import ManualClock
from gateway.crypto.keys import Keys
from gateway.delivery.outbox import OutboxSender
from gateway.mfa.codes import CodeVerdict
from gateway.mfa.send_limits import SendRule
from gateway.sending.drivers import Drivers
from gateway.sending.service import Channel, CodeRequest, CodeSender, SendLimits
from gateway.store import Store
from tests.conftest import SECRET, START

T = TypeVar("T")
LIFETIME = 600.0
PURPOSES = ("challenge", "enrol-backup")
ROOMY = SendRule(max_sends=10_000, window=60.0)


class Codes(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.folder = Path(tempfile.mkdtemp())
        self.clock = ManualClock(START)
        self.outbox = OutboxSender()
        # What the model expects: per step, the live code, when it expires, whether used.
        self.live: dict[str, tuple[str, float, bool]] = {}
        self.retired: dict[str, list[str]] = {p: [] for p in PURPOSES}

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    @initialize()
    def open(self) -> None:
        self.store = self.run(Store.open(self.folder / "gw.sqlite3"))
        org = self.run(self.store.organisations.add(name="Harbour", now=START))
        user = self.run(
            self.store.users.add(
                org_id=org.id, email="a@h.example", display_name="A", role="member",
                password_hash="x", now=START,
            )
        )  # fmt: skip
        self.user = user.id
        self.sending = CodeSender(
            store=self.store,
            clock=self.clock,
            code_key=b"s" * 32,
            sealer=Keys.derive(SECRET).at_rest,
            drivers=Drivers(sms=self.outbox, email=self.outbox, outbox=self.outbox),
            limits=SendLimits(per_user=ROOMY, per_destination=ROOMY, sms_global=ROOMY),
        )

    def teardown(self) -> None:
        if hasattr(self, "sending"):
            self.run(self.sending.close())
            self.run(self.store.close())
        self.loop.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    @rule(purpose=st.sampled_from(PURPOSES), channel=st.sampled_from(Channel))
    def send(self, purpose: str, channel: Channel) -> None:
        to = "+61412345678" if channel is Channel.SMS else "a@h.example"
        request = CodeRequest(
            user_id=self.user, org_id=None, purpose=purpose, channel=channel,
            destination=to, lifetime=LIFETIME,
        )  # fmt: skip
        assert self.run(self.sending.send_code(request)).sent
        match = re.search(r"\b(\d{6})\b", self.outbox.messages[0].body)
        assert match is not None
        if purpose in self.live:
            self.retired[purpose].append(self.live[purpose][0])
        self.live[purpose] = (match[1], self.clock() + LIFETIME, False)

    @rule(seconds=st.sampled_from([1.0, 299.0, 599.0, 600.0, 601.0]))
    def wait(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule(purpose=st.sampled_from(PURPOSES), other_step=st.booleans())
    def type_the_live_code(self, purpose: str, other_step: bool) -> None:
        if purpose not in self.live:
            return
        code, expires_at, used = self.live[purpose]
        asked = PURPOSES[1 - PURPOSES.index(purpose)] if other_step else purpose
        check = self.run(self.sending.check_code(user_id=self.user, purpose=asked, typed=code))
        if other_step:
            other = self.live.get(asked)
            if other is None:
                assert check.verdict is None
            elif self.clock() >= other[1]:
                assert check.verdict is CodeVerdict.EXPIRED
            elif other[2]:
                assert check.verdict is CodeVerdict.USED
            elif other[0] != code:  # six digits may coincide; then it is that step's code
                assert check.verdict is CodeVerdict.WRONG
            return
        if self.clock() >= expires_at:
            assert check.verdict is CodeVerdict.EXPIRED
        elif used:
            assert check.verdict is CodeVerdict.USED
        else:
            assert check.verdict is CodeVerdict.CONSUMED
            self.live[purpose] = (code, expires_at, True)

    @rule(purpose=st.sampled_from(PURPOSES))
    def type_a_retired_code(self, purpose: str) -> None:
        live = self.live.get(purpose)
        old = [c for c in self.retired[purpose] if live is None or c != live[0]]
        if not old or live is None:
            return
        check = self.run(self.sending.check_code(user_id=self.user, purpose=purpose, typed=old[-1]))
        assert check.verdict is not CodeVerdict.CONSUMED


TestCodes = Codes.TestCase
TestCodes.settings = settings(max_examples=25, stateful_step_count=15, deadline=None)
