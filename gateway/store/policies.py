"""Policies: versioned JSON documents with history, compare-and-swap writes and a set version."""

from __future__ import annotations

import builtins
import json
from collections.abc import Mapping
from typing import Any

from gateway.audit import (
    PolicyChanged,
    PolicyCreated,
    PolicyDeleted,
    PolicyDisabled,
    PolicyEnabled,
    PolicyReplaced,
)
from gateway.errors import ConflictError, NotFoundError, StoreError
from gateway.store.audit import record_change
from gateway.store.database import Database, Row, Transaction
from gateway.store.records import AuditEntry, PolicyChange, PolicyVersion, StoredPolicy

_SELECT = "SELECT id, version, enabled, document, updated_at, updated_by FROM policies"
# "by" is a reserved word in PostgreSQL, so it is quoted wherever it is named.
_SELECT_VERSION = (
    'SELECT policy_id, version, change, document, enabled, at, "by" FROM policy_versions'
)


# The audit event of each change (the names in POLICY_CHANGES).
AUDIT_EVENTS: dict[str, type[PolicyChanged]] = {
    "create": PolicyCreated,
    "replace": PolicyReplaced,
    "enable": PolicyEnabled,
    "disable": PolicyDisabled,
    "delete": PolicyDeleted,
}


class PreconditionFailedError(ConflictError):
    """A write named an expected version that is no longer the policy's current version."""


def canonical_json(document: object) -> str:
    """The one text a document is stored as: sorted keys, no spaces, no NaN or infinities."""
    if not isinstance(document, Mapping):
        raise StoreError(f"a policy document must be a JSON object, not {type(document).__name__}")
    if not all(isinstance(key, str) for key in document):
        raise StoreError("a policy document's keys must all be strings")
    try:
        return json.dumps(
            dict(document),
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
            allow_nan=False,
        )
    except (TypeError, ValueError) as exc:
        raise StoreError(f"a policy document is not JSON-serialisable: {exc}") from exc


def policy_document(document: Mapping[str, Any], enabled: bool) -> dict[str, Any]:
    """The document with the stored enabled flag in it: how a policy is read and audited.

    Enabling or disabling keeps the stored document as it was, so its own ``enabled`` can be
    stale; the flag is the truth, and a document read this way can be sent back unchanged.
    """
    return {**document, "enabled": enabled}


def _document(text: str, where: str) -> dict[str, Any]:
    document = json.loads(text)
    if not isinstance(document, dict):
        raise StoreError(f"{where} has a document that is not a JSON object")
    return document


def _policy(row: Row) -> StoredPolicy:
    return StoredPolicy(
        id=row["id"],
        version=row["version"],
        enabled=bool(row["enabled"]),
        document=_document(row["document"], f"policy {row['id']!r}"),
        updated_at=row["updated_at"],
        updated_by=row["updated_by"],
    )


def _version(row: Row) -> PolicyVersion:
    return PolicyVersion(
        policy_id=row["policy_id"],
        version=row["version"],
        change=row["change"],
        document=_document(
            row["document"], f"version {row['version']} of policy {row['policy_id']!r}"
        ),
        enabled=bool(row["enabled"]),
        at=row["at"],
        by=row["by"],
    )


async def _current(tx: Transaction, policy_id: str, expected_version: int | None) -> Row:
    """The policy's row inside the caller's transaction, checked against ``expected_version``."""
    row = await tx.fetch_one(f"{_SELECT} WHERE id = :id", {"id": policy_id})
    if row is None:
        raise NotFoundError(f"no policy has id {policy_id!r}")
    if expected_version is not None and row["version"] != expected_version:
        raise PreconditionFailedError(
            f"policy {policy_id!r} is at version {row['version']}, not {expected_version}; "
            "read it again and reapply the change"
        )
    return row


async def _log(
    tx: Transaction,
    *,
    policy_id: str,
    version: int,
    change: str,
    document: str,
    enabled: bool,
    now: float,
    by: str,
) -> None:
    """Append a history entry and bump the policy-set version, in the caller's transaction."""
    await tx.execute(
        'INSERT INTO policy_versions (policy_id, version, change, document, enabled, at, "by")'
        " VALUES (:policy_id, :version, :change, :document, :enabled, :now, :by)",
        {
            "policy_id": policy_id,
            "version": version,
            "change": change,
            "document": document,
            "enabled": int(enabled),
            "now": now,
            "by": by,
        },
    )
    await tx.execute("UPDATE policy_set SET version = version + 1 WHERE id = 1")


async def _audit(
    tx: Transaction,
    audit: AuditEntry | None,
    *,
    change: str,
    policy_id: str,
    before: StoredPolicy | None,
    after: StoredPolicy | None,
    version: int,
    now: float,
) -> None:
    """The change's audit event, in its transaction: the documents as read, before and after."""
    if audit is None:
        return
    event = AUDIT_EVENTS[change](
        policy_id=policy_id,
        before=policy_document(before.document, before.enabled) if before else None,
        after=policy_document(after.document, after.enabled) if after else None,
        version=version,
    )
    await record_change(tx, audit, event, at=now)


