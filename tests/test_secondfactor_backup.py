"""The backup step of an enrolment on a real SQLite file with a clock that moves only when told:
a phone or email proved by a code, required for some roles, saved only when the enrolment
finishes, with clear refusals for bad destinations, wrong, expired and reused codes, and sends
a limit refused or that failed (which spend nothing)."""

from __future__ import annotations

import dataclasses
import re

import pyotp
import pytest

from gateway.clock import ManualClock
from gateway.crypto.keys import Keys
from gateway.delivery.outbox import OutboxSender
from gateway.delivery.sender import DeliveryError, Message
from gateway.mfa.attempts import attempt_key
from gateway.secondfactor.backup import ProvedBackup
from gateway.secondfactor.refusals import (
    BackupRefused,
    BackupRequired,
    CodeRefused,
    StepExpired,
    StepMissing,
)
from gateway.secondfactor.service import SecondFactors
from gateway.sending.drivers import Drivers
from gateway.sending.service import CodeSender
from gateway.store import Store
from gateway.store.factors import factor_aad
from gateway.store.records import AuditEntry, User
from tests.test_secondfactor import RULES, SECRET, T0, _sending, _service

PRINCIPAL_RULES = dataclasses.replace(
    RULES, backup_required_for=frozenset({"principal"}), code_lifetime=300.0
)
BACKUP = "Ava.Backup@Harbour.Example"
SENT_CODE = re.compile(r"\b([0-9]{6,8})\b")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


async def _user(store: Store, role: str = "principal", email: str = "ava@h.example") -> User:
    org = await store.organisations.find_by_name("Harbour") or await store.organisations.add(
        name="Harbour", now=T0
    )
    return await store.users.add(
        org_id=org.id, email=email, display_name=email, role=role, password_hash="x", now=T0
    )


async def _confirmed(service: SecondFactors, user: User, clock: ManualClock) -> None:
    setup = await service.enrolments.start_totp(user, PRINCIPAL_RULES)
    totp = pyotp.TOTP(setup.key.replace(" ", ""))
    await service.enrolments.confirm_totp(user, totp.at(clock()), PRINCIPAL_RULES)


def _outbox(service_outbox: OutboxSender) -> str:
    match = SENT_CODE.search(service_outbox.messages[0].body)
    assert match
    return match.group(1)


async def _failures(store: Store, user: User) -> int:
    state = await store.throttle.get(attempt_key(user.id))
    return 0 if state is None else state.failures


async def test_a_principal_finishes_only_with_a_proved_backup_saved_sealed(
    store: Store, clock: ManualClock
) -> None:
    sending = _sending(store, clock)
    outbox = sending.outbox
    assert outbox is not None
    service = _service(store, clock, sending=sending)
    user = await _user(store)
    await _confirmed(service, user, clock)
    with pytest.raises(BackupRequired):
        await service.enrolments.finish(user, PRINCIPAL_RULES, AuditEntry(actor=user.id))
    assert await store.factors.kinds(user.id) == []
    sent = await service.backups.send(user, PRINCIPAL_RULES, kind="email", typed=BACKUP)
    assert sent.destination == "Ava.Backup@harbour.example"
    assert "A•••@harbour.example" in sent.message
    assert outbox.messages[0].to == "Ava.Backup@harbour.example"
    with pytest.raises(BackupRefused) as wrong:
        await service.backups.confirm(user, PRINCIPAL_RULES, "000000")
    assert "not accepted" in wrong.value.message
    assert await _failures(store, user) == 1
    proved = await service.backups.confirm(user, PRINCIPAL_RULES, _outbox(outbox))
    assert (proved.kind, proved.to) == ("email", "A•••@harbour.example")
    assert await _failures(store, user) == 0
    # Proved, but nothing is enrolled until the enrolment finishes.
    assert await store.factors.kinds(user.id) == []
    codes = await service.enrolments.finish(user, PRINCIPAL_RULES, AuditEntry(actor=user.id))
    assert len(codes) == 10
    enrolment = await service.enrolments.enrolment(user.id)
    assert enrolment.enrolled
    assert enrolment.has_backup
    backup = next(f for f in await store.factors.factors(user.id) if f.role == "backup")
    assert backup.kind == "email"
    sealer = Keys.derive(SECRET).at_rest
    assert sealer.open(backup.sealed, factor_aad(user.id, backup.id)) == (
        b"Ava.Backup@harbour.example"
    )
    rows = await store.db.fetch_all("SELECT secret FROM mfa_factors")
    assert all("harbour" not in row["secret"].lower() for row in rows)
    [enrolled] = [e for e in await store.audit.list() if e.kind == "mfa.enrolled"]
    assert enrolled.detail["backup"] == "email"
    assert "Ava.Backup" not in str(enrolled.detail)


