"""Decisions in the request path: cached, yet never stale when time or the store moves."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from gateway.clock import ManualClock
from gateway.enforcement.decisions import PROMPT_KEY, Decider, PolicyBook
from gateway.enforcement.policy_files import apply_policies, load_policy_path
from gateway.policy import Outcome, PolicyError
from gateway.signin.sessions import LiveSession
from gateway.store import Store
from gateway.store.records import SessionRecord
from tests.conftest import cap_dismissals

ROOT = Path(__file__).resolve().parent.parent
DEADLINE = 1_798_722_000.0  # 2027-01-01T00:00:00+11:00


@pytest.fixture
async def setup(store: Store) -> tuple[Store, Decider, LiveSession, ManualClock]:
    clock = ManualClock(DEADLINE - 3 * 86400 - 10)  # 3 days and 10 seconds before
    org = await store.organisations.add(name="Harbour", now=clock())
    await store.tenants.link(
        org_id=org.id, tenant_id="t", name="Harbour Pty", country_code="AU", now=clock()
    )
    user = await store.users.add(
        org_id=org.id,
        email="a@h.example",
        display_name="A",
        role="member",
        password_hash="x",
        now=clock(),
    )
    await apply_policies(store, load_policy_path(ROOT / "policies"), now=clock(), by="test")
    book = PolicyBook(store)
    await book.refresh()
    record = SessionRecord(
        id_hash="h",
        user_id=user.id,
        created_at=clock(),
        last_seen_at=clock(),
        expires_at=clock() + 86400 * 10,
        csrf_secret="c",
        client_addr=None,
        ended_at=None,
    )
    live = LiveSession(record=record, user=user, last_seen=clock())
    return store, Decider(book, store, clock), live, clock


async def test_cached_prompt_counts_the_days_down(
    setup: tuple[Store, Decider, LiveSession, ManualClock],
) -> None:
    _, decider, live, clock = setup
    assert (await decider.decide_for(live)).days_left == 4
    clock.advance(9)
    assert (await decider.decide_for(live)).days_left == 4
    clock.advance(1)
    assert (await decider.decide_for(live)).days_left == 3


async def test_cached_prompt_turns_into_a_block_at_the_deadline(
    setup: tuple[Store, Decider, LiveSession, ManualClock],
) -> None:
    _, decider, live, clock = setup
    assert (await decider.decide_for(live)).outcome is Outcome.PROMPT
    clock.set(DEADLINE - 0.001)
    assert (await decider.decide_for(live)).outcome is Outcome.PROMPT
    clock.set(DEADLINE)
    assert (await decider.decide_for(live)).outcome is Outcome.ENROL


async def test_book_refresh_reloads_only_on_a_version_change(
    setup: tuple[Store, Decider, LiveSession, ManualClock],
) -> None:
    store, decider, _, _ = setup
    assert await decider.book.refresh() is False
    stored = await store.policies.get("au-ato-2fa")
    await store.policies.set_enabled(
        policy_id="au-ato-2fa", enabled=False, expected_version=stored.version, now=0, by="t"
    )
    assert await decider.book.refresh() is True
    assert [p.enabled for p in decider.book.policies] == [False]


async def test_a_gateway_refuses_to_start_on_an_enabled_policy_that_no_longer_parses(
    setup: tuple[Store, Decider, LiveSession, ManualClock],
) -> None:
    store, decider, _, _ = setup
    await store.policies.create(
        policy_id="broken", document={"id": "broken"}, enabled=True, now=0, by="t"
    )
    # A running gateway keeps what it enforces and logs the broken newcomer...
    assert await decider.book.refresh() is True
    assert [p.id for p in decider.book.policies] == ["au-ato-2fa"]
    # ...but a starting one will not enforce less than it should.
    with pytest.raises(PolicyError, match="stored policy 'broken' no longer parses"):
        await PolicyBook(store).refresh()
    stored = await store.policies.get("broken")
    await store.policies.set_enabled(
        policy_id="broken", enabled=False, expected_version=stored.version, now=0, by="t"
    )
    book = PolicyBook(store)
    await book.refresh()  # disabled, so left out
    assert [p.id for p in book.policies] == ["au-ato-2fa"]


async def test_a_policy_in_force_stays_in_force_when_its_stored_record_breaks(
    setup: tuple[Store, Decider, LiveSession, ManualClock],
) -> None:
    store, decider, live, _ = setup
    assert (await decider.decide_for(live)).outcome is Outcome.PROMPT
    # A record that no longer parses, e.g. written by a newer release: the store accepts it.
    stored = await store.policies.get("au-ato-2fa")
    broken = {**stored.document, "schedule": {"deadline": "someday"}}
    await store.policies.replace(
        policy_id="au-ato-2fa",
        document=broken,
        enabled=True,
        expected_version=stored.version,
        now=0,
        by="t",
    )
    assert await decider.book.refresh() is True
    assert [p.id for p in decider.book.policies] == ["au-ato-2fa"]
    assert (await decider.decide_for(live)).outcome is Outcome.PROMPT


async def test_a_sessions_remembered_decision_follows_what_it_was_made_from(
    setup: tuple[Store, Decider, LiveSession, ManualClock],
) -> None:
    store, decider, live, clock = setup
    assert decider.remembered(live) is None  # nothing decided yet
    first = await decider.decide_for(live)
    assert first.outcome is Outcome.PROMPT
    assert await decider.decide_for(live) is first  # nothing moved: the same decision
    # (The first decision read the user's dismissal count, which counts as a move.)
    assert decider.remembered(live) is first  # the warm path, without an await

    # A cap on dismissals, stored and picked up: the remembered decision is not used.
    await cap_dismissals(store, 2, now=clock())
    await decider.book.refresh()
    assert (await decider.decide_for(live)).dismissals_left == 2

    # The user dismisses the prompt in another session: this session's decision counts it.
    decider.note_dismissals(live.user.id, 1)
    assert (await decider.decide_for(live)).dismissals_left == 1
    decider.note_dismissals(live.user.id, 2)
    assert (await decider.decide_for(live)).outcome is Outcome.ENROL

    # This session's own state is part of what the decision was made from.
    live.record = dataclasses.replace(live.record, prompt_dismissed_at=clock())
    assert decider.remembered(live) is None
    assert (await decider.decide_for(live)).outcome is Outcome.ALLOW


async def test_a_remembered_decision_lapses_when_its_day_count_would_go_down(
    setup: tuple[Store, Decider, LiveSession, ManualClock],
) -> None:
    _, decider, live, clock = setup
    await decider.decide_for(live)  # the first reads the dismissal count: a move
    decision = await decider.decide_for(live)
    assert decision.days_left == 4
    clock.advance(5)  # still four days left: the same decision is handed out
    assert decider.remembered(live) is decision
    clock.advance(10)  # 3 days and 5 seconds before the deadline: a day fewer
    assert decider.remembered(live) is None
    assert (await decider.decide_for(live)).days_left == 3


async def test_a_remembered_decision_is_made_anew_for_a_changed_user(
    setup: tuple[Store, Decider, LiveSession, ManualClock],
) -> None:
    store, decider, live, clock = setup
    remembered = await decider.decide_for(live)
    assert remembered.outcome is Outcome.PROMPT
    assert await decider.decide_for(live) is remembered
    nz = await store.organisations.add(name="Kiwi", now=clock())
    # The user moved to an organisation with no Australian tenant, as a reload would show.
    live.user = dataclasses.replace(live.user, org_id=nz.id)
    assert (await decider.decide_for(live)).outcome is Outcome.ALLOW


async def test_a_dismissal_made_in_another_process_counts_once_it_is_learnt(
    setup: tuple[Store, Decider, LiveSession, ManualClock], tmp_path: Path
) -> None:
    store, decider, live, clock = setup
    await cap_dismissals(store, 2, now=clock())
    await decider.book.refresh()
    assert (await decider.decide_for(live)).dismissals_left == 2
    other = await Store.open(tmp_path / "gateway.sqlite3")  # another gateway process
    await other.dismissals.record(live.user.id, PROMPT_KEY, clock(), limit=2)
    await other.close()
    assert (await decider.decide_for(live)).dismissals_left == 2  # not learnt yet
    decider.forget_users({live.user.id})  # what the poll of the user-state feed does
    assert decider.remembered(live) is None
    assert (await decider.decide_for(live)).dismissals_left == 1


async def test_a_count_read_while_a_change_is_learnt_is_not_kept(
    setup: tuple[Store, Decider, LiveSession, ManualClock], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, decider, live, _ = setup
    read_count = store.dismissals.count

    async def count_read_while_the_poll_forgets(user_id: str, policy_key: str) -> int:
        found = await read_count(user_id, policy_key)
        decider.forget_users({user_id})  # the change may be newer than what was read
        return found

    monkeypatch.setattr(store.dismissals, "count", count_read_while_the_poll_forgets)
    assert await decider.dismissals(live.user.id) == 0
    monkeypatch.undo()
    before = store.db.statement_count
    assert await decider.dismissals(live.user.id) == 0
    assert store.db.statement_count == before + 1  # read again, not taken from the cache
    assert await decider.dismissals(live.user.id) == 0
    assert store.db.statement_count == before + 1  # now it is kept