async def _update(
    tx: Transaction,
    row: Row,
    *,
    change: str,
    document: str,
    enabled: bool,
    now: float,
    by: str,
    audit: AuditEntry | None,
) -> PolicyChange:
    """Move the policy in ``row`` to its next version, only if it is still at ``row``'s."""
    policy_id: str = row["id"]
    version = row["version"] + 1
    changed = await tx.execute(
        "UPDATE policies SET version = :version, enabled = :enabled, document = :document,"
        " updated_at = :now, updated_by = :by WHERE id = :id AND version = :old_version",
        {
            "version": version,
            "enabled": int(enabled),
            "document": document,
            "now": now,
            "by": by,
            "id": policy_id,
            "old_version": row["version"],
        },
    )
    if changed != 1:  # pragma: no cover - BEGIN IMMEDIATE already rules this out
        raise PreconditionFailedError(f"policy {policy_id!r} changed while it was being written")
    return await _record(
        tx,
        before=_policy(row),
        policy_id=policy_id,
        version=version,
        change=change,
        document=document,
        enabled=enabled,
        now=now,
        by=by,
        audit=audit,
    )


async def _record(
    tx: Transaction,
    *,
    before: StoredPolicy | None,
    policy_id: str,
    version: int,
    change: str,
    document: str,
    enabled: bool,
    now: float,
    by: str,
    audit: AuditEntry | None,
) -> PolicyChange:
    """The history row and the audit event of a change just written, in its transaction."""
    await _log(
        tx,
        policy_id=policy_id,
        version=version,
        change=change,
        document=document,
        enabled=enabled,
        now=now,
        by=by,
    )
    after = StoredPolicy(
        id=policy_id,
        version=version,
        enabled=enabled,
        document=_document(document, f"policy {policy_id!r}"),
        updated_at=now,
        updated_by=by,
    )
    await _audit(
        tx,
        audit,
        change=change,
        policy_id=policy_id,
        before=before,
        after=after,
        version=version,
        now=now,
    )
    return PolicyChange(before=before, after=after)