async def test_a_member_may_skip_the_backup(store: Store, clock: ManualClock) -> None:
    service = _service(store, clock)
    user = await _user(store, role="member")
    await _confirmed(service, user, clock)
    await service.enrolments.finish(user, PRINCIPAL_RULES, AuditEntry(actor=user.id))
    enrolment = await service.enrolments.enrolment(user.id)
    assert enrolment.enrolled
    assert not enrolment.has_backup


@pytest.mark.parametrize(
    ("kind", "typed", "says"),
    [
        ("sms", "0412 345", "not a valid phone number"),
        ("sms", "1900 654 321", "Premium-rate"),
        ("sms", "02 9374 4000", "not a mobile number"),
        ("sms", "drop table", "Enter a mobile number"),
        ("email", "ava@", "Enter an email address"),
        ("email", "ava@harbour", "not a domain name"),
        ("fax", "0412 345 678", "Choose a phone number or an email address"),
    ],
)
async def test_bad_destinations_are_refused_and_nothing_is_sent(
    store: Store, clock: ManualClock, kind: str, typed: str, says: str
) -> None:
    sending = _sending(store, clock)
    service = _service(store, clock, sending=sending)
    user = await _user(store)
    await _confirmed(service, user, clock)
    with pytest.raises(BackupRefused) as refused:
        await service.backups.send(user, PRINCIPAL_RULES, kind=kind, typed=typed)
    assert says in refused.value.message
    assert sending.outbox is not None
    assert sending.outbox.messages == ()


async def test_expired_reused_and_unsent_codes_say_so(store: Store, clock: ManualClock) -> None:
    sending = _sending(store, clock)
    assert sending.outbox is not None
    service = _service(store, clock, sending=sending)
    user = await _user(store)
    await _confirmed(service, user, clock)
    with pytest.raises(BackupRefused) as unsent:
        await service.backups.confirm(user, PRINCIPAL_RULES, "123456")
    assert "Send a code first" in unsent.value.message
    await service.backups.send(user, PRINCIPAL_RULES, kind="sms", typed="0412 345 678")
    clock.advance(PRINCIPAL_RULES.code_lifetime)  # the code ran out; the step has not
    with pytest.raises(BackupRefused) as expired:
        await service.backups.confirm(user, PRINCIPAL_RULES, _outbox(sending.outbox))
    assert "expired" in expired.value.message
    await service.backups.send(user, PRINCIPAL_RULES, kind="sms", typed="+61 412 345 678")
    code = _outbox(sending.outbox)
    proved = await service.backups.confirm(user, PRINCIPAL_RULES, code)
    assert (proved.kind, proved.to) == ("sms", "+61 ••• ••• 678")
    with pytest.raises(BackupRefused) as reused:
        await service.backups.confirm(user, PRINCIPAL_RULES, code)
    assert "used already" in reused.value.message


async def test_a_half_finished_enrolment_leaves_nothing(store: Store, clock: ManualClock) -> None:
    sending = _sending(store, clock)
    assert sending.outbox is not None
    service = _service(store, clock, sending=sending)
    user = await _user(store)
    await _confirmed(service, user, clock)
    await service.backups.send(user, PRINCIPAL_RULES, kind="email", typed=BACKUP)
    await service.backups.confirm(user, PRINCIPAL_RULES, _outbox(sending.outbox))
    clock.advance(PRINCIPAL_RULES.step_lifetime)
    with pytest.raises(StepExpired):
        await service.enrolments.finish(user, PRINCIPAL_RULES, AuditEntry(actor=user.id))
    assert await store.factors.kinds(user.id) == []
    # Starting over forgets the backup proved before.
    await _confirmed(service, user, clock)
    assert await service.backups.proved(user, PRINCIPAL_RULES) is None
    with pytest.raises(BackupRequired):
        await service.enrolments.finish(user, PRINCIPAL_RULES, AuditEntry(actor=user.id))


async def test_the_backup_step_needs_a_confirmed_app(store: Store, clock: ManualClock) -> None:
    service = _service(store, clock)
    user = await _user(store)
    await service.enrolments.start_totp(user, PRINCIPAL_RULES)
    with pytest.raises(StepMissing) as refused:
        await service.backups.send(user, PRINCIPAL_RULES, kind="email", typed=BACKUP)
    assert refused.value.reason == "not-confirmed"


class _Failing:
    async def send(self, message: Message) -> None:
        raise DeliveryError("the carrier said no")


