"""Service keys: an organisation's background jobs' keys, stored by keyed hash (hashing is the
caller's job), revocable, with their last use."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.errors import NotFoundError, StoreError
from gateway.store.database import Database, Row
from gateway.store.records import new_id

# The hash is deliberately not selected: it never leaves the store.
_SELECT = (
    "SELECT id, org_id, name, created_at, created_by, revoked_at, last_used_at FROM service_keys"
)


@dataclass(frozen=True, kw_only=True, slots=True)
class ServiceKey:
    id: str
    org_id: str
    name: str
    created_at: float
    created_by: str
    revoked_at: float | None
    last_used_at: float | None


def _key(row: Row) -> ServiceKey:
    return ServiceKey(
        id=row["id"],
        org_id=row["org_id"],
        name=row["name"],
        created_at=row["created_at"],
        created_by=row["created_by"],
        revoked_at=row["revoked_at"],
        last_used_at=row["last_used_at"],
    )


class ServiceKeyRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(
        self, *, org_id: str, name: str, key_hash: str, now: float, by: str
    ) -> ServiceKey:
        """Store a new key under its hash; ConflictError if that hash is stored already."""
        if not key_hash:
            raise StoreError("a service key needs a non-empty hash")
        key = ServiceKey(
            id=new_id("svk"),
            org_id=org_id,
            name=name,
            created_at=now,
            created_by=by,
            revoked_at=None,
            last_used_at=None,
        )
        async with self._db.transaction() as tx:
            await tx.execute(
                "INSERT INTO service_keys (id, org_id, name, key_hash, created_at, created_by)"
                " VALUES (:id, :org_id, :name, :hash, :now, :by)",
                {
                    "id": key.id,
                    "org_id": org_id,
                    "name": name,
                    "hash": key_hash,
                    "now": now,
                    "by": by,
                },
            )
        return key

    async def find_by_hashes(self, hashes: Sequence[str]) -> tuple[ServiceKey, str] | None:
        """The key stored under one of ``hashes`` (one per key in rotation) and the hash it is
        stored under, revoked ones included; None if none."""
        for key_hash in hashes:  # one per secret key in rotation: usually one or two
            row = await self._db.fetch_one(f"{_SELECT} WHERE key_hash = :hash", {"hash": key_hash})
            if row is not None:
                return _key(row), key_hash
        return None

    async def get(self, key_id: str) -> ServiceKey | None:
        row = await self._db.fetch_one(f"{_SELECT} WHERE id = :id", {"id": key_id})
        return _key(row) if row is not None else None

    async def for_org(self, org_id: str) -> builtins.list[ServiceKey]:
        """The organisation's keys, revoked ones included, oldest first."""
        rows = await self._db.fetch_all(
            f"{_SELECT} WHERE org_id = :org_id ORDER BY created_at, id", {"org_id": org_id}
        )
        return [_key(row) for row in rows]

    async def revoke(self, key_id: str, *, org_id: str, now: float) -> bool:
        """Revoke the organisation's key; NotFoundError if it has none by that id. True if this
        call revoked it, False if it was revoked already (the first time is kept)."""
        async with self._db.transaction() as tx:
            changed = await tx.execute(
                "UPDATE service_keys SET revoked_at = :now"
                " WHERE id = :id AND org_id = :org_id AND revoked_at IS NULL",
                {"now": now, "id": key_id, "org_id": org_id},
            )
            if changed:
                return True
            found = await tx.fetch_one(
                "SELECT 1 AS found FROM service_keys WHERE id = :id AND org_id = :org_id",
                {"id": key_id, "org_id": org_id},
            )
        if found is None:
            raise NotFoundError(f"the organisation has no service key with id {key_id!r}")
        return False

    async def touch(self, key_id: str, now: float) -> None:
        """Note that the key was used at ``now`` (never moves back)."""
        async with self._db.transaction() as tx:
            await tx.execute(
                "UPDATE service_keys SET last_used_at = :now"
                " WHERE id = :id AND (last_used_at IS NULL OR last_used_at < :now)",
                {"now": now, "id": key_id},
            )
