"""Second-factor storage on a real SQLite file: replays and races settled by one conditional
write, enrolment saved whole or not at all, recovery codes spent once, devices bound to users."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.audit import MfaEnrolled, MfaPrimaryChanged, MfaReset
from gateway.store import SEALED_COLUMNS, Store
from gateway.store.factors import (
    FinishError,
    NewFactor,
    RememberedDevice,
    ResetCounts,
    ResetUserGone,
)
from gateway.store.records import AuditEntry, SessionRecord, User

T0 = 1_798_000_000.0


async def _user(store: Store, email: str = "max@harbour.example") -> User:
    orgs = await store.organisations.list()
    org = orgs[0] if orgs else await store.organisations.add(name="Harbour", now=T0)
    return await store.users.add(
        org_id=org.id,
        email=email,
        display_name=email,
        role="member",
        password_hash="x",
        now=T0,
    )


def _factor(factor_id: str = "mfa_1", last_step: int | None = 100) -> NewFactor:
    return NewFactor(
        id=factor_id, kind="totp", role="primary", sealed=b"\x01sealed", last_step=last_step
    )


async def _enrol(store: Store, user: User, *, now: float = T0, factor_id: str = "mfa_1") -> None:
    await store.factors.start(user.id, now=now, expires_at=now + 600, totp_sealed=b"pending")
    assert await store.factors.confirm_totp(user.id, started_at=now, step=100, now=now)
    await store.factors.finish(
        user.id,
        started_at=now,
        now=now,
        factor=_factor(factor_id),
        recovery_digests=["d1", "d2"],
        entry=AuditEntry(actor=user.id),
        event=MfaEnrolled(
            user_id=user.id, org_id=user.org_id, method="totp", role="primary", recovery_codes=2
        ),
    )


async def test_finish_saves_factor_codes_and_event_and_ends_the_enrolment(store: Store) -> None:
    user = await _user(store)
    assert await store.factors.kinds(user.id) == []
    await _enrol(store, user)
    assert await store.factors.kinds(user.id) == [("totp", "primary")]
    [factor] = await store.factors.factors(user.id)
    assert (factor.sealed, factor.last_step) == (b"\x01sealed", 100)
    assert sorted(await store.factors.unused_recovery_digests(user.id)) == ["d1", "d2"]
    assert await store.factors.pending(user.id) is None
    assert await store.factors.enrolled_user_ids() == {user.id}
    [event] = [e for e in await store.audit.list() if e.kind == "mfa.enrolled"]
    assert event.subject == user.id


async def test_a_half_finished_enrolment_leaves_nothing_enrolled(store: Store) -> None:
    user = await _user(store)
    await store.factors.start(user.id, now=T0, expires_at=T0 + 600, totp_sealed=b"pending")
    entry, event = (
        AuditEntry(actor=user.id),
        MfaEnrolled(
            user_id=user.id, org_id=user.org_id, method="totp", role="primary", recovery_codes=1
        ),
    )
    # Not confirmed yet: refused, nothing saved.
    with pytest.raises(FinishError):
        await store.factors.finish(
            user.id,
            started_at=T0,
            now=T0,
            factor=_factor(),
            recovery_digests=["d"],
            entry=entry,
            event=event,
        )
    assert await store.factors.kinds(user.id) == []
    assert await store.factors.unused_recovery_digests(user.id) == []
    assert await store.factors.pending(user.id) is not None
    # Confirmed but out of time: refused too.
    assert await store.factors.confirm_totp(user.id, started_at=T0, step=5, now=T0 + 1)
    with pytest.raises(FinishError):
        await store.factors.finish(
            user.id,
            started_at=T0,
            now=T0 + 600,
            factor=_factor(),
            recovery_digests=["d"],
            entry=entry,
            event=event,
        )
    assert await store.factors.kinds(user.id) == []
    assert [e for e in await store.audit.list() if e.kind == "mfa.enrolled"] == []


async def test_a_second_primary_factor_rolls_the_whole_finish_back(store: Store) -> None:
    user = await _user(store)
    await _enrol(store, user)
    with pytest.raises(FinishError):
        await _enrol(store, user, now=T0 + 10, factor_id="mfa_2")
    [factor] = await store.factors.factors(user.id)
    assert factor.id == "mfa_1"
    assert sorted(await store.factors.unused_recovery_digests(user.id)) == ["d1", "d2"]
    # The enrolment under way is still there: the delete that took it was rolled back too.
    assert await store.factors.pending(user.id) is not None


async def test_confirm_names_the_step_it_confirms(store: Store) -> None:
    user = await _user(store)
    await store.factors.start(user.id, now=T0, expires_at=T0 + 600, totp_sealed=b"a")
    await store.factors.start(user.id, now=T0 + 5, expires_at=T0 + 605, totp_sealed=b"b")
    # A confirmation computed for the first start does not confirm the restarted one.
    assert not await store.factors.confirm_totp(user.id, started_at=T0, step=1, now=T0 + 6)
    assert not await store.factors.confirm_totp(user.id, started_at=T0 + 5, step=1, now=T0 + 605)
    assert await store.factors.confirm_totp(user.id, started_at=T0 + 5, step=1, now=T0 + 6)
    assert not await store.factors.confirm_totp(user.id, started_at=T0 + 5, step=2, now=T0 + 7)
    pending = await store.factors.pending(user.id)
    assert pending is not None
    assert (pending.totp_sealed, pending.totp_step) == (b"b", 1)


async def test_a_step_is_accepted_only_after_the_last(store: Store) -> None:
    user = await _user(store)
    await _enrol(store, user)
    assert not await store.factors.accept_step("mfa_1", 100)  # the confirming step
    assert not await store.factors.accept_step("mfa_1", 99)
    assert await store.factors.accept_step("mfa_1", 101)
    assert not await store.factors.accept_step("mfa_1", 101)
    assert await store.factors.accept_step("mfa_1", 103)
    assert not await store.factors.accept_step("mfa_1", 102)


async def test_two_racing_submissions_of_one_step_exactly_one_wins(tmp_path: Path) -> None:
    path = tmp_path / "gateway.sqlite3"
    async with await Store.open(path) as first, await Store.open(path) as second:
        user = await _user(first)
        await _enrol(first, user)
        for step in range(101, 121):
            results = await asyncio.gather(
                first.factors.accept_step("mfa_1", step),
                second.factors.accept_step("mfa_1", step),
            )
            assert sorted(results) == [False, True]


async def test_a_recovery_code_is_spent_once_even_when_raced(tmp_path: Path) -> None:
    path = tmp_path / "gateway.sqlite3"
    async with await Store.open(path) as first, await Store.open(path) as second:
        user = await _user(first)
        await _enrol(first, user)
        results = await asyncio.gather(
            first.factors.spend_recovery(user.id, "d1", T0),
            second.factors.spend_recovery(user.id, "d1", T0),
        )
        assert sorted(results) == [False, True]
        assert await first.factors.unused_recovery_digests(user.id) == ["d2"]
        other = await _user(first, "ava@harbour.example")
        assert not await first.factors.spend_recovery(other.id, "d2", T0)  # not theirs


async def test_remembered_devices_are_found_by_hash_and_touched(store: Store) -> None:
    user = await _user(store)
    device = RememberedDevice(
        token_hash="h" * 64,
        user_id=user.id,
        created_at=T0,
        expires_at=T0 + 3600,
        last_used_at=None,
        label="Chromium",
    )
    await store.factors.remember(device)
    assert await store.factors.device("h" * 64) == device
    await store.factors.touch_device("h" * 64, T0 + 60)
    found = await store.factors.device("h" * 64)
    assert found is not None
    assert found.last_used_at == T0 + 60
    assert await store.factors.device("x" * 64) is None
    assert await store.factors.purge_devices(T0 + 3600) == 1
    assert await store.factors.device("h" * 64) is None


async def test_every_sealed_column_is_listed_with_its_binding(store: Store) -> None:
    user = await _user(store)
    await _enrol(store, user)
    await store.factors.start(user.id, now=T0, expires_at=T0 + 600, totp_sealed=b"again")
    assert await store.factors.confirm_totp(user.id, started_at=T0, step=1, now=T0)
    assert await store.factors.set_backup(
        user.id, started_at=T0, now=T0, kind="email", sealed=b"backup"
    )
    other = await _user(store, "ava@harbour.example")
    await store.factors.start(
        other.id, now=T0, expires_at=T0 + 600, totp_sealed=None, primary_kind="sms"
    )
    assert await store.factors.confirm_phone(other.id, started_at=T0, now=T0, sealed=b"phone")
    for column in SEALED_COLUMNS:
        rows = await store.db.fetch_all(
            f"SELECT * FROM {column.table} WHERE {column.column} IS NOT NULL"  # noqa: S608
        )
        assert rows, column.name
        assert all(row["user_id"].encode() in column.aad(row) for row in rows)


async def test_a_backup_is_kept_only_with_the_confirmed_enrolment_in_time(store: Store) -> None:
    user = await _user(store)
    await store.factors.start(user.id, now=T0, expires_at=T0 + 600, totp_sealed=b"seed")

    async def keep(started_at: float, now: float) -> bool:
        return await store.factors.set_backup(
            user.id, started_at=started_at, now=now, kind="sms", sealed=b"phone"
        )

    assert not await keep(T0, T0)  # the app is not confirmed yet
    assert await store.factors.confirm_totp(user.id, started_at=T0, step=1, now=T0)
    assert not await keep(T0 - 1, T0)  # another (earlier) enrolment
    assert not await keep(T0, T0 + 600)  # ran out
    assert await keep(T0, T0 + 1)
    pending = await store.factors.pending(user.id)
    assert pending is not None
    assert (pending.backup_kind, pending.backup_sealed) == ("sms", b"phone")
    # Starting over forgets it.
    await store.factors.start(user.id, now=T0 + 2, expires_at=T0 + 602, totp_sealed=b"new")
    pending = await store.factors.pending(user.id)
    assert pending is not None
    assert (pending.backup_kind, pending.backup_sealed) == (None, None)


async def test_a_phone_enrolment_keeps_its_number_once_proved_and_finishes_as_sms(
    store: Store,
) -> None:
    user = await _user(store)
    await store.factors.start(
        user.id, now=T0, expires_at=T0 + 600, totp_sealed=None, primary_kind="sms"
    )
    pending = await store.factors.pending(user.id)
    assert pending is not None
    assert (pending.primary_kind, pending.phone_sealed, pending.confirmed) == ("sms", None, False)
    # Not confirmed: no backup kept, nothing finishes, no TOTP step confirms it.
    assert not await store.factors.set_backup(
        user.id, started_at=T0, now=T0, kind="email", sealed=b"mail"
    )
    assert not await store.factors.confirm_totp(user.id, started_at=T0, step=1, now=T0)

    async def prove(started_at: float, now: float) -> bool:
        return await store.factors.confirm_phone(
            user.id, started_at=started_at, now=now, sealed=b"phone"
        )

    assert not await prove(T0 - 1, T0)  # another enrolment
    assert not await prove(T0, T0 + 600)  # ran out
    assert await prove(T0, T0 + 1)
    assert not await prove(T0, T0 + 2)  # once only
    pending = await store.factors.pending(user.id)
    assert pending is not None
    assert (pending.phone_sealed, pending.confirmed) == (b"phone", True)
    assert await store.factors.set_backup(
        user.id, started_at=T0, now=T0 + 3, kind="email", sealed=b"mail"
    )
    phone = NewFactor(id="mfa_p", kind="sms", role="primary", sealed=b"p", last_step=None)
    await store.factors.finish(
        user.id,
        started_at=T0,
        now=T0 + 4,
        factor=phone,
        recovery_digests=["d1"],
        entry=AuditEntry(actor=user.id),
        event=MfaEnrolled(
            user_id=user.id, org_id=user.org_id, method="sms", role="primary", recovery_codes=1
        ),
    )
    assert await store.factors.kinds(user.id) == [("sms", "primary")]
    assert await store.factors.pending(user.id) is None


async def test_a_totp_start_replaces_a_phone_enrolment_and_forgets_its_number(
    store: Store,
) -> None:
    user = await _user(store)
    await store.factors.start(
        user.id, now=T0, expires_at=T0 + 600, totp_sealed=None, primary_kind="sms"
    )
    assert await store.factors.confirm_phone(user.id, started_at=T0, now=T0, sealed=b"phone")
    await store.factors.start(user.id, now=T0 + 1, expires_at=T0 + 601, totp_sealed=b"seed")
    pending = await store.factors.pending(user.id)
    assert pending is not None
    assert (pending.primary_kind, pending.phone_sealed, pending.confirmed) == ("totp", None, False)
    with pytest.raises(ValueError, match="cannot start"):
        await store.factors.start(user.id, now=T0, expires_at=T0 + 1, totp_sealed=None)


def _reset_event(user: User) -> Callable[[ResetCounts], MfaReset]:
    def event(counts: ResetCounts) -> MfaReset:
        return MfaReset(
            user_id=user.id,
            org_id=user.org_id,
            via="support-cli",
            by="cli",
            factors=counts.factors,
            recovery_codes=counts.recovery_codes,
            devices=counts.devices,
            sessions=counts.sessions,
        )

    return event


async def _open_session(store: Store, user: User, id_hash: str) -> None:
    await store.sessions.add(
        SessionRecord(
            id_hash=id_hash,
            user_id=user.id,
            created_at=T0,
            last_seen_at=T0,
            expires_at=T0 + 3600,
            csrf_secret="s",
            client_addr=None,
            ended_at=None,
        )
    )


async def test_a_reset_removes_everything_in_one_transaction_and_tells_every_process(
    store: Store,
) -> None:
    user, other = await _user(store), await _user(store, "ava@harbour.example")
    await _enrol(store, user)
    await _enrol(store, other, factor_id="mfa_2")
    for owner, token in ((user, "h1"), (other, "h2")):
        await store.factors.remember(
            RememberedDevice(
                token_hash=token,
                user_id=owner.id,
                created_at=T0,
                expires_at=T0 + 3600,
                last_used_at=None,
                label="Firefox",
            )
        )
    await store.factors.start(user.id, now=T0 + 1, expires_at=T0 + 600, totp_sealed=b"again")
    await _open_session(store, user, "s1")
    await _open_session(store, user, "s2")
    await _open_session(store, other, "s3")
    revocations, changes = await store.revocations.latest(), await store.changes.latest()

    counts = await store.factors.reset(
        user.id, now=T0 + 5, entry=AuditEntry(actor="cli"), event=_reset_event(user)
    )
    assert counts == ResetCounts(factors=1, recovery_codes=2, devices=1, enrolments=1, sessions=2)
    assert await store.factors.kinds(user.id) == []
    assert await store.factors.unused_recovery_digests(user.id) == []
    assert await store.factors.device("h1") is None
    assert await store.factors.pending(user.id) is None
    for id_hash in ("s1", "s2"):
        ended = await store.sessions.get(id_hash)
        assert ended is not None
        assert ended.ended_at == T0 + 5
    # The feeds every process follows name the user.
    assert [u for _, _, u in await store.revocations.since(revocations)] == [user.id]
    [change] = await store.changes.since(changes)
    assert (change.kind, change.user_id) == ("enrolment", user.id)
    [event] = await store.audit.list(kind=MfaReset.kind)
    assert (event.subject, event.actor, event.detail["sessions"]) == (user.id, "cli", 2)
    # Nobody else is touched.
    assert await store.factors.kinds(other.id) == [("totp", "primary")]
    assert await store.factors.device("h2") is not None
    still = await store.sessions.get("s3")
    assert still is not None
    assert still.ended_at is None


async def test_a_reset_of_a_disabled_or_unknown_user_changes_nothing(store: Store) -> None:
    user = await _user(store)
    await _enrol(store, user)
    await store.users.set_disabled(user.id, True, now=T0)
    changes = await store.changes.latest()
    for user_id in (user.id, "usr_nobody"):
        with pytest.raises(ResetUserGone):
            await store.factors.reset(
                user_id, now=T0 + 5, entry=AuditEntry(actor="cli"), event=_reset_event(user)
            )
    assert await store.factors.kinds(user.id) == [("totp", "primary")]
    assert await store.changes.latest() == changes
    assert await store.audit.list(kind=MfaReset.kind) == []


async def test_a_new_primary_factor_keeps_the_date_the_user_enrolled(store: Store) -> None:
    user = await _user(store)
    await _enrol(store, user)
    assert await store.factors.enrolled_at([user.id]) == {user.id: T0}
    later = T0 + 60 * 86400
    await store.factor_changes.replace_factor(
        user.id,
        _factor("mfa_2"),
        now=later,
        entry=AuditEntry(actor=user.id),
        event=MfaPrimaryChanged(
            user_id=user.id, org_id=user.org_id, method="totp", previous="totp", to=None
        ),
    )
    [factor] = [f for f in await store.factors.factors(user.id) if f.role == "primary"]
    assert factor.id == "mfa_2"  # the new factor is in place ...
    assert await store.factors.enrolled_at([user.id]) == {user.id: T0}  # ... enrolled since T0