async def test_refused_and_failed_sends_spend_nothing(store: Store, clock: ManualClock) -> None:
    failing = _sending(store, clock, drivers=Drivers(sms=_Failing(), email=None, outbox=None))
    service = _service(store, clock, sending=failing)
    user = await _user(store)
    await _confirmed(service, user, clock)
    for _ in range(7):  # more than the per-user limit: a failed send books nothing
        with pytest.raises(BackupRefused) as failed:
            await service.backups.send(user, PRINCIPAL_RULES, kind="sms", typed="0412 345 678")
        assert failed.value.reason == "send-failed"
        assert "Try again" in failed.value.message
    assert await _failures(store, user) == 0
    working = _service(store, clock)
    for _ in range(5):
        await working.backups.send(user, PRINCIPAL_RULES, kind="email", typed=BACKUP)
    with pytest.raises(BackupRefused) as limited:
        await working.backups.send(user, PRINCIPAL_RULES, kind="email", typed=BACKUP)
    assert limited.value.reason == "send-limited"
    assert await _failures(store, user) == 0


async def test_backup_codes_share_the_attempt_count(store: Store, clock: ManualClock) -> None:
    sending = _sending(store, clock)
    service = _service(store, clock, sending=sending)
    user = await _user(store)
    await _confirmed(service, user, clock)
    await service.backups.send(user, PRINCIPAL_RULES, kind="email", typed=BACKUP)
    for _ in range(3):
        with pytest.raises(BackupRefused):
            await service.backups.confirm(user, PRINCIPAL_RULES, "000000")
    assert sending.outbox is not None
    with pytest.raises(CodeRefused) as locked:
        await service.backups.confirm(user, PRINCIPAL_RULES, _outbox(sending.outbox))
    assert locked.value.reason == "locked"
    assert await service.backups.proved(user, PRINCIPAL_RULES) is None


async def _enrolled_with_backup(
    service: SecondFactors, sending: CodeSender, user: User, clock: ManualClock
) -> None:
    assert sending.outbox is not None
    await _confirmed(service, user, clock)
    await service.backups.send(user, PRINCIPAL_RULES, kind="email", typed=BACKUP)
    await service.backups.confirm(user, PRINCIPAL_RULES, _outbox(sending.outbox))
    await service.enrolments.finish(user, PRINCIPAL_RULES, AuditEntry(actor=user.id))


async def test_use_my_backup_method_at_sign_in(store: Store, clock: ManualClock) -> None:
    sending = _sending(store, clock)
    assert sending.outbox is not None
    service = _service(store, clock, sending=sending)
    user = await _user(store)
    other = await _user(store, role="member", email="max@h.example")
    with pytest.raises(BackupRefused) as none:
        await service.backups.send_challenge(other, PRINCIPAL_RULES)
    assert "No backup method" in none.value.message
    await _enrolled_with_backup(service, sending, user, clock)
    assert await service.backups.enrolled(user) == ProvedBackup(
        kind="email", to="A•••@harbour.example"
    )
    # The code sent while enrolling is for that step, not for signing in.
    with pytest.raises(CodeRefused):
        await service.challenges.verify(
            user, method="backup", code=_outbox(sending.outbox), rules=PRINCIPAL_RULES
        )
    sent = await service.backups.send_challenge(user, PRINCIPAL_RULES)
    assert sent.kind == "email"
    code = _outbox(sending.outbox)
    # Another user cannot use it, and a wrong one is refused with the generic message.
    with pytest.raises(CodeRefused):
        await service.challenges.verify(other, method="backup", code=code, rules=PRINCIPAL_RULES)
    with pytest.raises(CodeRefused) as wrong:
        await service.challenges.verify(user, method="backup", code="000000", rules=PRINCIPAL_RULES)
    assert wrong.value.message.startswith("That code was not accepted")
    passed = await service.challenges.verify(
        user, method="backup", code=code, rules=PRINCIPAL_RULES
    )
    assert passed.method == "email"
    with pytest.raises(CodeRefused) as reused:
        await service.challenges.verify(user, method="backup", code=code, rules=PRINCIPAL_RULES)
    assert reused.value.reason == "used"
    kinds = [(e.kind, e.detail.get("method")) for e in await store.audit.list()]
    assert ("mfa.passed", "email") in kinds
    assert ("mfa.failed", "backup") in kinds


async def test_an_expired_backup_code_is_refused_and_counted(
    store: Store, clock: ManualClock
) -> None:
    sending = _sending(store, clock)
    assert sending.outbox is not None
    service = _service(store, clock, sending=sending)
    user = await _user(store)
    await _enrolled_with_backup(service, sending, user, clock)
    await service.backups.send_challenge(user, PRINCIPAL_RULES)
    clock.advance(PRINCIPAL_RULES.code_lifetime)
    with pytest.raises(CodeRefused) as expired:
        await service.challenges.verify(
            user, method="backup", code=_outbox(sending.outbox), rules=PRINCIPAL_RULES
        )
    assert expired.value.reason == "expired"
    assert await _failures(store, user) == 1
