"""Reminder rounds on a real SQLite file, sent by SMTP to a loopback mail server, at times set by
a manual clock: each point once (across processes too), retries, scope, deadlines, summaries."""

from __future__ import annotations

import asyncio
import contextlib
import email
from collections.abc import AsyncIterator
from datetime import datetime
from email.message import Message as EmailMessage
from pathlib import Path
from typing import Any

import pytest

from gateway.clock import ManualClock
from gateway.delivery.sender import Message
from gateway.delivery.smtp import SmtpSender
from gateway.policy import parse_policy, policy_to_document
from gateway.reminders.service import (
    FIRST_RETRY_SECONDS,
    INTERVAL_SECONDS,
    MAX_ATTEMPTS,
    Reminders,
)
from gateway.store import Store
from gateway.store.records import User
from tests.manual_time import ManualTime
from tests.stand_ins import Mailbox
from tests.test_policy_document import doc_with
from tests.test_store_factors import _enrol


def at(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


# The policy's deadline is the end of 31 December 2026 in Sydney (AEDT, +11:00): points at
# 09:00 local on 17, 24 and 30 December.
POINT_14 = at("2026-12-17T09:00:00+11:00")
POINT_7 = at("2026-12-24T09:00:00+11:00")
POINT_1 = at("2026-12-30T09:00:00+11:00")
AFTER = at("2027-01-01T00:00:00+11:00")


def policy_doc(**changes: Any) -> dict[str, Any]:
    base = {
        "scope": {
            "countries": ["AU"],
            "requires_xero_connection": False,
            "roles": ["principal", "member"],
        },
        "methods": {"primary": ["totp"], "backup": [], "backup_required_for": []},
    }
    return policy_to_document(parse_policy(doc_with(**{**base, **changes})))


async def add_policy(store: Store, **changes: Any) -> None:
    await store.policies.create(
        policy_id="au-ato-2fa", document=policy_doc(**changes), enabled=True, now=0.0, by="test"
    )


async def add_user(store: Store, email_address: str, org: str, role: str = "member") -> User:
    found = await store.organisations.find_by_name(org)
    org_id = found.id if found else (await store.organisations.add(name=org, now=0.0)).id
    name = email_address.split("@")[0].title()
    return await store.users.add(
        org_id=org_id,
        email=email_address,
        display_name=name,
        role=role,
        password_hash="x",
        now=0.0,
    )


@pytest.fixture
async def mail() -> AsyncIterator[Mailbox]:
    from tests.stand_ins import running_mailbox

    async with running_mailbox() as box:
        yield box


def reminders(store: Store, mail: Mailbox, clock: ManualClock) -> Reminders:
    sender = SmtpSender(host="127.0.0.1", port=mail.port, sender="gw@h.example", starttls=False)
    return Reminders(store=store, email=sender, clock=clock, base_url="https://gw.example/")


def received(mail: Mailbox) -> list[EmailMessage]:
    return [email.message_from_bytes(raw) for raw in mail.received]


def text(message: EmailMessage) -> str:
    payload = message.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode().replace("\r\n", "\n")


def to_and_subject(mail: Mailbox) -> list[tuple[str, str]]:
    return [(m["To"], m["Subject"]) for m in received(mail)]


async def test_each_point_is_sent_once_with_the_days_left_and_where_to_set_up(
    store: Store, mail: Mailbox
) -> None:
    await add_policy(store)
    await add_user(store, "max@harbour.example", "Harbour")
    clock = ManualClock(POINT_14 - 60)
    rounds = reminders(store, mail, clock)
    assert (await rounds.run()).planned == ()
    for point, days in ((POINT_14, 14), (POINT_7, 7), (POINT_1, 1)):
        clock.set(point)
        report = await rounds.run()
        assert report.count("sent") == 1
        clock.advance(3600)
        assert (await rounds.run()).planned == ()
        message = received(mail)[-1]
        assert message["To"] == "max@harbour.example"
        assert (
            message["Subject"]
            == f"Set up two-factor authentication: {days} day{'s' * (days > 1)} left"
        )
        body = text(message)
        assert "the end of 31 December 2026, Australia/Sydney time" in body
        assert "https://gw.example/_gateway/mfa/enrol" in body
    assert len(mail.received) == 3
    events = await store.audit.list(kind="reminder.sent")
    assert [e.detail["point"] for e in events] == [
        "14d-2026-12-31",
        "7d-2026-12-31",
        "1d-2026-12-31",
    ]


async def test_two_processes_on_one_file_send_each_point_once(
    tmp_path: Path, mail: Mailbox
) -> None:
    path = tmp_path / "shared.sqlite3"
    async with await Store.open(path) as first, await Store.open(path) as second:
        await add_policy(first)
        for n in range(8):
            await add_user(first, f"user{n}@harbour.example", "Harbour")
        clock = ManualClock(POINT_7 + 5)
        one, two = reminders(first, mail, clock), reminders(second, mail, clock)
        reports = await asyncio.gather(one.run(), two.run(), one.run(), two.run())
        assert sum(r.count("sent") for r in reports) == 8
        assert sorted(to for to, _ in to_and_subject(mail)) == sorted(
            f"user{n}@harbour.example" for n in range(8)
        )


async def test_a_refused_send_is_retried_later_and_sent_once(store: Store, mail: Mailbox) -> None:
    await add_policy(store)
    await add_user(store, "max@harbour.example", "Harbour")
    clock = ManualClock(POINT_7)
    rounds = reminders(store, mail, clock)
    mail.refusing = True
    assert (await rounds.run()).count("failed") == 1
    mail.refusing = False
    clock.advance(FIRST_RETRY_SECONDS - 1)
    assert (await rounds.run()).planned == ()  # not yet
    clock.advance(1)
    report = await rounds.run()
    assert (report.count("sent"), report.planned[0].retry) == (1, True)
    clock.advance(FIRST_RETRY_SECONDS * 10)
    assert (await rounds.run()).planned == ()
    assert len(mail.received) == 1
    (failed,) = await store.audit.list(kind="reminder.failed")
    assert failed.detail["retry_at"] == POINT_7 + FIRST_RETRY_SECONDS
    assert "refused" in failed.detail["reason"]
    (sent,) = await store.audit.list(kind="reminder.sent")
    assert sent.detail["attempts"] == 2


async def test_sends_refused_every_time_are_given_up_after_the_last_try(
    store: Store, mail: Mailbox
) -> None:
    await add_policy(store, reminders={"days_before": [14]})
    await add_user(store, "max@harbour.example", "Harbour")
    clock = ManualClock(POINT_14)
    rounds = reminders(store, mail, clock)
    mail.refusing = True
    for _ in range(MAX_ATTEMPTS + 2):
        await rounds.run()
        clock.advance(7 * 3600)
    events = await store.audit.list(kind="reminder.failed")
    assert [e.detail["attempts"] for e in events] == list(range(1, MAX_ATTEMPTS + 1))
    assert events[-1].detail["retry_at"] is None
    (claim,) = await store.reminders.all()
    assert claim.status == "abandoned"


async def test_enrolled_and_out_of_scope_users_get_none(store: Store, mail: Mailbox) -> None:
    await add_policy(store)
    done = await add_user(store, "ava@harbour.example", "Harbour", "principal")
    await _enrol(store, done)
    await add_user(store, "max@harbour.example", "Harbour")
    kiwi = await add_user(store, "leo@kauri.example", "Kauri")
    await store.tenants.link(
        org_id=kiwi.org_id, tenant_id="t-nz", name="Kauri", country_code="NZ", now=0.0
    )
    clock = ManualClock(POINT_14)
    await reminders(store, mail, clock).run()
    reminded = [to for to, subject in to_and_subject(mail) if subject.startswith("Set up")]
    assert reminded == ["max@harbour.example"]


async def test_a_user_who_enrols_gets_no_more(store: Store, mail: Mailbox) -> None:
    await add_policy(store)
    user = await add_user(store, "max@harbour.example", "Harbour")
    clock = ManualClock(POINT_14)
    rounds = reminders(store, mail, clock)
    await rounds.run()
    await _enrol(store, user, now=POINT_14)
    clock.set(POINT_7)
    assert (await rounds.run()).planned == ()
    assert len(mail.received) == 1


async def test_after_the_deadline_none_and_a_missed_point_only_the_latest(
    store: Store, mail: Mailbox
) -> None:
    await add_policy(store)
    await add_user(store, "max@harbour.example", "Harbour")
    clock = ManualClock(AFTER)
    rounds = reminders(store, mail, clock)
    assert (await rounds.run()).planned == ()
    clock.set(POINT_1 + 3600)  # down across 14 and 7 days before: the 1-day point alone
    await rounds.run()
    assert [s for _, s in to_and_subject(mail)] == ["Set up two-factor authentication: 1 day left"]


async def test_points_fall_at_nine_in_sydney_across_the_start_of_daylight_saving(
    store: Store, mail: Mailbox
) -> None:
    # Clocks go forward on 4 October 2026: the deadline's day is at +11:00, 7 days before at +10.
    await add_policy(
        store,
        schedule={
            "announce": "2026-09-01",
            "deadline": "2026-10-10",
            "timezone": "Australia/Sydney",
        },
        reminders={"days_before": [7]},
    )
    await add_user(store, "max@harbour.example", "Harbour")
    clock = ManualClock(at("2026-10-03T08:59:59+10:00"))
    rounds = reminders(store, mail, clock)
    assert (await rounds.run()).planned == ()
    clock.set(at("2026-10-03T09:00:00+10:00"))
    assert (await rounds.run()).count("sent") == 1
    message = received(mail)[0]
    assert message["Subject"] == "Set up two-factor authentication: 7 days left"


async def test_principals_get_a_summary_once_a_week(store: Store, mail: Mailbox) -> None:
    await add_policy(store, reminders={"days_before": []})
    ava = await add_user(store, "ava@harbour.example", "Harbour", "principal")
    await _enrol(store, ava)
    await add_user(store, "max@harbour.example", "Harbour")
    await add_user(store, "nia@kauri.example", "Kauri", "principal")
    kiwi = await store.organisations.find_by_name("Kauri")
    assert kiwi is not None
    await store.tenants.link(
        org_id=kiwi.id, tenant_id="t-nz", name="Kauri", country_code="NZ", now=0.0
    )
    # Monday 7 December 2026, 08:59 in Sydney: not yet; from 09:00 once that week.
    clock = ManualClock(at("2026-12-07T08:59:00+11:00"))
    rounds = reminders(store, mail, clock)
    assert (await rounds.run()).planned == ()
    clock.set(at("2026-12-07T09:00:00+11:00"))
    assert (await rounds.run()).count("sent") == 1
    for day in range(1, 7):
        clock.set(at(f"2026-12-{7 + day:02d}T10:00:00+11:00"))
        assert (await rounds.run()).planned == ()
    clock.set(at("2026-12-14T09:30:00+11:00"))
    assert (await rounds.run()).count("sent") == 1
    assert [to for to, _ in to_and_subject(mail)] == ["ava@harbour.example"] * 2
    body = text(received(mail)[0])
    assert "1 of 2 have set it up" in body
    assert "- Ava <ava@harbour.example>: set up" in body
    assert "- Max <max@harbour.example>: NOT set up (24 days left)" in body
    weeks = [e.detail["point"] for e in await store.audit.list(kind="reminder.sent")]
    assert weeks == ["2026-W50", "2026-W51"]


async def test_no_email_delivery_sends_nothing_and_claims_nothing(store: Store) -> None:
    await add_policy(store)
    await add_user(store, "max@harbour.example", "Harbour")
    rounds = Reminders(store=store, email=None, clock=ManualClock(POINT_7))
    assert (await rounds.run(dry_run=True)).count("due") == 1
    assert (await rounds.run()).planned == ()
    assert await store.reminders.all() == []


async def test_a_running_gateway_sends_one_interval_after_start_not_at_it(
    store: Store, mail: Mailbox
) -> None:
    await add_policy(store)
    await add_user(store, "max@harbour.example", "Harbour")
    time = ManualTime(POINT_7)
    sender = SmtpSender(host="127.0.0.1", port=mail.port, sender="gw@h.example", starttls=False)
    rounds = Reminders(store=store, email=sender, clock=time.clock)
    waiting: asyncio.Queue[float] = asyncio.Queue()  # each time the loop goes to sleep

    async def sleep(seconds: float) -> None:
        waiting.put_nowait(time.clock())
        await time.sleep(seconds)

    task = asyncio.create_task(rounds.run_forever(sleep=sleep))
    try:
        assert await waiting.get() == POINT_7  # asleep at start, before any round
        await time.advance(INTERVAL_SECONDS - 1)
        assert await store.reminders.all() == []  # the point has come; start-up is not slowed
        await time.advance(1)
        await waiting.get()  # the first round is done
        assert len(mail.received) == 1
        await time.advance(INTERVAL_SECONDS)
        await waiting.get()
        assert len(mail.received) == 1
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class _BrokenOnce:
    """The real SMTP sender, except that its first send fails in a way no sender promises
    (not a DeliveryError): the claim must still be settled and retried."""

    def __init__(self, inner: SmtpSender) -> None:
        self._inner = inner
        self.broken = True

    async def send(self, message: Message) -> None:
        if self.broken:
            self.broken = False
            raise RuntimeError("secret-looking detail that must not be kept")
        await self._inner.send(message)


async def test_an_unexpected_send_failure_is_settled_and_retried(
    store: Store, mail: Mailbox
) -> None:
    await add_policy(store)
    await add_user(store, "max@harbour.example", "Harbour")
    clock = ManualClock(POINT_7)
    smtp = SmtpSender(host="127.0.0.1", port=mail.port, sender="gw@h.example", starttls=False)
    rounds = Reminders(store=store, email=_BrokenOnce(smtp), clock=clock)
    assert (await rounds.run()).count("failed") == 1
    (failed,) = await store.audit.list(kind="reminder.failed")
    assert failed.detail["reason"] == "the send failed (RuntimeError)"
    clock.advance(FIRST_RETRY_SECONDS)
    assert (await rounds.run()).count("sent") == 1
    assert len(mail.received) == 1
