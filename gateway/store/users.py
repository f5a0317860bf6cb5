"""Users: who may sign in, to which organisation they belong, and with what role."""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence

from gateway.errors import ConflictError, NotFoundError, StoreError
from gateway.store.database import (
    LIKE_ESCAPE,
    Database,
    Row,
    Transaction,
    ascii_lower,
    contains_pattern,
)
from gateway.store.organisations import INSERT_ORGANISATION
from gateway.store.records import ROLES, NewUser, User, new_id
from gateway.store.revocations import revoke

_SELECT = (
    "SELECT id, org_id, email, display_name, role, password_hash, disabled, created_at FROM users"
)
_INSERT = (
    "INSERT INTO users"
    " (id, org_id, email, email_key, display_name, role, password_hash, disabled, created_at, seq)"
    " VALUES (:id, :org_id, :email, :email_key, :display_name, :role, :password_hash, 0, :now,"
    " (SELECT coalesce(max(seq), 0) + 1 FROM users))"
)


def email_key(email: str) -> str:
    """What emails are compared by: the address with ASCII letters lower-cased (as SQL's
    ``lower`` does everywhere), so ``Ava@X.example`` and ``ava@x.example`` are one user."""
    return ascii_lower(email)


def _user(row: Row) -> User:
    return User(
        id=row["id"],
        org_id=row["org_id"],
        email=row["email"],
        display_name=row["display_name"],
        role=row["role"],
        password_hash=row["password_hash"],
        disabled=bool(row["disabled"]),
        created_at=row["created_at"],
    )


async def _insert(tx: Transaction, new: NewUser, user_id: str, now: float) -> User:
    """Check and insert one user inside the caller's transaction."""
    if new.role not in ROLES:
        raise StoreError(f"role must be one of {', '.join(ROLES)}, not {new.role!r}")
    key = email_key(new.email)
    if not await tx.fetch_one(
        "SELECT 1 AS found FROM organisations WHERE id = :id", {"id": new.org_id}
    ):
        raise NotFoundError(f"no organisation has id {new.org_id!r}")
    if await tx.fetch_one("SELECT 1 AS found FROM users WHERE email_key = :key", {"key": key}):
        raise ConflictError(f"a user with email {new.email!r} already exists")
    if await tx.fetch_one("SELECT 1 AS found FROM users WHERE id = :id", {"id": user_id}):
        raise ConflictError(f"a user with id {user_id!r} already exists")
    user = User(
        id=user_id,
        org_id=new.org_id,
        email=new.email,
        display_name=new.display_name,
        role=new.role,
        password_hash=new.password_hash,
        disabled=False,
        created_at=now,
    )
    await tx.execute(
        _INSERT,
        {
            "id": user.id,
            "org_id": user.org_id,
            "email": user.email,
            "email_key": key,
            "display_name": user.display_name,
            "role": user.role,
            "password_hash": user.password_hash,
            "now": now,
        },
    )
    return user


class UserRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(
        self,
        *,
        org_id: str,
        email: str,
        display_name: str,
        role: str,
        password_hash: str,
        now: float,
        user_id: str | None = None,
    ) -> User:
        """Store a new user.

        ConflictError if the email is taken, whatever its case; NotFoundError if the
        organisation does not exist; StoreError if the role is not one the gateway knows.
        """
        new = NewUser(
            org_id=org_id,
            email=email,
            display_name=display_name,
            role=role,
            password_hash=password_hash,
        )
        async with self._db.transaction() as tx:
            return await _insert(tx, new, user_id or new_id("usr"), now)

    async def add_many(
        self, rows: Sequence[NewUser], now: float, *, new_orgs: Mapping[str, str] | None = None
    ) -> builtins.list[User]:
        """Store all the users or none: one bad row rolls the whole batch back. ``new_orgs``
        (id to name) are organisations to add first, in the same transaction."""
        users: builtins.list[User] = []
        async with self._db.transaction() as tx:
            for org_id, name in (new_orgs or {}).items():
                await tx.execute(INSERT_ORGANISATION, {"id": org_id, "name": name, "now": now})
            for number, new in enumerate(rows, start=1):
                try:
                    users.append(await _insert(tx, new, new_id("usr"), now))
                except StoreError as exc:
                    raise type(exc)(f"user {number} of {len(rows)}: {exc}") from exc
        return users

    async def get(self, user_id: str) -> User:
        """The user with this id; NotFoundError if there is none."""
        row = await self._db.fetch_one(f"{_SELECT} WHERE id = :id", {"id": user_id})
        if row is None:
            raise NotFoundError(f"no user has id {user_id!r}")
        return _user(row)

    async def find_by_email(self, email: str) -> User | None:
        """The user with this email, compared without regard to (ASCII) case."""
        row = await self._db.fetch_one(
            f"{_SELECT} WHERE email_key = :key", {"key": email_key(email)}
        )
        return _user(row) if row is not None else None

    async def list(self, org_id: str | None = None) -> builtins.list[User]:
        """Every user (or every user of one organisation), in the order they were added."""
        if org_id is None:
            rows = await self._db.fetch_all(f"{_SELECT} ORDER BY seq")
        else:
            rows = await self._db.fetch_all(
                f"{_SELECT} WHERE org_id = :org_id ORDER BY seq", {"org_id": org_id}
            )
        return [_user(row) for row in rows]

    async def search(
        self, text: str, *, org_id: str | None = None, limit: int, offset: int = 0
    ) -> builtins.list[User]:
        """Users whose email or display name contains ``text`` (ASCII case aside; every
        user for an empty text), of one organisation if ``org_id`` is given, in the order
        they were added: at most ``limit`` of them, after skipping ``offset``."""
        if limit < 1 or offset < 0:
            raise ValueError(f"limit must be at least 1 and offset not negative: {limit}, {offset}")
        params: dict[str, object] = {
            "pattern": contains_pattern(email_key(text)),
            "limit": limit,
            "offset": offset,
        }
        where = (
            f"(email_key LIKE :pattern {LIKE_ESCAPE}"
            f" OR lower(display_name) LIKE :pattern {LIKE_ESCAPE})"
        )
        if org_id is not None:
            where += " AND org_id = :org_id"
            params["org_id"] = org_id
        rows = await self._db.fetch_all(
            f"{_SELECT} WHERE {where} ORDER BY seq LIMIT :limit OFFSET :offset", params
        )
        return [_user(row) for row in rows]

    async def set_disabled(self, user_id: str, disabled: bool, *, now: float) -> None:
        """Disable or re-enable a user; NotFoundError if there is no such user. Disabling
        ends the user's sessions in the same transaction, and tells every process so."""
        async with self._db.transaction() as tx:
            changed = await tx.execute(
                "UPDATE users SET disabled = :disabled WHERE id = :id",
                {"disabled": int(disabled), "id": user_id},
            )
            if not changed:
                raise NotFoundError(f"no user has id {user_id!r}")
            if disabled:
                await tx.execute(
                    "UPDATE sessions SET ended_at = :now WHERE user_id = :user_id"
                    " AND ended_at IS NULL",
                    {"now": now, "user_id": user_id},
                )
                await revoke(tx, now, user_id=user_id)

    async def count_by_org(self) -> dict[str, int]:
        """How many enabled users each organisation has; every organisation appears, maybe at 0."""
        rows = await self._db.fetch_all(
            "SELECT o.id AS org_id, count(u.id) AS users FROM organisations AS o"
            " LEFT JOIN users AS u ON u.org_id = o.id AND u.disabled = 0"
            " GROUP BY o.id, o.seq ORDER BY o.seq"
        )
        return {row["org_id"]: int(row["users"]) for row in rows}

    async def list_all_light(self) -> builtins.list[tuple[str, str, str]]:
        """(user id, organisation id, role) for every enabled user, in the order added.

        One query however many users there are, and no password hashes or emails read: meant
        for reports over the whole user base.
        """
        rows = await self._db.fetch_all(
            "SELECT id, org_id, role FROM users WHERE disabled = 0 ORDER BY seq"
        )
        return [(row["id"], row["org_id"], row["role"]) for row in rows]
