"""Tests for policies between files and the store: loading files and folders, applying them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from gateway.enforcement.policy_files import (
    Applied,
    apply_policies,
    create_policy,
    load_policy_path,
    replace_policy,
)
from gateway.errors import ConflictError
from gateway.policy import Policy, PolicyError, policy_to_document
from gateway.store import AuditEntry, Store

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "policies"


def shipped() -> Policy:
    (policy,) = load_policy_path(SHIPPED)
    return policy


# --- applying ---------------------------------------------------------------------------------


async def test_applying_audits_each_change_with_the_stored_flag_before_and_after(
    store: Store,
) -> None:
    policy = shipped()
    assert await apply_policies(store, [policy], now=1, by="cli") == [
        Applied(policy_id=policy.id, action="created", version=1)
    ]
    assert await apply_policies(store, [policy], now=2, by="cli") == [
        Applied(policy_id=policy.id, action="unchanged", version=1)
    ]
    # Disabled since (the document keeps "enabled": true); applying the file enables it again.
    await store.policies.set_enabled(
        policy_id=policy.id, enabled=False, expected_version=1, now=3, by="admin"
    )
    assert await apply_policies(store, [policy], now=4, by="cli") == [
        Applied(policy_id=policy.id, action="replaced", version=3)
    ]
    events = await store.audit.list()
    assert [(e.kind, e.actor, e.subject, e.at) for e in events] == [
        ("policy.created", "cli", policy.id, 1),
        ("policy.replaced", "cli", policy.id, 4),
    ]
    created, replaced = (e.detail for e in events)
    document = policy_to_document(policy)
    assert created == {"before": None, "after": document, "version": 1}
    assert replaced == {
        "before": {**document, "enabled": False},
        "after": document,
        "version": 3,
    }


async def test_create_and_replace_are_the_paths_the_admin_api_takes(store: Store) -> None:
    policy = shipped()
    who = AuditEntry(actor="tok_1 (ci)", client_addr="127.0.0.1", detail={"request_id": "r"})
    created = await create_policy(store, policy, now=1, audit=who)
    with pytest.raises(ConflictError):
        await create_policy(store, policy, now=2, audit=who)
    changed = dataclasses.replace(policy, description="Changed.")
    replaced = await replace_policy(store, changed, expected_version=1, now=3, audit=who)
    same = await replace_policy(store, changed, expected_version=2, now=4, audit=who)
    assert (created.changed, replaced.changed, same.changed) == (True, True, False)
    assert replaced.before == created.after
    assert (replaced.after.version, replaced.after.updated_by) == (2, "tok_1 (ci)")
    events = await store.audit.list()
    assert [e.kind for e in events] == ["policy.created", "policy.replaced"]
    for event in events:
        assert (event.actor, event.client_addr, event.detail["request_id"]) == (
            "tok_1 (ci)",
            "127.0.0.1",
            "r",
        )
    assert events[1].detail["after"]["description"] == "Changed."


# --- loading ----------------------------------------------------------------------------------


def test_a_folder_loads_every_policy_file_in_name_order(tmp_path: Path) -> None:
    text = (SHIPPED / "au-ato-2fa.toml").read_text()
    (tmp_path / "b.toml").write_text(text.replace('id = "au-ato-2fa"', 'id = "b-2fa"'))
    (tmp_path / "a.toml").write_text(text.replace('id = "au-ato-2fa"', 'id = "a-2fa"'))
    (tmp_path / "notes.txt").write_text("not a policy")
    assert [p.id for p in load_policy_path(tmp_path)] == ["a-2fa", "b-2fa"]


def test_a_duplicate_id_names_its_own_files_even_after_a_file_that_failed(
    tmp_path: Path,
) -> None:
    text = (SHIPPED / "au-ato-2fa.toml").read_text()
    broken, first, second = tmp_path / "a.toml", tmp_path / "b.toml", tmp_path / "c.toml"
    broken.write_text(text.replace("[methods]", "[method]"))
    first.write_text(text)
    second.write_text(text)
    with pytest.raises(PolicyError) as failed:
        load_policy_path(tmp_path)
    problems = failed.value.problems
    assert all(p.startswith(f"{broken}:") for p in problems[:-1])
    assert problems[-1] == f"{second}: id 'au-ato-2fa' is also used by {first}"


def test_an_id_used_three_times_names_the_first_file_each_time(tmp_path: Path) -> None:
    text = (SHIPPED / "au-ato-2fa.toml").read_text()
    files = [tmp_path / f"{name}.toml" for name in "abc"]
    for file in files:
        file.write_text(text)
    with pytest.raises(PolicyError) as failed:
        load_policy_path(tmp_path)
    assert failed.value.problems == [
        f"{files[1]}: id 'au-ato-2fa' is also used by {files[0]}",
        f"{files[2]}: id 'au-ato-2fa' is also used by {files[0]}",
    ]


def test_an_empty_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"no \*\.toml policy files here"):
        load_policy_path(tmp_path)
