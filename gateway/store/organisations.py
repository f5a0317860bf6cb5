"""Organisations: the tenants that users belong to."""

from __future__ import annotations

import builtins
import sqlite3

from gateway.errors import ConflictError, NotFoundError
from gateway.store.database import Database, execute, query_one
from gateway.store.records import Organisation, new_id

_SELECT = "SELECT id, name, created_at FROM organisations"


def _organisation(row: sqlite3.Row) -> Organisation:
    return Organisation(id=row["id"], name=row["name"], created_at=row["created_at"])


class OrganisationRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, *, name: str, now: float, org_id: str | None = None) -> Organisation:
        """Store a new organisation; ConflictError if the name (or given id) is taken."""
        org = Organisation(id=org_id or new_id("org"), name=name, created_at=now)
        async with self._db.transaction() as conn:
            if await query_one(conn, "SELECT 1 FROM organisations WHERE name = ?", (name,)):
                raise ConflictError(f"an organisation named {name!r} already exists")
            if await query_one(conn, "SELECT 1 FROM organisations WHERE id = ?", (org.id,)):
                raise ConflictError(f"an organisation with id {org.id!r} already exists")
            await execute(
                conn,
                "INSERT INTO organisations (id, name, created_at) VALUES (?, ?, ?)",
                (org.id, org.name, org.created_at),
            )
        return org

    async def get(self, org_id: str) -> Organisation:
        """The organisation with this id; NotFoundError if there is none."""
        row = await self._db.fetch_one(f"{_SELECT} WHERE id = ?", (org_id,))
        if row is None:
            raise NotFoundError(f"no organisation has id {org_id!r}")
        return _organisation(row)

    async def find_by_name(self, name: str) -> Organisation | None:
        row = await self._db.fetch_one(f"{_SELECT} WHERE name = ?", (name,))
        return _organisation(row) if row is not None else None

    async def list(self) -> builtins.list[Organisation]:
        """Every organisation, in the order they were added."""
        rows = await self._db.fetch_all(f"{_SELECT} ORDER BY rowid")
        return [_organisation(row) for row in rows]
