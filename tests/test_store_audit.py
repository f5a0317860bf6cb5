"""Tests for the audit repository."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from gateway.audit import Event
from gateway.errors import StoreError
from gateway.store import AuditEntry, AuditEvent, Store
from gateway.store.audit import NO_FILTER, AuditFilter, record_change


# Kinds of this file's own: the store records any Event, whatever its kind.
@dataclass(frozen=True, kw_only=True)
class Odd(Event):
    kind = "test.odd"


@dataclass(frozen=True, kw_only=True)
class Even(Event):
    kind = "test.even"


@dataclass(frozen=True, kw_only=True)
class Sample(Event):
    kind = "test.sample"
    subject_field = "thing"
    thing: str
    org_id: str | None = None
    value: Any = None


async def _record_many(store: Store, count: int, *, start: float = 0.0) -> list[int]:
    return [
        await store.audit.record(Odd() if n % 2 else Even(), at=start + n) for n in range(count)
    ]


async def test_a_recorded_event_can_be_read_back_with_all_its_fields(store: Store) -> None:
    event_id = await store.audit.record(
        Sample(thing="usr_2", org_id="org_1", value={"attempt": 2, "nested": {"ok": True}}),
        at=1234.5,
        actor="usr_1",
        client_addr="203.0.113.7",
    )
    assert await store.audit.list() == [
        AuditEvent(
            id=event_id,
            at=1234.5,
            kind="test.sample",
            actor="usr_1",
            subject="usr_2",
            org_id="org_1",
            client_addr="203.0.113.7",
            detail={"value": {"attempt": 2, "nested": {"ok": True}}},
        )
    ]


async def test_an_event_without_optional_fields_has_empty_detail(store: Store) -> None:
    await store.audit.record(Even(), at=1.0)
    [event] = await store.audit.list()
    assert (event.actor, event.subject, event.org_id, event.client_addr) == (None,) * 4
    assert event.detail == {}


async def test_event_ids_increase(store: Store) -> None:
    ids = await _record_many(store, 5)
    assert ids == sorted(ids)
    assert len(set(ids)) == 5


async def test_a_detail_that_is_not_json_is_refused_and_nothing_is_recorded(
    store: Store,
) -> None:
    with pytest.raises(StoreError, match="JSON"):
        await store.audit.record(Sample(thing="x", value=object()), at=1.0)
    assert await store.audit.list() == []


async def test_events_are_listed_in_id_order_filtered_by_time_and_kind(store: Store) -> None:
    ids = await _record_many(store, 10)  # at = 0..9, odd ones are test.odd
    assert [e.id for e in await store.audit.list()] == ids
    assert [e.at for e in await store.audit.list(since=3.0)] == [3, 4, 5, 6, 7, 8, 9]
    assert [e.at for e in await store.audit.list(until=3.0)] == [0, 1, 2]
    assert [e.at for e in await store.audit.list(since=2.0, until=6.0)] == [2, 3, 4, 5]
    assert [e.at for e in await store.audit.list(kind="test.odd")] == [1, 3, 5, 7, 9]
    assert [e.at for e in await store.audit.list(kind="test.odd", since=4.0, until=8.0)] == [5, 7]
    assert await store.audit.list(kind="never") == []


async def test_listing_stops_at_the_limit(store: Store) -> None:
    await _record_many(store, 10)
    assert [e.at for e in await store.audit.list(limit=3)] == [0, 1, 2]
    with pytest.raises(ValueError, match="limit"):
        await store.audit.list(limit=0)


async def test_iterate_yields_every_event_across_pages(store: Store) -> None:
    ids = await _record_many(store, 23)
    seen = [event.id async for event in store.audit.iterate(page_size=5)]
    assert seen == ids


async def test_iterate_with_an_exact_multiple_of_the_page_size(store: Store) -> None:
    ids = await _record_many(store, 10)
    assert [event.id async for event in store.audit.iterate(page_size=5)] == ids


async def test_iterate_of_an_empty_trail_yields_nothing(store: Store) -> None:
    assert [event async for event in store.audit.iterate()] == []


async def test_iterate_honours_the_time_window(store: Store) -> None:
    await _record_many(store, 20)
    window = [event.at async for event in store.audit.iterate(since=5.0, until=15.0, page_size=3)]
    assert window == [float(n) for n in range(5, 15)]


async def test_the_store_stays_writable_while_an_export_is_paused(store: Store) -> None:
    await _record_many(store, 6)
    exported: list[str] = []
    async for event in store.audit.iterate(page_size=2):
        exported.append(event.kind)
        if len(exported) == 1:
            # Would deadlock if iterate held the lock between pages.
            await store.audit.record(Sample(thing="during-export"), at=100.0)
    assert exported[-1] == "test.sample"
    assert len(exported) == 7


async def test_iterate_refuses_an_empty_page(store: Store) -> None:
    with pytest.raises(ValueError, match="page_size"):
        [event async for event in store.audit.iterate(page_size=0)]


async def test_a_change_event_is_written_in_the_callers_transaction(store: Store) -> None:
    entry = AuditEntry(
        actor="ops", client_addr="203.0.113.7", detail={"request_id": "r", "value": 0}
    )
    async with store.db.transaction() as conn:
        await record_change(conn, entry, Sample(thing="s", value=1), at=1.0)

    async def failing_change() -> None:
        async with store.db.transaction() as conn:
            await record_change(conn, entry, Even(), at=2.0)
            raise RuntimeError("the change failed")

    with pytest.raises(RuntimeError):
        await failing_change()
    (event,) = await store.audit.list()
    assert (event.kind, event.actor, event.subject, event.client_addr) == (
        "test.sample",
        "ops",
        "s",
        "203.0.113.7",
    )
    assert event.detail == {"request_id": "r", "value": 1}  # the change's own detail wins


async def test_events_are_filtered_by_actor_subject_and_organisation_and_paged_newest_first(
    store: Store,
) -> None:
    ids = [
        await store.audit.record(Sample(thing=f"usr_{n % 3}", org_id=f"org_{n % 2}"), at=n,
                                 actor=f"adm_{n % 2}")
        for n in range(12)
    ]  # fmt: skip
    by_subject = await store.audit.list(filters=AuditFilter(subject="usr_1"))
    assert [e.id for e in by_subject] == ids[1::3]
    both = AuditFilter(actor="adm_1", org_id="org_1", since=3, until=11)
    assert [e.at for e in await store.audit.list(filters=both)] == [3, 5, 7, 9]
    first = await store.audit.newest(NO_FILTER, limit=5)
    assert [e.id for e in first] == ids[::-1][:5]
    second = await store.audit.newest(NO_FILTER, before_id=first[-1].id, limit=5)
    assert [e.id for e in second] == ids[::-1][5:10]
    assert [e.id for e in await store.audit.newest(AuditFilter(subject="usr_2"))] == ids[2::3][::-1]
    streamed = [e.id async for e in store.audit.iterate(filters=AuditFilter(kind="test.odd"))]
    assert streamed == []
    streamed = [e.id async for e in store.audit.iterate(filters=both, page_size=2)]
    assert streamed == ids[3:10:2]
    assert await store.audit.latest_for(subject="usr_1", kind="test.sample") == 10
    assert await store.audit.latest_for(subject="usr_9", kind="test.sample") is None
    with pytest.raises(ValueError, match="limit"):
        await store.audit.newest(NO_FILTER, limit=0)
