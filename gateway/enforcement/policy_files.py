"""Policies and tenant facts between files, the store and the decision: load, apply, read back.

This is where policy files are read; gateway.policy itself does no I/O.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from gateway.errors import NotFoundError
from gateway.policy import (
    Facts,
    Policy,
    PolicyError,
    TenantFact,
    parse_policy,
    parse_policy_text,
    policy_to_document,
)
from gateway.store import AuditEntry, PolicyChange, Store, policy_document
from gateway.store.records import Tenant

log = logging.getLogger(__name__)

Action = Literal["created", "replaced", "unchanged"]


@dataclass(frozen=True, kw_only=True)
class Applied:
    policy_id: str
    action: Action
    version: int  # the store's revision after applying


def load_policy_file(path: str | Path) -> Policy:
    """Read and check a TOML policy file; each problem starts with ``<file>:<line>:``."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise PolicyError([f"{path}: cannot read the file: {exc.strerror or exc}"]) from exc
    except UnicodeDecodeError as exc:
        raise PolicyError([f"{path}: not UTF-8 text: {exc.reason}"]) from exc
    return parse_policy_text(text, str(path))


def policy_files(path: str | Path) -> list[Path]:
    """The file itself, or every ``*.toml`` in a folder, in name order."""
    path = Path(path)
    files = sorted(path.glob("*.toml")) if path.is_dir() else [path]
    if not files:
        raise PolicyError([f"{path}: no *.toml policy files here"])
    return files


def duplicate_ids(loaded: Sequence[tuple[Path, Policy]]) -> list[str]:
    """A problem for each policy whose id an earlier file already uses."""
    problems = []
    seen: dict[str, Path] = {}
    for file, policy in loaded:
        if policy.id in seen:
            problems.append(f"{file}: id {policy.id!r} is also used by {seen[policy.id]}")
        else:
            seen[policy.id] = file
    return problems


def load_policy_path(path: str | Path) -> list[Policy]:
    """One policy file, or every ``*.toml`` in a folder; every problem of every file at once."""
    loaded: list[tuple[Path, Policy]] = []  # each policy with its own file, as they load
    problems: list[str] = []
    for file in policy_files(path):
        try:
            loaded.append((file, load_policy_file(file)))
        except PolicyError as exc:
            problems.extend(exc.problems)
    problems += duplicate_ids(loaded)
    if problems:
        raise PolicyError(problems)
    return [policy for _, policy in loaded]


async def create_policy(
    store: Store, policy: Policy, *, now: float, audit: AuditEntry
) -> PolicyChange:
    """Store a new policy, audited as ``policy.created``; ConflictError if its id is taken.

    The one way a policy is created, by the admin API or from files.
    """
    return await store.policies.create(
        policy_id=policy.id,
        document=policy_to_document(policy),
        enabled=policy.enabled,
        now=now,
        by=audit.actor,
        audit=audit,
    )


async def replace_policy(
    store: Store, policy: Policy, *, expected_version: int | None, now: float, audit: AuditEntry
) -> PolicyChange:
    """Replace a stored policy, audited as ``policy.replaced`` if anything changed.

    The one way a policy is replaced, by the admin API or from files. NotFoundError if there is
    no such policy; PreconditionFailedError if ``expected_version`` is given and stale.
    """
    return await store.policies.replace(
        policy_id=policy.id,
        document=policy_to_document(policy),
        enabled=policy.enabled,
        expected_version=expected_version,
        now=now,
        by=audit.actor,
        audit=audit,
    )


async def apply_policies(
    store: Store, policies: Sequence[Policy], *, now: float, by: str
) -> list[Applied]:
    """Create or replace each policy; applying the same files twice changes nothing.

    Each change is audited in its own transaction, as the admin API's are, with the documents
    before and after (the stored enabled flag in them); an unchanged policy records no event.
    """
    audit = AuditEntry(actor=by)
    results = []
    for policy in policies:
        try:
            before = await store.policies.get(policy.id)
        except NotFoundError:
            change = await create_policy(store, policy, now=now, audit=audit)
            action: Action = "created"
        else:
            change = await replace_policy(
                store, policy, expected_version=before.version, now=now, audit=audit
            )
            action = "replaced" if change.changed else "unchanged"
        results.append(Applied(policy_id=policy.id, action=action, version=change.after.version))
    return results


@dataclass(frozen=True, kw_only=True)
class StoredRead:
    """A stored policy as enforcement reads it.

    ``policy`` is what is enforced for the record: its own document parsed, or, when that no
    longer parses, the version in force (None if there is none, or the record is disabled).
    ``problems`` says why the stored document does not parse; empty when it does.
    """

    id: str
    enabled: bool
    policy: Policy | None
    problems: tuple[str, ...] = ()


async def read_stored(
    store: Store, in_force: Mapping[str, Policy] | None = None, *, strict: bool = False
) -> list[StoredRead]:
    """Every stored policy, with its stored enabled flag: the one way stored policies are read.

    A broken record (one that no longer parses, after an upgrade say) must not switch
    enforcement off silently: if it is disabled it is simply left out; if it is enabled its
    version in ``in_force`` stands in for it, and with none there, ``strict`` raises
    PolicyError (a gateway refuses to start rather than enforce less than it should).
    """
    found = []
    for stored in await store.policies.list():
        try:
            policy = parse_policy(policy_document(stored.document, stored.enabled))
        except PolicyError as exc:
            found.append(_broken(stored.id, stored.enabled, exc, in_force or {}, strict=strict))
        else:
            found.append(StoredRead(id=stored.id, enabled=stored.enabled, policy=policy))
    return found


def _broken(
    policy_id: str, enabled: bool, exc: PolicyError, in_force: Mapping[str, Policy], *, strict: bool
) -> StoredRead:
    problems = tuple(exc.problems)
    if not enabled:
        log.warning("stored policy %s no longer parses, and is disabled", policy_id)
        return StoredRead(id=policy_id, enabled=False, policy=None, problems=problems)
    kept = in_force.get(policy_id)
    if kept is None and strict:
        raise PolicyError(
            [f"stored policy {policy_id!r} no longer parses: {problem}" for problem in problems]
            + [
                f"apply a corrected file (xero-gateway policy apply FILE) for"
                f" {policy_id!r} before starting the gateway"
            ]
        ) from exc
    log.error(
        "stored policy %s no longer parses: %s; %s",
        policy_id,
        exc,
        "keeping the version in force" if kept else "it is NOT enforced",
    )
    return StoredRead(id=policy_id, enabled=True, policy=kept, problems=problems)


async def stored_policies(
    store: Store, in_force: Mapping[str, Policy] | None = None, *, strict: bool = False
) -> list[Policy]:
    """The policies enforced from the store (see :func:`read_stored`)."""
    return [
        read.policy
        for read in await read_stored(store, in_force, strict=strict)
        if read.policy is not None
    ]


def facts_by_org(tenants: Iterable[Tenant]) -> dict[str, Facts]:
    grouped: dict[str, list[TenantFact]] = {}
    for t in tenants:
        grouped.setdefault(t.org_id, []).append(
            TenantFact(tenant_id=t.tenant_id, country=t.country_code, active=t.active)
        )
    return {org: Facts(tenants=tuple(facts)) for org, facts in grouped.items()}
