"""The second-factor service on a real SQLite file with a clock that moves only when told:
enrolment steps that expire and restart, codes that are used once, races with one winner, a
lockout that survives a restart, and remembered devices bound to their user."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pyotp
import pytest

from gateway.clock import ManualClock
from gateway.config import build_config
from gateway.crypto.keys import Keys
from gateway.delivery.outbox import OutboxSender
from gateway.mfa.attempts import attempt_rule
from gateway.secondfactor.refusals import (
    AlreadyEnrolled,
    CodeRefused,
    StepExpired,
    StepMissing,
)
from gateway.secondfactor.rules import Rules, duration_text
from gateway.secondfactor.service import SecondFactors, recovery_keys
from gateway.sending.drivers import Drivers
from gateway.sending.service import CodeSender, SendLimits
from gateway.store import Store
from gateway.store.records import AuditEntry, User

T0 = 1_798_000_020.0  # the start of a 30-second step
SECRET = "k" * 40
RULES = Rules(
    step_lifetime=600.0,
    remember_device=23 * 3600.0,
    attempts=attempt_rule(max_failed=3, lockout=900.0),
    primary_methods=frozenset({"totp", "sms"}),
    backup_methods=frozenset({"sms", "email"}),
)


def _sending(
    store: Store, clock: ManualClock, secret: str = SECRET, *, drivers: Drivers | None = None
) -> CodeSender:
    """Codes sent through the outbox (which keeps them), limited as a default config limits."""
    outbox = OutboxSender()
    config = build_config({"upstream": {"url": "http://127.0.0.1:9"}}, env={}, serving=False)
    return CodeSender(
        store=store,
        clock=clock,
        code_key=b"c" * 32,
        sealer=Keys.derive(secret).at_rest,
        drivers=drivers or Drivers(sms=outbox, email=outbox, outbox=outbox),
        limits=SendLimits.for_config(config),
    )


def _service(
    store: Store, clock: ManualClock, secret: str = SECRET, *, sending: CodeSender | None = None
) -> SecondFactors:
    return SecondFactors(
        store,
        sealer=Keys.derive(secret).at_rest,
        recovery_keys=recovery_keys(secret),
        clock=clock,
        sending=sending or _sending(store, clock, secret),
    )


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "gateway.sqlite3"


async def _users(store: Store) -> tuple[User, User]:
    org = await store.organisations.add(name="Harbour", now=T0)
    made = []
    for email in ("max@harbour.example", "ava@harbour.example"):
        made.append(
            await store.users.add(
                org_id=org.id,
                email=email,
                display_name=email,
                role="member",
                password_hash="x",
                now=T0,
            )
        )
    return made[0], made[1]


def _key(setup_key: str) -> pyotp.TOTP:
    return pyotp.TOTP(setup_key.replace(" ", ""))


async def _enrolled(
    service: SecondFactors, user: User, clock: ManualClock
) -> tuple[pyotp.TOTP, tuple[str, ...]]:
    setup = await service.enrolments.start_totp(user, RULES)
    totp = _key(setup.key)
    await service.enrolments.confirm_totp(user, totp.at(clock()), RULES)
    codes = await service.enrolments.finish(user, RULES, AuditEntry(actor=user.id))
    return totp, codes


async def _kinds(store: Store) -> list[str]:
    return [event.kind for event in await store.audit.list()]


async def test_enrolment_confirms_the_app_then_saves_it_with_ten_codes(
    store: Store, clock: ManualClock
) -> None:
    service = _service(store, clock)
    user, _ = await _users(store)
    setup = await service.enrolments.start_totp(user, RULES)
    assert setup.uri.startswith("otpauth://totp/")
    assert f"secret={setup.key.replace(' ', '')}" in setup.uri
    assert all(len(group) == 4 for group in setup.key.split(" "))
    assert setup.qr_svg.startswith("<svg")
    assert setup.expires_at == T0 + 600
    # The page shown again is the same step, with the same key.
    assert (await service.enrolments.totp_setup(user, RULES)).key == setup.key
    totp = _key(setup.key)
    with pytest.raises(CodeRefused):
        await service.enrolments.confirm_totp(user, "000000", RULES)
    assert not (await service.enrolments.enrolment(user.id)).enrolled
    await service.enrolments.confirm_totp(user, totp.at(clock()), RULES)
    assert not (await service.enrolments.enrolment(user.id)).enrolled  # not until finished
    codes = await service.enrolments.finish(user, RULES, AuditEntry(actor=user.id))
    assert len(set(codes)) == 10
    enrolment = await service.enrolments.enrolment(user.id)
    assert enrolment.enrolled
    assert enrolment.methods == frozenset({"totp"})
    assert not enrolment.has_backup
    assert "mfa.enrolled" in await _kinds(store)
    # The secret is sealed: it is nowhere in the database in the clear.
    rows = await store.db.fetch_all("SELECT secret FROM mfa_factors")
    assert setup.key.replace(" ", "") not in str(rows)
    with pytest.raises(AlreadyEnrolled):
        await service.enrolments.start_totp(user, RULES)


async def test_a_step_left_too_long_starts_over_and_says_why(
    store: Store, clock: ManualClock
) -> None:
    service = _service(store, clock)
    user, _ = await _users(store)
    first = await service.enrolments.start_totp(user, RULES)
    clock.advance(600)
    with pytest.raises(StepExpired) as expired:
        await service.enrolments.confirm_totp(user, _key(first.key).at(clock()), RULES)
    assert "10 minutes" in expired.value.message
    again = await service.enrolments.totp_setup(user, RULES)
    assert again.key != first.key
    assert again.notice is not None
    assert "started over" in again.notice
    assert again.expires_at == clock() + 600
    # A code of the old key does not confirm the new step.
    with pytest.raises(CodeRefused):
        await service.enrolments.confirm_totp(user, _key(first.key).at(clock()), RULES)
    await service.enrolments.confirm_totp(user, _key(again.key).at(clock()), RULES)
    clock.advance(600)
    with pytest.raises(StepExpired):
        await service.enrolments.finish(user, RULES, AuditEntry(actor=user.id))
    assert not (await service.enrolments.enrolment(user.id)).enrolled


async def test_steps_cannot_be_skipped(store: Store, clock: ManualClock) -> None:
    service = _service(store, clock)
    user, _ = await _users(store)
    with pytest.raises(StepMissing):
        await service.enrolments.totp_setup(user, RULES)
    with pytest.raises(StepMissing):
        await service.enrolments.confirm_totp(user, "123456", RULES)
    with pytest.raises(StepMissing):
        await service.enrolments.finish(user, RULES, AuditEntry(actor=user.id))
    await service.enrolments.start_totp(user, RULES)
    with pytest.raises(StepMissing):  # not confirmed yet
        await service.enrolments.finish(user, RULES, AuditEntry(actor=user.id))
    assert not (await service.enrolments.enrolment(user.id)).enrolled
    assert await store.factors.unused_recovery_digests(user.id) == []


async def test_a_totp_code_is_accepted_once_within_one_step_of_drift(
    store: Store, clock: ManualClock
) -> None:
    service = _service(store, clock)
    user, _ = await _users(store)
    totp, _ = await _enrolled(service, user, clock)
    verify = service.challenges.verify
    # The code that confirmed the app cannot sign in.
    with pytest.raises(CodeRefused):
        await verify(user, method="totp", code=totp.at(clock()), rules=RULES)
    clock.advance(30)
    passed = await verify(user, method="totp", code=totp.at(clock()), rules=RULES)
    assert (passed.method, passed.at) == ("totp", clock())
    with pytest.raises(CodeRefused) as replayed:
        await verify(user, method="totp", code=totp.at(clock()), rules=RULES)
    assert replayed.value.reason == "replayed"
    # One step ahead (a phone's clock running fast) is accepted; two are not.
    assert await verify(user, method="totp", code=totp.at(clock() + 30), rules=RULES)
    with pytest.raises(CodeRefused):
        await verify(user, method="totp", code=totp.at(clock() + 90), rules=RULES)
    kinds = await _kinds(store)
    assert kinds.count("mfa.passed") == 2
    assert kinds.count("mfa.failed") == 3


async def test_two_racing_submissions_of_one_code_exactly_one_wins(
    path: Path, clock: ManualClock
) -> None:
    async with await Store.open(path) as first, await Store.open(path) as second:
        one, other = _service(first, clock), _service(second, clock)
        user, _ = await _users(first)
        totp, _ = await _enrolled(one, user, clock)
        for _ in range(5):
            clock.advance(30)
            code = totp.at(clock())
            results = await asyncio.gather(
                one.challenges.verify(user, method="totp", code=code, rules=RULES),
                other.challenges.verify(user, method="totp", code=code, rules=RULES),
                return_exceptions=True,
            )
            assert sorted(type(r).__name__ for r in results) == ["CodeRefused", "Passed"]


async def test_a_recovery_code_works_once_in_any_spelling(store: Store, clock: ManualClock) -> None:
    service = _service(store, clock)
    user, other = await _users(store)
    _, codes = await _enrolled(service, user, clock)
    passed = await service.challenges.verify(
        user, method="recovery", code=f"  {codes[0].upper()} ", rules=RULES
    )
    assert (passed.method, passed.recovery_left) == ("recovery", 9)
    with pytest.raises(CodeRefused):
        await service.challenges.verify(user, method="recovery", code=codes[0], rules=RULES)
    # Another user's code is no code at all for this one.
    await _enrolled(service, other, clock)
    with pytest.raises(CodeRefused):
        await service.challenges.verify(other, method="recovery", code=codes[1], rules=RULES)
    assert (await _kinds(store)).count("mfa.recovery_code_used") == 1
    # A code made before the secret key was rotated still works after.
    rotated = SecondFactors(
        store,
        sealer=Keys.derive("n" * 40, [SECRET]).at_rest,
        recovery_keys=recovery_keys("n" * 40, [SECRET]),
        clock=clock,
        sending=_sending(store, clock),
    )
    assert await rotated.challenges.verify(user, method="recovery", code=codes[1], rules=RULES)


async def test_failures_lock_the_second_factor_across_a_restart(
    path: Path, clock: ManualClock
) -> None:
    async with await Store.open(path) as store:
        service = _service(store, clock)
        user, _ = await _users(store)
        totp, codes = await _enrolled(service, user, clock)
        for wrong in ("000000", "zzzzz-zzzzz"):
            with pytest.raises(CodeRefused):
                await service.challenges.verify(user, method="totp", code=wrong, rules=RULES)
        with pytest.raises(CodeRefused):  # counted across methods: the third locks
            await service.challenges.verify(user, method="recovery", code="bad", rules=RULES)
        assert "mfa.locked" in await _kinds(store)
    async with await Store.open(path) as store:  # a restart
        service = _service(store, clock)
        clock.advance(30)
        with pytest.raises(CodeRefused) as locked:
            await service.challenges.verify(user, method="totp", code=totp.at(clock()), rules=RULES)
        assert locked.value.reason == "locked"
        with pytest.raises(CodeRefused):
            await service.challenges.verify(user, method="recovery", code=codes[0], rules=RULES)
        assert await service.attempts.locked_for(user.id) == pytest.approx(870)
        clock.advance(870)
        assert await service.challenges.verify(
            user, method="totp", code=totp.at(clock()), rules=RULES
        )
        # A success starts the count over.
        assert await store.throttle.get(f"mfa:user:{user.id}") is None


async def test_a_remembered_device_is_its_users_and_only_for_its_window(
    store: Store, clock: ManualClock
) -> None:
    service = _service(store, clock)
    user, other = await _users(store)
    devices = service.devices
    device = await devices.remember(user.id, now=clock(), window=3600, user_agent="Firefox")
    assert device.expires_at == clock() + 3600
    assert await devices.recognise(device.token, user.id, now=clock(), window=3600)
    assert not await devices.recognise(device.token, other.id, now=clock(), window=3600)
    assert not await devices.recognise("forged", user.id, now=clock(), window=3600)
    assert not await devices.recognise(None, user.id, now=clock(), window=3600)
    # A policy that shortens the window shortens devices remembered before it.
    assert not await devices.recognise(device.token, user.id, now=clock() + 1800, window=1800)
    assert not await devices.recognise(device.token, user.id, now=clock() + 3600, window=7200)
    [stored] = await store.db.fetch_all("SELECT token_hash, label FROM mfa_devices")
    assert stored["token_hash"] != device.token
    assert stored["label"] == "Firefox"


def test_windows_are_stated_in_words() -> None:
    assert duration_text(timedelta(hours=23).total_seconds()) == "23 hours"
    assert duration_text(30 * 86400) == "30 days"
    assert duration_text(3600) == "1 hour"
    assert duration_text(600) == "10 minutes"
    assert duration_text(90) == "2 minutes"


def test_rules_fall_back_when_no_policy_applies() -> None:
    fallback = Rules.of(None)
    assert fallback.primary_methods == frozenset({"totp"})
    assert fallback.remember_device <= 24 * 3600