class PolicyRepository:
    """Policies and their history.

    Every change (create, replace, enable, disable, delete) gives the policy its next version,
    appends a ``policy_versions`` entry naming the change, and adds one to the policy-set
    version, all in one transaction; a write that changes nothing does none of these.

    Writes that take ``expected_version`` are compare-and-swap: if it is given and is not the
    policy's current version, :class:`PreconditionFailedError` is raised and nothing is written.
    The precondition is checked before anything else, so a stale version fails even when the
    write would have been a no-op.

    History outlives the policy. Creating a policy again after it was deleted continues its
    version numbers (a policy deleted at version 4 is re-created at version 5), so a
    ``(policy_id, version)`` pair names one state for good and caches never see a number reused.

    Every write takes an optional ``audit``: given, the change's audit event (kind
    ``policy.created``, ``policy.replaced``... with the ``before`` and ``after`` documents the
    transaction saw, and the new ``version``) is written in the change's own transaction, so a
    change is never stored unaudited; a write that changes nothing records no event.
    """

    def __init__(self, db: Database) -> None:
        self._db = db

    async def list(self) -> builtins.list[StoredPolicy]:
        """Every current policy, by id."""
        rows = await self._db.fetch_all(f"{_SELECT} ORDER BY id")
        return [_policy(row) for row in rows]

    async def get(self, policy_id: str) -> StoredPolicy:
        """The policy with this id; NotFoundError if there is none (or it was deleted)."""
        row = await self._db.fetch_one(f"{_SELECT} WHERE id = :id", {"id": policy_id})
        if row is None:
            raise NotFoundError(f"no policy has id {policy_id!r}")
        return _policy(row)

    async def set_version(self) -> int:
        """The policy-set version: 0 for a new database, one more after every policy change."""
        row = await self._db.fetch_one("SELECT version FROM policy_set WHERE id = 1")
        if row is None:  # pragma: no cover - seeded by the migration
            raise StoreError("the policy-set version is missing from the database")
        return int(row["version"])

    async def history(self, policy_id: str) -> builtins.list[PolicyVersion]:
        """Every version of the policy, oldest first, deleted or not; empty if it never existed."""
        rows = await self._db.fetch_all(
            f"{_SELECT_VERSION} WHERE policy_id = :id ORDER BY version", {"id": policy_id}
        )
        return [_version(row) for row in rows]

    async def version(self, policy_id: str, version: int) -> PolicyVersion:
        """One version of the policy; NotFoundError if it has no such version."""
        row = await self._db.fetch_one(
            f"{_SELECT_VERSION} WHERE policy_id = :id AND version = :version",
            {"id": policy_id, "version": version},
        )
        if row is None:
            raise NotFoundError(f"policy {policy_id!r} has no version {version}")
        return _version(row)

    async def create(
        self,
        *,
        policy_id: str,
        document: Mapping[str, Any],
        enabled: bool,
        now: float,
        by: str,
        audit: AuditEntry | None = None,
    ) -> PolicyChange:
        """Store a new policy; ConflictError if one with this id exists.

        Its version is 1, or one more than its last version if it was deleted before.
        """
        text = canonical_json(document)
        async with self._db.transaction() as tx:
            if await tx.fetch_one(
                "SELECT 1 AS found FROM policies WHERE id = :id", {"id": policy_id}
            ):
                raise ConflictError(f"a policy with id {policy_id!r} already exists")
            last = await tx.fetch_one(
                "SELECT coalesce(max(version), 0) AS version FROM policy_versions"
                " WHERE policy_id = :id",
                {"id": policy_id},
            )
            version = (int(last["version"]) if last is not None else 0) + 1
            await tx.execute(
                "INSERT INTO policies (id, version, enabled, document, updated_at, updated_by)"
                " VALUES (:id, :version, :enabled, :document, :now, :by)",
                {
                    "id": policy_id,
                    "version": version,
                    "enabled": int(enabled),
                    "document": text,
                    "now": now,
                    "by": by,
                },
            )
            return await _record(
                tx,
                before=None,
                policy_id=policy_id,
                version=version,
                change="create",
                document=text,
                enabled=enabled,
                now=now,
                by=by,
                audit=audit,
            )

    async def replace(
        self,
        *,
        policy_id: str,
        document: Mapping[str, Any],
        enabled: bool,
        expected_version: int | None,
        now: float,
        by: str,
        audit: AuditEntry | None = None,
    ) -> PolicyChange:
        """Replace a policy's document and enabled flag; return the policy before and after.

        NotFoundError if there is no such policy; PreconditionFailedError if
        ``expected_version`` is given and stale. An identical document and flag change nothing
        (``after`` is ``before``), so applying the same policy twice is harmless.
        """
        text = canonical_json(document)
        async with self._db.transaction() as tx:
            row = await _current(tx, policy_id, expected_version)
            if row["document"] == text and bool(row["enabled"]) == enabled:
                current = _policy(row)
                return PolicyChange(before=current, after=current)
            return await _update(
                tx,
                row,
                change="replace",
                document=text,
                enabled=enabled,
                now=now,
                by=by,
                audit=audit,
            )

    async def set_enabled(
        self,
        *,
        policy_id: str,
        enabled: bool,
        expected_version: int | None,
        now: float,
        by: str,
        audit: AuditEntry | None = None,
    ) -> PolicyChange:
        """Enable or disable a policy, keeping its document; return it before and after.

        NotFoundError if there is no such policy; PreconditionFailedError if
        ``expected_version`` is given and stale. Enabling an enabled policy (or disabling a
        disabled one) changes nothing (``after`` is ``before``).
        """
        async with self._db.transaction() as tx:
            row = await _current(tx, policy_id, expected_version)
            if bool(row["enabled"]) == enabled:
                current = _policy(row)
                return PolicyChange(before=current, after=current)
            return await _update(
                tx,
                row,
                change="enable" if enabled else "disable",
                document=row["document"],
                enabled=enabled,
                now=now,
                by=by,
                audit=audit,
            )

    async def delete(
        self,
        *,
        policy_id: str,
        expected_version: int | None,
        now: float,
        by: str,
        audit: AuditEntry | None = None,
    ) -> PolicyVersion:
        """Delete a policy, keeping its history; return the history entry of the deletion.

        The entry records the document and flag the policy had when it was deleted.
        NotFoundError if there is no such policy; PreconditionFailedError if
        ``expected_version`` is given and stale.
        """
        async with self._db.transaction() as tx:
            row = await _current(tx, policy_id, expected_version)
            changed = await tx.execute(
                "DELETE FROM policies WHERE id = :id AND version = :version",
                {"id": policy_id, "version": row["version"]},
            )
            if changed != 1:  # pragma: no cover - BEGIN IMMEDIATE already rules this out
                raise PreconditionFailedError(
                    f"policy {policy_id!r} changed while it was being deleted"
                )
            entry = PolicyVersion(
                policy_id=policy_id,
                version=row["version"] + 1,
                change="delete",
                document=_document(row["document"], f"policy {policy_id!r}"),
                enabled=bool(row["enabled"]),
                at=now,
                by=by,
            )
            await _log(
                tx,
                policy_id=policy_id,
                version=entry.version,
                change="delete",
                document=row["document"],
                enabled=entry.enabled,
                now=now,
                by=by,
            )
            await _audit(
                tx,
                audit,
                change="delete",
                policy_id=policy_id,
                before=_policy(row),
                after=None,
                version=entry.version,
                now=now,
            )
        return entry
