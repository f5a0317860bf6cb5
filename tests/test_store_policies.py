"""Tests for the policy repository (versions, history, compare-and-swap) and migration 2."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import ConflictError, NotFoundError, StoreError
from gateway.store import (
    LATEST_VERSION,
    MIGRATIONS,
    AuditEntry,
    PolicyChange,
    PolicyVersion,
    PreconditionFailedError,
    SqliteDatabase,
    Store,
    StoredPolicy,
)

DOC: dict[str, Any] = {"rule": "mfa", "apply_to": ["member"], "grace_days": 7}
OTHER: dict[str, Any] = {"rule": "mfa", "apply_to": ["member", "principal"], "grace_days": 0}


async def _create(store: Store, policy_id: str = "pol-mfa", now: float = 10.0) -> StoredPolicy:
    change = await store.policies.create(
        policy_id=policy_id, document=DOC, enabled=True, now=now, by="admin:ava"
    )
    return change.after


async def _row_counts(store: Store) -> tuple[int, int]:
    versions = await store.db.fetch_one("SELECT count(*) AS n FROM policy_versions")
    policies = await store.db.fetch_one("SELECT count(*) AS n FROM policies")
    assert versions is not None
    assert policies is not None
    return int(policies["n"]), int(versions["n"])


# --- create, read, list ----------------------------------------------------------------------


async def test_a_new_database_has_no_policies_and_set_version_zero(store: Store) -> None:
    assert await store.policies.list() == []
    assert await store.policies.set_version() == 0


async def test_a_created_policy_is_at_version_one_and_can_be_read_back(store: Store) -> None:
    created = await _create(store)
    assert created == StoredPolicy(
        id="pol-mfa", version=1, enabled=True, document=DOC, updated_at=10.0, updated_by="admin:ava"
    )
    assert await store.policies.get("pol-mfa") == created
    assert await store.policies.list() == [created]
    assert await store.policies.history("pol-mfa") == [
        PolicyVersion(
            policy_id="pol-mfa",
            version=1,
            change="create",
            document=DOC,
            enabled=True,
            at=10.0,
            by="admin:ava",
        )
    ]
    assert await store.policies.set_version() == 1


async def test_policies_are_listed_by_id(store: Store) -> None:
    await _create(store, "pol-b")
    await _create(store, "pol-a")
    assert [p.id for p in await store.policies.list()] == ["pol-a", "pol-b"]


async def test_creating_an_existing_policy_is_a_conflict_and_writes_nothing(store: Store) -> None:
    await _create(store)
    with pytest.raises(ConflictError, match="pol-mfa"):
        await _create(store)
    assert await store.policies.set_version() == 1
    assert await _row_counts(store) == (1, 1)


async def test_unknown_policies_and_versions_raise_not_found(store: Store) -> None:
    with pytest.raises(NotFoundError, match="pol-none"):
        await store.policies.get("pol-none")
    await _create(store)
    with pytest.raises(NotFoundError, match="no version 2"):
        await store.policies.version("pol-mfa", 2)
    assert await store.policies.history("pol-none") == []


async def test_documents_are_stored_as_canonical_json(store: Store) -> None:
    await store.policies.create(
        policy_id="p", document={"b": 1, "a": {"d": 2, "c": "é"}}, enabled=False, now=1, by="x"
    )
    row = await store.db.fetch_one("SELECT document FROM policies WHERE id = 'p'")
    assert row is not None
    assert row["document"] == '{"a":{"c":"é","d":2},"b":1}'


async def test_a_document_that_is_not_a_json_object_is_refused(store: Store) -> None:
    bad: Any
    for bad in ([1, 2], {"x": float("nan")}, {"x": object()}, {1: "int key"}):
        with pytest.raises(StoreError):
            await store.policies.create(policy_id="p", document=bad, enabled=True, now=1, by="x")
    assert await store.policies.set_version() == 0


# --- changes, versions and history ------------------------------------------------------------


async def test_every_kind_of_change_adds_a_version_and_a_history_entry(store: Store) -> None:
    await _create(store, now=1.0)
    replaced = (
        await store.policies.replace(
            policy_id="pol-mfa", document=OTHER, enabled=True, expected_version=1, now=2.0, by="b"
        )
    ).after
    assert (replaced.version, replaced.document, replaced.updated_by) == (2, OTHER, "b")
    disabled = (
        await store.policies.set_enabled(
            policy_id="pol-mfa", enabled=False, expected_version=2, now=3.0, by="c"
        )
    ).after
    assert (disabled.version, disabled.enabled, disabled.document) == (3, False, OTHER)
    enabled = (
        await store.policies.set_enabled(
            policy_id="pol-mfa", enabled=True, expected_version=None, now=4.0, by="d"
        )
    ).after
    assert (enabled.version, enabled.enabled) == (4, True)
    assert await store.policies.get("pol-mfa") == enabled
    deleted = await store.policies.delete(policy_id="pol-mfa", expected_version=4, now=5.0, by="e")
    assert deleted == PolicyVersion(
        policy_id="pol-mfa",
        version=5,
        change="delete",
        document=OTHER,
        enabled=True,
        at=5.0,
        by="e",
    )
    history = await store.policies.history("pol-mfa")
    assert [(v.version, v.change, v.enabled, v.at, v.by) for v in history] == [
        (1, "create", True, 1.0, "admin:ava"),
        (2, "replace", True, 2.0, "b"),
        (3, "disable", False, 3.0, "c"),
        (4, "enable", True, 4.0, "d"),
        (5, "delete", True, 5.0, "e"),
    ]
    assert [v.document for v in history] == [DOC, OTHER, OTHER, OTHER, OTHER]
    assert await store.policies.version("pol-mfa", 3) == history[2]
    assert await store.policies.set_version() == 5


async def test_the_set_version_counts_changes_across_all_policies(store: Store) -> None:
    await _create(store, "pol-a")
    await _create(store, "pol-b")
    await store.policies.set_enabled(
        policy_id="pol-a", enabled=False, expected_version=None, now=2, by="x"
    )
    await store.policies.delete(policy_id="pol-b", expected_version=None, now=3, by="x")
    assert await store.policies.set_version() == 4


async def test_replacing_with_the_same_document_and_flag_changes_nothing(store: Store) -> None:
    created = await _create(store)
    change = await store.policies.replace(
        policy_id="pol-mfa",
        document=dict(reversed(list(DOC.items()))),  # same object, other key order
        enabled=True,
        expected_version=1,
        now=99.0,
        by="someone-else",
    )
    assert not change.changed
    same = change.after
    assert same == created
    assert await store.policies.set_version() == 1
    assert len(await store.policies.history("pol-mfa")) == 1


async def test_replacing_only_the_enabled_flag_is_a_change(store: Store) -> None:
    await _create(store)
    replaced = (
        await store.policies.replace(
            policy_id="pol-mfa", document=DOC, enabled=False, expected_version=None, now=2, by="x"
        )
    ).after
    assert (replaced.version, replaced.enabled) == (2, False)
    assert await store.policies.set_version() == 2


async def test_setting_the_flag_it_already_has_changes_nothing(store: Store) -> None:
    created = await _create(store)
    change = await store.policies.set_enabled(
        policy_id="pol-mfa", enabled=True, expected_version=1, now=2, by="x"
    )
    assert not change.changed
    same = change.after
    assert same == created
    assert await store.policies.set_version() == 1


async def test_changing_an_unknown_policy_raises_not_found(store: Store) -> None:
    with pytest.raises(NotFoundError):
        await store.policies.replace(
            policy_id="nope", document=DOC, enabled=True, expected_version=None, now=1, by="x"
        )
    with pytest.raises(NotFoundError):
        await store.policies.set_enabled(
            policy_id="nope", enabled=False, expected_version=None, now=1, by="x"
        )
    with pytest.raises(NotFoundError):
        await store.policies.delete(policy_id="nope", expected_version=None, now=1, by="x")
    assert await store.policies.set_version() == 0


# --- compare-and-swap -------------------------------------------------------------------------


async def test_a_stale_expected_version_fails_and_writes_nothing(store: Store) -> None:
    await _create(store)
    await store.policies.replace(
        policy_id="pol-mfa", document=OTHER, enabled=True, expected_version=1, now=2, by="x"
    )
    before = await store.policies.get("pol-mfa")
    with pytest.raises(PreconditionFailedError, match="at version 2, not 1"):
        await store.policies.replace(
            policy_id="pol-mfa", document=DOC, enabled=True, expected_version=1, now=3, by="y"
        )
    with pytest.raises(PreconditionFailedError):
        await store.policies.set_enabled(
            policy_id="pol-mfa", enabled=False, expected_version=1, now=3, by="y"
        )
    with pytest.raises(PreconditionFailedError):
        await store.policies.delete(policy_id="pol-mfa", expected_version=3, now=3, by="y")
    assert await store.policies.get("pol-mfa") == before
    assert await store.policies.set_version() == 2
    assert await _row_counts(store) == (1, 2)


async def test_a_stale_expected_version_fails_even_when_the_write_would_be_a_no_op(
    store: Store,
) -> None:
    await _create(store)
    await store.policies.replace(
        policy_id="pol-mfa", document=OTHER, enabled=True, expected_version=1, now=2, by="x"
    )
    with pytest.raises(PreconditionFailedError):
        await store.policies.replace(
            policy_id="pol-mfa", document=OTHER, enabled=True, expected_version=1, now=3, by="x"
        )


def test_a_failed_precondition_is_a_conflict() -> None:
    assert issubclass(PreconditionFailedError, ConflictError)


async def test_two_writers_on_one_store_with_the_same_expected_version_one_wins(
    store: Store,
) -> None:
    await _create(store)
    results = await asyncio.gather(
        *(
            store.policies.replace(
                policy_id="pol-mfa",
                document={"writer": n},
                enabled=True,
                expected_version=1,
                now=2,
                by=f"w{n}",
            )
            for n in range(10)
        ),
        return_exceptions=True,
    )
    winners = [r.after for r in results if isinstance(r, PolicyChange)]
    losers = [r for r in results if isinstance(r, PreconditionFailedError)]
    assert len(winners) == 1
    assert len(losers) == 9
    assert await store.policies.get("pol-mfa") == winners[0]
    assert winners[0].version == 2
    assert await store.policies.set_version() == 2


async def test_two_processes_with_the_same_expected_version_exactly_one_wins(
    tmp_path: Path,
) -> None:
    path = tmp_path / "gateway.sqlite3"
    first = await Store.open(path)
    second = await Store.open(path)
    try:
        await _create(first)
        results = await asyncio.gather(
            first.policies.replace(
                policy_id="pol-mfa",
                document={"w": 1},
                enabled=True,
                expected_version=1,
                now=2,
                by="first",
            ),
            second.policies.replace(
                policy_id="pol-mfa",
                document={"w": 2},
                enabled=True,
                expected_version=1,
                now=2,
                by="second",
            ),
            return_exceptions=True,
        )
        winners = [r.after for r in results if isinstance(r, PolicyChange)]
        assert len(winners) == 1
        assert sum(isinstance(r, PreconditionFailedError) for r in results) == 1
        assert await second.policies.get("pol-mfa") == winners[0]
        assert [v.version for v in await first.policies.history("pol-mfa")] == [1, 2]
        assert await first.policies.set_version() == 2
    finally:
        await second.close()
        await first.close()


# --- delete and re-create ---------------------------------------------------------------------


async def test_history_survives_delete(store: Store) -> None:
    await _create(store)
    await store.policies.delete(policy_id="pol-mfa", expected_version=1, now=2, by="x")
    with pytest.raises(NotFoundError):
        await store.policies.get("pol-mfa")
    assert await store.policies.list() == []
    assert [v.change for v in await store.policies.history("pol-mfa")] == ["create", "delete"]
    assert (await store.policies.version("pol-mfa", 1)).document == DOC


async def test_re_creating_a_deleted_policy_continues_its_version_numbers(store: Store) -> None:
    await _create(store)
    await store.policies.delete(policy_id="pol-mfa", expected_version=1, now=2, by="x")
    again = (
        await store.policies.create(
            policy_id="pol-mfa", document=OTHER, enabled=False, now=3, by="y"
        )
    ).after
    assert again.version == 3
    history = await store.policies.history("pol-mfa")
    assert [(v.version, v.change) for v in history] == [(1, "create"), (2, "delete"), (3, "create")]
    assert await store.policies.set_version() == 3


# --- audited writes ---------------------------------------------------------------------------

AUDIT = AuditEntry(actor="admin:ava", client_addr="203.0.113.7", detail={"request_id": "r-1"})


async def test_every_audited_change_records_its_event_with_before_and_after(store: Store) -> None:
    await store.policies.create(
        policy_id="pol-mfa", document=DOC, enabled=True, now=1, by="a", audit=AUDIT
    )
    await store.policies.replace(
        policy_id="pol-mfa",
        document=OTHER,
        enabled=True,
        expected_version=1,
        now=2,
        by="a",
        audit=AUDIT,
    )
    await store.policies.set_enabled(
        policy_id="pol-mfa", enabled=False, expected_version=2, now=3, by="a", audit=AUDIT
    )
    await store.policies.set_enabled(
        policy_id="pol-mfa", enabled=True, expected_version=3, now=4, by="a", audit=AUDIT
    )
    await store.policies.delete(policy_id="pol-mfa", expected_version=4, now=5, by="a", audit=AUDIT)
    events = await store.audit.list()
    assert [(e.kind, e.at, e.detail["version"]) for e in events] == [
        ("policy.created", 1, 1),
        ("policy.replaced", 2, 2),
        ("policy.disabled", 3, 3),
        ("policy.enabled", 4, 4),
        ("policy.deleted", 5, 5),
    ]
    for event in events:
        assert (event.actor, event.subject, event.client_addr) == (
            "admin:ava",
            "pol-mfa",
            "203.0.113.7",
        )
        assert event.detail["request_id"] == "r-1"
    created, replaced, disabled, enabled, deleted = (e.detail for e in events)
    assert created["before"] is None
    assert created["after"] == {**DOC, "enabled": True}
    assert (replaced["before"], replaced["after"]) == (
        {**DOC, "enabled": True},
        {**OTHER, "enabled": True},
    )
    # The stored flag is in the documents, before and after, whatever the document says.
    assert (disabled["before"]["enabled"], disabled["after"]["enabled"]) == (True, False)
    assert (enabled["before"]["enabled"], enabled["after"]["enabled"]) == (False, True)
    assert (deleted["before"], deleted["after"]) == ({**OTHER, "enabled": True}, None)


async def test_a_write_that_changes_nothing_records_no_event(store: Store) -> None:
    await store.policies.create(
        policy_id="pol-mfa", document=DOC, enabled=True, now=1, by="a", audit=AUDIT
    )
    same = await store.policies.replace(
        policy_id="pol-mfa",
        document=DOC,
        enabled=True,
        expected_version=1,
        now=2,
        by="a",
        audit=AUDIT,
    )
    flag = await store.policies.set_enabled(
        policy_id="pol-mfa", enabled=True, expected_version=None, now=3, by="a", audit=AUDIT
    )
    assert not same.changed
    assert not flag.changed
    assert same.before == same.after
    assert [e.kind for e in await store.audit.list()] == ["policy.created"]


async def test_the_change_reports_the_before_its_transaction_saw(store: Store) -> None:
    await _create(store)
    await store.policies.replace(
        policy_id="pol-mfa", document=OTHER, enabled=True, expected_version=None, now=2, by="x"
    )
    change = await store.policies.set_enabled(
        policy_id="pol-mfa", enabled=False, expected_version=None, now=3, by="y", audit=AUDIT
    )
    assert change.changed
    assert change.before is not None
    assert (change.before.version, change.before.document) == (2, OTHER)
    assert (change.after.version, change.after.enabled) == (3, False)
    (event,) = await store.audit.list()
    assert event.detail["before"] == {**OTHER, "enabled": True}


@pytest.mark.parametrize("write", ["create", "replace", "set_enabled", "delete"])
async def test_a_change_whose_audit_event_cannot_be_written_is_not_made(
    store: Store, write: str
) -> None:
    await _create(store, "pol-mfa")
    unwritable = AuditEntry(actor="x", detail={"not json": object()})
    before = (await store.policies.set_version(), await _row_counts(store))
    writes: dict[str, Callable[[], Awaitable[object]]] = {
        "create": lambda: store.policies.create(
            policy_id="pol-new", document=DOC, enabled=True, now=2, by="x", audit=unwritable
        ),
        "replace": lambda: store.policies.replace(
            policy_id="pol-mfa",
            document=OTHER,
            enabled=True,
            expected_version=1,
            now=2,
            by="x",
            audit=unwritable,
        ),
        "set_enabled": lambda: store.policies.set_enabled(
            policy_id="pol-mfa", enabled=False, expected_version=1, now=2, by="x", audit=unwritable
        ),
        "delete": lambda: store.policies.delete(
            policy_id="pol-mfa", expected_version=1, now=2, by="x", audit=unwritable
        ),
    }
    with pytest.raises(StoreError, match="not JSON-serialisable"):
        await writes[write]()
    assert (await store.policies.set_version(), await _row_counts(store)) == before
    assert [p.id for p in await store.policies.list()] == ["pol-mfa"]
    assert (await store.policies.get("pol-mfa")).version == 1
    assert await store.audit.list() == []


# --- migration 2 ------------------------------------------------------------------------------


async def test_migration_2_applies_to_a_version_1_database_that_has_data(tmp_path: Path) -> None:
    path = tmp_path / "gateway.sqlite3"
    old = await SqliteDatabase.open(path, migrations=MIGRATIONS[:1])
    async with old.transaction() as tx:
        await tx.execute(
            "INSERT INTO organisations (id, name, created_at) VALUES ('org_old', 'Old Co', 1)"
        )
        await tx.execute(
            "INSERT INTO users (id, org_id, email, display_name, role, password_hash,"
            " created_at) VALUES ('usr_old', 'org_old', 'old@example.com', 'Old', 'member',"
            " 'h', 1)"
        )
    await old.close()
    assert LATEST_VERSION >= 2
    async with await Store.open(path) as store:
        assert await store.db.schema_version() == LATEST_VERSION
        assert (await store.users.get("usr_old")).org_id == "org_old"
        assert await store.policies.set_version() == 0
        assert await store.tenants.facts_version() == 0
        await store.tenants.link(
            org_id="org_old", tenant_id="xt-1", name="Old Co Pty Ltd", country_code="AU", now=2
        )
        assert await store.dismissals.record("usr_old", "mfa", 2, limit=None) == 1
        await _create(store)
        assert await store.policies.set_version() == 1
