"""Organisations: the tenants that users belong to."""

from __future__ import annotations

import builtins

from gateway.errors import ConflictError, NotFoundError
from gateway.store.database import LIKE_ESCAPE, Database, Row, ascii_lower, contains_pattern
from gateway.store.records import Organisation, new_id

_SELECT = "SELECT id, name, created_at FROM organisations"
# The insert every organisation is added by (also by a bulk import of users).
INSERT_ORGANISATION = (
    "INSERT INTO organisations (id, name, created_at, seq) VALUES (:id, :name, :now,"
    " (SELECT coalesce(max(seq), 0) + 1 FROM organisations))"
)


def _organisation(row: Row) -> Organisation:
    return Organisation(id=row["id"], name=row["name"], created_at=row["created_at"])


class OrganisationRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, *, name: str, now: float, org_id: str | None = None) -> Organisation:
        """Store a new organisation; ConflictError if the name (or given id) is taken."""
        org = Organisation(id=org_id or new_id("org"), name=name, created_at=now)
        async with self._db.transaction() as tx:
            if await tx.fetch_one(
                "SELECT 1 AS found FROM organisations WHERE name = :name", {"name": name}
            ):
                raise ConflictError(f"an organisation named {name!r} already exists")
            if await tx.fetch_one(
                "SELECT 1 AS found FROM organisations WHERE id = :id", {"id": org.id}
            ):
                raise ConflictError(f"an organisation with id {org.id!r} already exists")
            await tx.execute(
                INSERT_ORGANISATION, {"id": org.id, "name": org.name, "now": org.created_at}
            )
        return org

    async def get(self, org_id: str) -> Organisation:
        """The organisation with this id; NotFoundError if there is none."""
        row = await self._db.fetch_one(f"{_SELECT} WHERE id = :id", {"id": org_id})
        if row is None:
            raise NotFoundError(f"no organisation has id {org_id!r}")
        return _organisation(row)

    async def find_by_name(self, name: str) -> Organisation | None:
        row = await self._db.fetch_one(f"{_SELECT} WHERE name = :name", {"name": name})
        return _organisation(row) if row is not None else None

    async def list(self) -> builtins.list[Organisation]:
        """Every organisation, in the order they were added."""
        rows = await self._db.fetch_all(f"{_SELECT} ORDER BY seq")
        return [_organisation(row) for row in rows]

    async def search(
        self, text: str, *, limit: int, offset: int = 0
    ) -> builtins.list[Organisation]:
        """Organisations whose name contains ``text`` (ASCII case aside; all for an empty
        text), in the order they were added: at most ``limit``, after skipping ``offset``."""
        if limit < 1 or offset < 0:
            raise ValueError(f"limit must be at least 1 and offset not negative: {limit}, {offset}")
        rows = await self._db.fetch_all(
            f"{_SELECT} WHERE lower(name) LIKE :pattern {LIKE_ESCAPE}"
            " ORDER BY seq LIMIT :limit OFFSET :offset",
            {"pattern": contains_pattern(ascii_lower(text)), "limit": limit, "offset": offset},
        )
        return [_organisation(row) for row in rows]
