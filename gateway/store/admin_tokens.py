"""Admin API tokens: stored by hash (hashing is the caller's job), with scopes, expiry and use."""

from __future__ import annotations

import builtins
import json
from collections.abc import Iterable

from gateway.errors import ConflictError, NotFoundError, StoreError
from gateway.store.database import Database, Row
from gateway.store.records import AdminToken, new_id

# The hash is deliberately not selected: it never leaves the store.
_SELECT = (
    "SELECT id, name, scopes, created_at, expires_at, created_by, revoked_at, last_used_at"
    " FROM admin_tokens"
)


def _scopes(text: str, token_id: str) -> frozenset[str]:
    scopes = json.loads(text)
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        raise StoreError(f"admin token {token_id!r} has scopes that are not a list of strings")
    return frozenset(scopes)


def _token(row: Row) -> AdminToken:
    return AdminToken(
        id=row["id"],
        name=row["name"],
        scopes=_scopes(row["scopes"], row["id"]),
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        created_by=row["created_by"],
        revoked_at=row["revoked_at"],
        last_used_at=row["last_used_at"],
    )


class AdminTokenRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(
        self,
        *,
        token_hash: str,
        name: str,
        scopes: Iterable[str],
        expires_at: float,
        now: float,
        by: str,
    ) -> AdminToken:
        """Store a new token under the hash given; ConflictError if that hash is stored already.

        StoreError if the hash is empty or a scope is not a non-empty string.
        """
        if not token_hash:
            raise StoreError("an admin token needs a non-empty hash")
        scope_set = frozenset(scopes)
        if not all(isinstance(scope, str) and scope for scope in scope_set):
            raise StoreError(f"admin token scopes must be non-empty strings, not {scope_set!r}")
        token = AdminToken(
            id=new_id("atk"),
            name=name,
            scopes=scope_set,
            created_at=now,
            expires_at=expires_at,
            created_by=by,
            revoked_at=None,
            last_used_at=None,
        )
        async with self._db.transaction() as tx:
            if await tx.fetch_one(
                "SELECT 1 AS found FROM admin_tokens WHERE token_hash = :hash", {"hash": token_hash}
            ):
                raise ConflictError("an admin token with the same hash already exists")
            await tx.execute(
                "INSERT INTO admin_tokens (id, token_hash, name, scopes, created_at, expires_at,"
                " created_by, seq) VALUES (:id, :hash, :name, :scopes, :now, :expires_at, :by,"
                " (SELECT coalesce(max(seq), 0) + 1 FROM admin_tokens))",
                {
                    "id": token.id,
                    "hash": token_hash,
                    "name": name,
                    "scopes": json.dumps(sorted(scope_set)),
                    "now": now,
                    "expires_at": expires_at,
                    "by": by,
                },
            )
        return token

    async def find_by_hash(self, token_hash: str) -> AdminToken | None:
        """The token stored under this hash, revoked and expired ones included; None if none.

        Whether it may still be used is the caller's judgement: see :meth:`AdminToken.usable`.
        """
        row = await self._db.fetch_one(f"{_SELECT} WHERE token_hash = :hash", {"hash": token_hash})
        return _token(row) if row is not None else None

    async def list(self) -> builtins.list[AdminToken]:
        """Every token, revoked and expired ones included, in the order they were added."""
        rows = await self._db.fetch_all(f"{_SELECT} ORDER BY seq")
        return [_token(row) for row in rows]

    async def revoke(self, token_id: str, now: float) -> None:
        """Revoke a token; NotFoundError if there is none. Revoking again keeps the first time."""
        async with self._db.transaction() as tx:
            changed = await tx.execute(
                "UPDATE admin_tokens SET revoked_at = coalesce(revoked_at, :now) WHERE id = :id",
                {"now": now, "id": token_id},
            )
            if not changed:
                raise NotFoundError(f"no admin token has id {token_id!r}")

    async def touch(self, token_id: str, now: float) -> None:
        """Note that the token was used at ``now``; an unknown id is ignored."""
        async with self._db.transaction() as tx:
            # Never backwards: a late write of an earlier use leaves the later one standing.
            await tx.execute(
                "UPDATE admin_tokens SET last_used_at = :now"
                " WHERE id = :id AND (last_used_at IS NULL OR last_used_at < :now)",
                {"now": now, "id": token_id},
            )
